"""The budget view: drag the memory budget, watch the integer program re-solve."""

from __future__ import annotations

import math

import gradio as gr

import mixdq

from .. import plots, views
from .common import Shared, friendly

INTRO = (
    "Drag the budget: each position solves the **multiple-choice knapsack** again (one bit-width "
    "per layer, least predicted damage within the memory), on the live path in milliseconds; on "
    "release the exact integer program (PuLP/CBC) checks it. Predicted damage adds up each layer's "
    "measured damage from the sensitivity profile, content layers by image SSIM and quality layers "
    "by UNet-output SQNR, weighted by the slider below."
)


def controls_of(cw, content_bits, quality_bits, allow_fp, quantize_acts, act_bits, mode, k, locks) -> views.Controls:
    return views.Controls(
        content_weight=float(cw), content_bits=tuple(sorted(int(b) for b in content_bits or ())),
        quality_bits=tuple(sorted(int(b) for b in quality_bits or ())), allow_fp=bool(allow_fp),
        locks=tuple(locks or ()), act_bits=float(act_bits) if quantize_acts else None,
        mode="mixdq" if mode.startswith("MixDQ") else "decoupled", k=float(k),
    )


def update(entry, c: views.Controls, mb: float, exact: bool = False):
    """What one slider position shows: the summary, the bits map and the Pareto plot."""
    try:
        plan = views.solve(entry, c, mb)
        best = views.solve(entry, c, mb, exact=True) if exact and c.mode == "decoupled" else None
    except mixdq.MixDQError as e:  # mid-drag: say it in place, keep the last figures
        return f"**Cannot allocate:** {e}", gr.skip(), gr.skip()
    return figures(entry, c, plan, best)


def figures(entry, controls: views.Controls, plan: mixdq.Plan, exact: mixdq.Plan | None = None):
    return (
        views.plan_summary(entry, plan, exact, mixdq_mode=controls.mode == "mixdq"),
        plots.bits_map(entry.grid, views.weight_bits_of(plan), views.bits_hover(entry, plan),
                       "Weight bits per layer"),
        plots.pareto_plot(views.pareto(entry, controls), plan.weight_mb, plan.weight_damage,
                          references=views.uniform_references(entry, controls)),
    )


def slider_update(lo: float, hi: float, value: float) -> dict:
    """The budget slider over [lo, hi] in round steps (1 MB for SDXL-Turbo, 0.01 MB for the
    embedded model), `value` kept inside."""
    step = 10 ** math.floor(math.log10((hi - lo) / 400)) if hi - lo > 1e-6 else 0.01
    inner_lo, inner_hi = math.ceil(lo / step) * step, math.floor(hi / step) * step  # inside the feasible range
    if inner_hi <= inner_lo:  # one feasible point (every layer locked, or one width allowed)
        return gr.update(minimum=hi, maximum=hi + step, value=hi, step=step, interactive=False)
    value = min(max(round(value / step) * step, inner_lo), inner_hi)
    return gr.update(minimum=round(inner_lo, 6), maximum=round(inner_hi, 6), value=round(value, 6), step=step,
                     interactive=True)


