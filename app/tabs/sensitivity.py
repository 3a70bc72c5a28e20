"""The sensitivity view: how much each layer suffers when it alone is quantized."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from gradio.components import Component

from .. import images, isolated, plots, views
from .budget import BudgetTab
from .common import Shared, friendly

INTRO = (
    "Each cell is one layer, quantized **alone** at the chosen bit-width while the rest stays in "
    "floating point. Colour is the damage it does (log scale; darker = worse): content layers "
    "(cross-attention `attn2` and feed-forward `ff`, red) by how much the **image** changes "
    "(1 - SSIM), quality layers (everything else, blue) by the noise it adds to the UNet's output "
    "(10^(-SQNR/10)). Hover for the scores; click a cell or pick a row of the table to see one layer's curve, "
    "lock it, and see it as images below."
)
SEE_INTRO = (
    "**See it.** The picked layer (or a block, a role in every block, a whole group) quantized alone at the "
    "heatmap's bit-width, everything else floating point (BOS-aware): its image beside FP's, and their difference "
    "amplified. MixDQ's paper says content layers change *what* is drawn and quality layers *how cleanly*; here you "
    "can look for yourself, with the scores on this prompt beside what the sweep measured. The **Content vs "
    "quality** tab puts one of each side by side, with what the measurements say of the split."
)
# A click on a heatmap cell picks its layer: plotly's click event, in the browser, writes the cell's
# layer (its customdata) into a hidden textbox whose input event the server answers like the dropdown.
CLICK_JS = """
() => {
  if (window.mixdqClickBound) return;
  window.mixdqClickBound = true;
  const bind = () => document.querySelectorAll('#sensitivity-map .js-plotly-plot').forEach((plot) => {
    if (plot.dataset.mixdqClick || !plot.on) return;
    plot.dataset.mixdqClick = '1';
    plot.on('plotly_click', (event) => {
      const name = event.points && event.points[0] && event.points[0].customdata;
      const box = document.querySelector('#clicked-layer textarea');
      if (!name || !box) return;
      box.value = name;
      box.dispatchEvent(new Event('input', { bubbles: true }));
    });
  });
  new MutationObserver(bind).observe(document.body, { childList: true, subtree: true });
  bind();
}
"""
METRICS = {
    "MixDQ: content by SSIM, quality by SQNR": (("content", "ssim"), ("quality", "sqnr")),
    "SSIM of the images for every layer": (("content", "ssim"), ("quality", "ssim")),
    "SQNR of the UNet output for every layer": (("content", "sqnr"), ("quality", "sqnr")),
}


@dataclass(frozen=True, eq=False)
class SensitivityTab:
    """What the page wires of the sensitivity view once it has opened, and the lock it sets."""

    kind: gr.Radio
    bits: gr.Dropdown
    layer: gr.Dropdown
    lock_bits: gr.Dropdown
    lock: gr.Button
    see: gr.Button  # the picked layers' images, as `seen` shows them
    seen: list[Component]
    inputs: list[Component]  # of `show`: model, kind, metric, bits
    shown: list[Component]  # what `show` draws: the heatmap, the table, the layer picked
    bit_choices: Callable  # (model, kind) -> the bits measured and the layers
    show: Callable


def build(shared: Shared) -> SensitivityTab:
    with gr.Tab("Sensitivity", id="sensitivity") as tab:
        gr.Markdown(INTRO)
        with gr.Row():
            kind = gr.Radio([("weights", "weight"), ("activations", "activation")], value="weight", label="Quantize")
            metric = gr.Dropdown(list(METRICS), value=next(iter(METRICS)), label="Damage measured by")
            bits = gr.Dropdown([], label="Bit-width", elem_id="sensitivity-bits")
        heatmap = gr.Plot(elem_id="sensitivity-map", show_label=False)
        clicked = gr.Textbox(visible="hidden", elem_id="clicked-layer")  # written by CLICK_JS
        with gr.Row():
            with gr.Column(scale=3):
                table = gr.Dataframe(label="Most sensitive layers at this bit-width (select a row)",
                                     interactive=False, max_height=320, elem_id="sensitive-table")
            with gr.Column(scale=2):
                layer = gr.Dropdown([], label="Layer", allow_custom_value=True)
                curve = gr.Plot(show_label=False)
                with gr.Row():
                    lock_bits = gr.Dropdown(["fp"], value="fp", label="Lock it to")
                    lock = gr.Button("Lock in the budget view", size="sm")
        gr.Markdown(SEE_INTRO)
        with gr.Row():  # a layer's name is long: the picker gets a row's width
            by = gr.Radio(list(isolated.BY), value="layer", label="Quantize alone", scale=2)
            target = gr.Dropdown([], label="Which", allow_custom_value=True, scale=5, elem_id="see-target")
        with gr.Row():
            prompt = gr.Textbox(images.compose("large", "red", "circle", "on the left", "white"), label="Prompt",
                                scale=5)
            seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=images.MAX_SEED, scale=1)
            see = gr.Button("Show images", variant="primary", scale=1, elem_id="see-images")
        with gr.Row():
            fp_image = gr.Image(label="FP", interactive=False, elem_id="see-fp", format="png")
            q_image = gr.Image(label="Quantized alone", interactive=False, elem_id="see-quantized", format="png")
            diff_image = gr.Image(label=f"Difference x{isolated.GAIN}", interactive=False, elem_id="see-difference",
                                  format="png")
        seen_text = gr.Markdown(elem_id="see-scores")

    def bit_choices(model, kind):
        measured = [str(b) for b in shared.entry(model).profile.bits(kind)]
        value = "4" if "4" in measured else measured[0]
        return gr.update(choices=measured, value=value), gr.update(choices=shared.entry(model).profile.names)

    def lock_choices(model, name):  # the widths measured for this layer, and floating point
        if not name or name not in shared.entry(model).profile:
            return gr.skip()
        widths = shared.entry(model).profile[name].weight
        measured = sorted({b for by_bits in widths.values() for b in by_bits}, reverse=True)
        return gr.update(choices=["fp", *map(str, measured)], value="fp")

    def show(model, kind, metric_choice, b):
        if not b:
            return gr.skip(), gr.skip(), gr.skip()
        entry = shared.entry(model)
        frame = views.damage_frame(entry.profile, kind, dict(METRICS[metric_choice]), int(b))
        title = f"{len(frame)} layers of {entry.key}: damage when one layer's {kind}s are quantized to {b} bits"
        top = views.most_sensitive(frame)
        first = top["layer"].iloc[0] if len(top) else None
        return plots.sensitivity_map(views.layer_grid(entry), frame, title), top, first

    def pick(model, name):
        entry = shared.entry(model)
        if not name:
            return gr.skip()
        entry.profile.check_names([name])
        return plots.damage_curve(views.damage_curves(entry.profile[name]), name)

    def targets(model, how, name=None):
        offered = isolated.choices(shared.entry(model), how)
        return gr.update(choices=offered, value=name if name in offered else offered[0])

    def show_seen(model, kind, b, how, name, text, s):
        if not b or not name:
            return gr.skip(), gr.skip(), gr.skip(), "pick a layer first (a row of the table, or the dropdown)"
        entry = shared.entry(model)
        refused = entry.images_refused()
        if refused:
            return None, None, None, refused
        selection = isolated.Selection(how, name)
        seen = isolated.see(entry, selection, kind, int(b), text, s)
        return seen.fp, seen.quantized, seen.difference, isolated.caption(entry, selection, kind, int(b), seen)

    def picked(model, kind, b, name, text, s):
        """A layer picked (a heatmap cell, a table row, the dropdown): shown at once where images take
        a moment (the embedded model, any model on a GPU); a full-size model on a CPU waits for the
        button, which says how long it will take."""
        if not name:
            return (gr.skip(),) * 6
        pick_target = (gr.update(value="layer"), targets(model, "layer", name))
        wait = isolated.waits(shared.entry(model), 2, f"{name} alone")  # a full-size model on a CPU: minutes
        if wait:
            return (*pick_target, gr.skip(), gr.skip(), gr.skip(), wait)
        return (*pick_target, *show_seen(model, kind, b, "layer", name, text, s))

    def selected(model, kind, b, text, s, evt: gr.SelectData):
        name = evt.row_value[0]  # the row as shown, also after the user sorted the table
        return name, *picked(model, kind, b, name, text, s)

    def clicked_cell(model, kind, b, name, text, s):
        return (name, *picked(model, kind, b, name, text, s)) if name else (gr.skip(),) * 7

    inputs = [shared.model, kind, metric, bits]
    shown = [heatmap, table, layer]  # the most sensitive layer is picked, so its curve shows at once
    for trigger in (shared.model.change, kind.input):  # new choices of bits, then the map
        trigger(friendly(bit_choices), [shared.model, kind], [bits, layer], api_visibility="private").then(
            friendly(show), inputs, shown, api_visibility="private")
    for control in (bits, metric):
        control.input(friendly(show), inputs, shown, api_visibility="private")
    tab.select(friendly(show), inputs, shown, api_visibility="private")  # redrawn at the visible width
    # a pick shows its images in the same round trip (the table, a heatmap cell) or on the user's own
    # change of the dropdown; the layer the heatmap picks for itself on opening shows none
    see_pick = [shared.model, kind, bits]
    picking = dict(concurrency_id="pipeline", concurrency_limit=1, api_visibility="private")
    heatmap.change(None, None, None, js=CLICK_JS)  # once, when the page first draws a heatmap
    layer.change(friendly(pick), [shared.model, layer], curve, api_visibility="private")
    layer.change(friendly(lock_choices), [shared.model, layer], lock_bits, api_visibility="private")
    seen = [fp_image, q_image, diff_image, seen_text]
    see_inputs = [shared.model, kind, bits, by, target, prompt, seed]
    by.input(friendly(targets), [shared.model, by], target, api_visibility="private")
    see.click(friendly(show_seen), see_inputs, seen, concurrency_id="pipeline", concurrency_limit=1,
              api_visibility="private")
    table.select(friendly(selected), [*see_pick, prompt, seed], [layer, by, target, *seen], **picking)
    clicked.change(friendly(clicked_cell), [*see_pick, clicked, prompt, seed], [layer, by, target, *seen],
                   show_progress="hidden", **picking)
    layer.input(friendly(picked), [*see_pick, layer, prompt, seed], [by, target, *seen], **picking)

    return SensitivityTab(kind, bits, layer, lock_bits, lock, see, seen, inputs, shown, bit_choices, show)


def wire_lock(shared: Shared, tab: SensitivityTab, budget: BudgetTab) -> None:
    """Once the budget view exists: a lock set here re-solves there."""

    def add_lock(values):
        name, b = values[tab.layer], values[tab.lock_bits]
        if not name:
            raise gr.Error("pick a layer first (a row of the table, or the dropdown)")
        model, _, controls = budget.plan(values)
        new = views.with_lock(shared.entry(model), controls, name, b)
        gr.Info(f"{name} locked to {b}: the budget view now keeps it there")
        return new, views.locks_frame(new)

    tab.lock.click(friendly(add_lock), budget.inputs(tab.layer, tab.lock_bits), [shared.locks, budget.locks_table],
                   api_visibility="private").then(
        friendly(budget.reshape), budget.inputs(), budget.reshaped(), api_visibility="private",
        show_progress="hidden")
