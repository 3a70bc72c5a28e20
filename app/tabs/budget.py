"""The budget view: drag the memory budget, watch the integer program re-solve."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import gradio as gr
import plotly.graph_objects as go
from gradio.components import Component

import mixdq

from .. import plots, positions, views
from ..registry import ModelEntry
from .common import Shared, friendly

INTRO = (
    "Drag the budget: the **multiple-choice knapsack** (one bit-width per layer, least predicted damage "
    "within the memory) was solved at every slider position when the controls last changed, so the map "
    "follows your finger; on release the exact integer program (PuLP/CBC) checks the answer and reports "
    "the gap (in MixDQ's two-program mode, the plan is solved on release). Predicted damage adds up each "
    "layer's measured damage from the sensitivity profile, content layers by image SSIM and quality layers "
    "by UNet-output SQNR, weighted by the slider below."
)


Values = Mapping[Component, Any]  # what a handler of an event whose inputs are a set receives


@dataclass(frozen=True, eq=False)
class BudgetControls:
    """The budget view's controls besides the budget itself: what decides an allocation. They
    travel as one value: an event lists `components()` among its inputs, given as a set, so Gradio
    hands its handler one dict (component -> value), and `read` turns that into `views.Controls`.
    A new control is a field here and its line in `read`."""

    content_weight: gr.Slider
    content_bits: gr.CheckboxGroup
    quality_bits: gr.CheckboxGroup
    allow_fp: gr.Checkbox
    quantize_acts: gr.Checkbox
    act_bits: gr.Slider
    mode: gr.Radio
    k: gr.Slider
    locks: gr.State  # tuple of (layer, "fp" or bits): this session's pinned layers (`Shared.locks`)

    def components(self) -> list[Component]:
        return [getattr(self, f.name) for f in fields(self)]

    def model_free(self) -> set[Component]:
        """The controls whose choices are the same for every model: all but the widths and the
        locks. What an event sent while a model is being set up may read: the page may still hold
        the last model's widths, which the server, already holding the new choices, refuses
        ("Value: '3' ..."); `read` takes the missing widths as every measured one."""
        return set(self.components()) - {self.content_bits, self.quality_bits, self.locks}

    def read(self, values: Values) -> views.Controls:
        """The controls in `values`; widths and locks left out of them read as none chosen."""
        def bits(component) -> tuple[int, ...]:
            return tuple(sorted(int(b) for b in values.get(component) or ()))

        return views.Controls(
            content_weight=float(values[self.content_weight]), content_bits=bits(self.content_bits),
            quality_bits=bits(self.quality_bits), allow_fp=bool(values[self.allow_fp]),
            locks=tuple(values.get(self.locks) or ()),
            act_bits=float(values[self.act_bits]) if values[self.quantize_acts] else None,
            mode="mixdq" if values[self.mode].startswith("MixDQ") else "decoupled", k=float(values[self.k]),
        )


@dataclass(frozen=True, eq=False)
class BudgetTab:
    """What the other views use of the budget view: its budget, its controls, what shows a plan,
    and the handlers the page and the sensitivity view chain to. Handlers take one dict of values."""

    slider: gr.Slider
    controls: BudgetControls
    model: gr.Dropdown  # the page's model picker
    outputs: tuple[gr.Markdown, gr.Plot, gr.Plot]  # the plan's summary, bits map and Pareto plot
    positions: gr.Textbox  # every slider position's answer, for the page to draw (`app.positions`)
    drawn: gr.State  # the figures the server drew last
    locks_table: gr.Dataframe
    reshape: Callable  # inputs(): reshaped()
    reset: Callable  # reset_inputs: reset_outputs (a model was picked)
    reset_inputs: set[Component]
    reset_outputs: list[Component]
    url: gr.State  # (model, budget MB) asked for by the page's URL, or None

    def inputs(self, *extra: Component) -> set[Component]:
        """The inputs of an event whose handler plans: the model, the budget, the controls and `extra`."""
        return {self.model, self.slider, *self.controls.components(), *extra}

    def opening_inputs(self, *extra: Component) -> set[Component]:
        """`inputs` for an event the page sends while it opens: the URL's state instead of the
        slider, and no widths (`BudgetControls.model_free`): in the page they may still be the
        last model's while the model a link picks is being set up."""
        return {self.model, self.url, *self.controls.model_free(), *extra}

    def opened_at(self, values: Values, entry: ModelEntry) -> float:
        """Where the page opens the budget for `entry` (what `reset` puts the slider at)."""
        return opening_budget(entry, self.controls.read(values), values[self.url])

    def reshaped(self) -> list[Component]:
        """What `reshape` updates: the slider, the outputs, the figures kept, then the positions."""
        return [self.slider, *self.outputs, self.drawn, self.positions]

    def plan(self, values: Values) -> tuple[str, float, views.Controls]:
        """(model, budget MB, controls) out of a handler's values."""
        return values[self.model], float(values[self.slider]), self.controls.read(values)


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
        plots.bits_map(views.layer_grid(entry), views.weight_bits_of(plan), views.bits_hover(entry, plan),
                       "Weight bits per layer"),
        plots.pareto_plot(views.pareto(entry, controls), plan.weight_mb, plan.weight_damage,
                          references=views.uniform_references(entry, controls)),
    )