def build(shared: Shared) -> None:
    with gr.Tab("Budget", id="budget") as tab:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=3):
                budget = gr.Slider(1, 2, value=1.5, label="Memory budget: UNet weights, MB (packed)",
                                   elem_id="budget-slider")
                summary = gr.Markdown(elem_id="plan-summary")
                bits_plot = gr.Plot(elem_id="bits-map", show_label=False)
                pareto = gr.Plot(elem_id="pareto", show_label=False)
            with gr.Column(scale=1, min_width=280):
                cw = gr.Slider(0, 1, value=0.5, step=0.05, label="Content vs quality (1: only image content counts)")
                content_bits = gr.CheckboxGroup([], label="Weight bits content layers may use (attn2, ff)")
                quality_bits = gr.CheckboxGroup([], label="Weight bits quality layers may use (the rest)")
                allow_fp = gr.Checkbox(False, label="FP16 is a choice for every layer")
                quantize_acts = gr.Checkbox(False, label="Quantize activations too")
                act_bits = gr.Slider(4, 8, value=8, step=0.25, label="Average activation bits", visible=False)
                mode = gr.Radio(["Decoupled (one program)", "MixDQ (two programs, split by K)"],
                                value="Decoupled (one program)", label="Program")
                k = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="MixDQ K: content / quality average bits "
                              "(MixDQ mode uses its own widths: content 2/4/8, quality 4/8)", visible=False)
                with gr.Group():
                    lock_layer = gr.Dropdown([], label="Lock a layer", allow_custom_value=True)
                    lock_bits = gr.Dropdown(["fp"], value="fp", label="to")
                    with gr.Row():
                        lock_btn = gr.Button("Lock", size="sm")
                        clear_btn = gr.Button("Clear locks", size="sm")
                    locks_table = gr.Dataframe(headers=["layer", "bits"], interactive=False, max_height=160)

    controls = [cw, content_bits, quality_bits, allow_fp, quantize_acts, act_bits, mode, k, shared.locks]
    shared.budget.update(slider=budget, controls=controls, summary=summary)
    outputs = [summary, bits_plot, pareto]

    def solve(model, mb, *values, exact=False):
        return update(shared.entry(model), controls_of(*values), mb, exact)

    def live(model, mb, *values):
        return solve(model, mb, *values)

    def exact(model, mb, *values):
        return solve(model, mb, *values, exact=True)

    def reshape(model, mb, *values):
        """A control changed: the feasible range may have moved; keep the budget inside it."""
        entry, c = shared.entry(model), controls_of(*values)
        try:
            lo, hi = views.budget_range(entry, c)
        except mixdq.MixDQError as e:
            return gr.skip(), f"**Cannot allocate:** {e}", gr.skip(), gr.skip()
        update = slider_update(lo, hi, float(mb))
        return (update, *solve(model, update["value"], *values))

    def reset(model, url, cw, fp16, qacts, abits, mode_name, k_value):
        """A model was picked: its measured bits, its layers, no locks, a mid-range budget (or the
        one the page's URL asks for), and the plan there. Solved here, not in a following event:
        that one could still see the old model's budget, outside the new range."""
        entry = shared.entry(model)
        wbits = [str(b) for b in entry.profile.bits("weight")]
        c = controls_of(cw, (), (), fp16, qacts, abits, mode_name, k_value, ())
        try:
            lo, hi = views.budget_range(entry, c)
            wanted = url[1] if url and url[0] == model and url[1] is not None else lo + 0.5 * (hi - lo)
            slider = slider_update(lo, hi, wanted)
            shown = update(entry, c, slider["value"])
        except mixdq.MixDQError as e:  # e.g. a profile of some layers only: the other views still work
            slider, shown = gr.skip(), (f"**Cannot allocate:** {e}", gr.skip(), gr.skip())
        return (slider, gr.update(choices=wbits, value=wbits), gr.update(choices=wbits, value=wbits),
                gr.update(choices=entry.profile.names, value=None), gr.update(choices=["fp", *wbits[::-1]], value="fp"),
                (), [], *shown)

    def add_lock(model, layer, bits, *values):
        if not layer:
            raise gr.Error("choose a layer to lock first")
        new = views.with_lock(shared.entry(model), controls_of(*values), layer, bits)
        return new, [list(x) for x in new]

    common = dict(show_progress="hidden", concurrency_id="solve", concurrency_limit=8)
    dragging = budget.input(friendly(live), [shared.model, budget, *controls], outputs, trigger_mode="always_last",
                            api_visibility="private", **common)
    # a live answer still on its way must not overwrite the exact one and its gap
    budget.release(friendly(exact), [shared.model, budget, *controls], outputs, api_visibility="private",
                   cancels=[dragging], **common)
    for control in controls[:-1]:  # .input: a user's change, not reset()'s programmatic one
        control.input(friendly(reshape), [shared.model, budget, *controls], [budget, *outputs],
                      api_visibility="private", trigger_mode="always_last", **common)
    # a control shows only while it applies
    quantize_acts.change(lambda on: gr.update(visible=on), quantize_acts, act_bits, api_visibility="private",
                         show_progress="hidden")
    mode.change(lambda m: gr.update(visible=m.startswith("MixDQ")), mode, k, api_visibility="private",
                show_progress="hidden")
    reset_inputs = [shared.model, shared.url, cw, allow_fp, quantize_acts, act_bits, mode, k]
    reset_outputs = [budget, content_bits, quality_bits, lock_layer, lock_bits, shared.locks, locks_table, *outputs]
    shared.model.change(friendly(reset), reset_inputs, reset_outputs, api_visibility="private", **common)
    lock_btn.click(friendly(add_lock), [shared.model, lock_layer, lock_bits, *controls],
                   [shared.locks, locks_table], api_visibility="private").then(
        friendly(reshape), [shared.model, budget, *controls], [budget, *outputs], api_visibility="private", **common)
    # plotly sizes a figure drawn in a hidden tab to a default width: draw it again when shown
    tab.select(friendly(reshape), [shared.model, budget, *controls], [budget, *outputs], api_visibility="private",
               **common)
    clear_btn.click(lambda: ((), []), None, [shared.locks, locks_table], api_visibility="private").then(
        friendly(reshape), [shared.model, budget, *controls], [budget, *outputs], api_visibility="private", **common)
    shared.budget.update(reset=reset, reshape=reshape, locks_table=locks_table, reset_inputs=reset_inputs,
                         reset_outputs=reset_outputs,
                         outputs=outputs)