def kept(shown: tuple) -> tuple:
    """`update`'s answer and its two figures again, for the `drawn` state (skipped with them)."""
    return (*shown, gr.skip() if isinstance(shown[1], dict) else shown[1:])  # gr.skip() is an update dict


def redraw(figures: tuple | None) -> tuple:
    """The figures drawn last, as new values (a fresh `datarevision`): the page draws them again."""
    if figures is None:
        return gr.skip(), gr.skip()
    return tuple(go.Figure(f).update_layout(datarevision=time.monotonic_ns()) for f in figures)


def opening_budget(entry: ModelEntry, controls: views.Controls, url) -> float:
    """The link's budget (`url`: (model, MB) or None) when it is for this model, else mid-range;
    on the slider's steps, inside the feasible range."""
    lo, hi = views.budget_range(entry, controls)
    wanted = url[1] if url and url[0] == entry.key and url[1] is not None else middle(lo, hi)
    return slider_update(lo, hi, wanted)["value"]


def middle(lo: float, hi: float) -> float:
    """Where the budget opens on a model: half way between its cheapest and dearest allocation."""
    return lo + 0.5 * (hi - lo)


def opening(entry: ModelEntry) -> dict:
    """The slider's range and value for `entry` as the page first draws it. The page's first events
    (the Compare tab's first pair) send the slider's value; a placeholder range would send a value
    outside the model's, which the server refuses with an error toast ("Value 1.5 is less than
    minimum value 645") when it has already taken the model's range from `reset`."""
    try:
        lo, hi = views.budget_range(entry, views.Controls())
    except mixdq.MixDQError:  # a profile of some layers only: reset() says why
        return dict(minimum=1, maximum=2, value=1.5)
    return {k: v for k, v in slider_update(lo, hi, middle(lo, hi)).items() if k != "__type__"}


def slider_update(lo: float, hi: float, value: float) -> dict:
    """The budget slider over [lo, hi] at `positions.step_for`'s round steps (10 MB for SDXL-Turbo,
    0.025 MB for the embedded model), `value` kept inside."""
    step = positions.step_for(lo, hi)
    inner_lo, inner_hi = positions.inner(lo, hi, step)  # inside the feasible range
    if inner_hi <= inner_lo:  # one feasible point (every layer locked, or one width allowed)
        return gr.update(minimum=hi, maximum=hi + step, value=hi, step=step, interactive=False)
    value = min(max(round(value / step) * step, inner_lo), inner_hi)
    return gr.update(minimum=round(inner_lo, 6), maximum=round(inner_hi, 6), value=round(value, 6), step=step,
                     interactive=True)


def build(shared: Shared) -> BudgetTab:
    with gr.Tab("Budget", id="budget") as tab:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=3):
                first = shared.entry(shared.model.value)
                budget = gr.Slider(**opening(first), label="Memory budget: UNet weights, MB (packed)",
                                   elem_id="budget-slider")
                summary = gr.Markdown(elem_id="plan-summary")
                bits_plot = gr.Plot(elem_id="bits-map", show_label=False)
                pareto = gr.Plot(elem_id="pareto", show_label=False)
                table = gr.Textbox(visible="hidden", elem_id="budget-positions")  # read by DRAW_JS
                drawn = gr.State(None)  # the figures the server drew last, for `redraw`
            with gr.Column(scale=1, min_width=280):
                cw = gr.Slider(0, 1, value=0.5, step=0.05, label="Content vs quality (1: only image content counts)")
                measured = [str(b) for b in first.profile.bits("weight")]
                content_bits = gr.CheckboxGroup(measured, value=measured,
                                                label="Weight bits content layers may use (attn2, ff)")
                quality_bits = gr.CheckboxGroup(measured, value=measured,
                                                label="Weight bits quality layers may use (the rest)")
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
                    locks_table = gr.Dataframe(views.locks_frame(()), headers=["layer", "bits"], interactive=False,
                                               max_height=160)

    controls = BudgetControls(cw, content_bits, quality_bits, allow_fp, quantize_acts, act_bits, mode, k, shared.locks)
    outputs = (summary, bits_plot, pareto)
    plan_inputs = {shared.model, budget, *controls.components()}

    def plan_of(values: Values) -> tuple[ModelEntry, float, views.Controls]:
        model, mb, c = values[shared.model], float(values[budget]), controls.read(values)
        return shared.entry(model), mb, c

    def exact(values):
        entry, mb, c = plan_of(values)
        return kept(update(entry, c, mb, exact=True))

    def reshape(values):
        """A control changed: the feasible range may have moved; keep the budget inside it, answer
        there at once, then solve every other position for the page to draw while dragging."""
        entry, mb, c = plan_of(values)
        try:
            lo, hi = views.budget_range(entry, c)
        except mixdq.MixDQError as e:
            yield gr.skip(), f"**Cannot allocate:** {e}", gr.skip(), gr.skip(), gr.skip(), ""
            return
        slider, ready = slider_update(lo, hi, mb), positions.cached(entry, c, lo, hi)
        yield slider, *kept(update(entry, c, slider["value"])), ready or ""  # until the table comes, release answers
        if ready is None:
            yield *[gr.skip()] * 5, positions.table(entry, c, lo, hi)

    def reset(values):
        """A model was picked: its measured bits, its layers, no locks, a mid-range budget (or the
        one the page's URL asks for), and the plan there, then every position's. Solved here, not
        in a following event: that one could still see the old model's budget, outside the new range."""
        model, url = values[shared.model], values[shared.url]
        entry = shared.entry(model)
        wbits = [str(b) for b in entry.profile.bits("weight")]
        # every measured width and no locks (as the checkboxes will say, so that the next control
        # change finds this plan's positions kept)
        measured = tuple(entry.profile.bits("weight"))
        c = replace(controls.read(values), content_bits=measured, quality_bits=measured)
        try:
            lo, hi = views.budget_range(entry, c)
            slider = slider_update(lo, hi, opening_budget(entry, c, url))
            shown = update(entry, c, slider["value"])
        except mixdq.MixDQError as e:  # e.g. a profile of some layers only: the other views still work
            lo = None
            slider, shown = gr.skip(), (f"**Cannot allocate:** {e}", gr.skip(), gr.skip())
        picked = (gr.update(choices=wbits, value=wbits), gr.update(choices=wbits, value=wbits),
                  gr.update(choices=entry.profile.names, value=None),
                  gr.update(choices=["fp", *wbits[::-1]], value="fp"), (), views.locks_frame(()))
        yield slider, *picked, *kept(shown), ""
        if lo is not None:
            yield *[gr.skip()] * (len(picked) + 5), positions.table(entry, c, lo, hi)

    def add_lock(values):
        layer = values[lock_layer]
        if not layer:
            raise gr.Error("choose a layer to lock first")
        entry, _, c = plan_of(values)
        new = views.with_lock(entry, c, layer, values[lock_bits])
        return new, views.locks_frame(new)

    common = dict(show_progress="hidden", concurrency_id="solve", concurrency_limit=8)
    # dragging is drawn in the page from the positions table: no server call per move
    budget.input(None, [budget, summary, table], summary, js=positions.DRAW_JS)
    table.change(None, [budget, summary, table], summary, js=positions.DRAW_JS)  # moved while it was solved
    budget.release(friendly(exact), plan_inputs, [*outputs, drawn], api_visibility="private", **common)
    reshaped = [budget, *outputs, drawn, table]
    for control in controls.components()[:-1]:  # .input: a user's change, not reset()'s programmatic one
        control.input(friendly(reshape), plan_inputs, reshaped, api_visibility="private", trigger_mode="always_last",
                      **common)
    # a control shows only while it applies
    quantize_acts.change(lambda on: gr.update(visible=on), quantize_acts, act_bits, api_visibility="private",
                         show_progress="hidden")
    mode.change(lambda m: gr.update(visible=m.startswith("MixDQ")), mode, k, api_visibility="private",
                show_progress="hidden")
    # not the widths or the locks, which reset() replaces: on a link to another model, the page's first
    # reset and the picker's change both run it, and one of them would send the old model's widths
    reset_inputs = {shared.model, shared.url, *controls.model_free()}
    reset_outputs = [budget, content_bits, quality_bits, lock_layer, lock_bits, shared.locks, locks_table, *outputs,
                     drawn, table]
    shared.model.change(friendly(reset), reset_inputs, reset_outputs, api_visibility="private", **common)
    lock_btn.click(friendly(add_lock), {lock_layer, lock_bits, *plan_inputs}, [shared.locks, locks_table],
                   api_visibility="private").then(
        friendly(reshape), plan_inputs, reshaped, api_visibility="private", **common)
    # Gradio drops the figures that arrive before the tab's first visit: when it is shown, the server
    # sends again the ones it drew last (kept in `drawn`: no slider or widths from the page, which on
    # opening may still be the last model's), and the page draws the slider's position over them
    tab.select(redraw, drawn, [bits_plot, pareto], api_visibility="private", show_progress="hidden").then(
        None, [budget, summary, table], summary, js=positions.DRAW_JS)
    clear_btn.click(lambda: ((), views.locks_frame(())), None, [shared.locks, locks_table],
                    api_visibility="private").then(friendly(reshape), plan_inputs, reshaped, api_visibility="private",
                                                   **common)
    return BudgetTab(budget, controls, shared.model, outputs, table, drawn, locks_table, reshape, reset, reset_inputs,
                     reset_outputs, shared.url)
