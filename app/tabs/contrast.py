"""The content-vs-quality view: two selections quantized alone, side by side against FP, and what
the measurements (this model's profile; the embedded model's committed bench) say of MixDQ's split."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.components import Component

from .. import contrast, images, isolated
from .common import Shared, friendly

INTRO = (
    "MixDQ splits the UNet's layers in two and judges each group its own way: **content** layers "
    "(cross-attention `attn2`, feed-forward `ff`) by the SSIM of the images, as they are said to change *what* "
    "is drawn, and **quality** layers (all the others) by the SQNR of the UNet output, as they change *how "
    "cleanly*. Here two selections are quantized alone at one width, everything else floating point, and shown "
    "beside FP with both measures: by default the content layer and the quality layer that the profile says "
    "suffer most. Pick any layer, block, role or a whole group for either side."
)
TEACHING = Path(__file__).resolve().parent.parent / "texts" / "content_quality.md"


def teaching() -> tuple[str, str]:
    """What the embedded model's committed measurements show, rendered from bench/results by
    bench/render.py: (the conclusion, how it was measured), without the renderer's markers."""
    text = TEACHING.read_text()
    summary = re.search(r"<!-- figures:content_quality-summary -->\n(.*?)<!-- /figures:content_quality-summary -->",
                        text, re.S)
    details = text.replace(summary[0], "")
    return summary[1].strip(), re.sub(r"<!-- /?figures:\S+ -->\n?", "", details).strip()


@dataclass(frozen=True, eq=False)
class ContrastTab:
    """What the page wires of this view: a model picked (or the page opened) sets it up."""

    inputs: list[Component]  # of `refresh`: the model and the width shown
    outputs: list[Component]
    refresh: Callable
    shown: Callable  # after `refresh`: the images, where they take a moment
    show_inputs: list[Component]
    show_outputs: list[Component]


def build(shared: Shared) -> ContrastTab:
    with gr.Tab("Content vs quality", id="contrast"):
        gr.Markdown(INTRO)
        summary, details = teaching()
        gr.Markdown(summary, elem_id="contrast-teaching")
        profile_text = gr.Markdown(elem_id="contrast-profile")
        with gr.Accordion("How it was measured, width by width", open=False):
            gr.Markdown(details, elem_id="contrast-details")
        with gr.Row():
            bits = gr.Dropdown([], label="Weights at (bits)", scale=1, elem_id="contrast-bits")
            prompt = gr.Textbox(images.compose("large", "red", "circle", "on the left", "white"), label="Prompt",
                                scale=4)
            seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=images.MAX_SEED, scale=1)
            show_btn = gr.Button("Show images", variant="primary", scale=1, elem_id="contrast-show")
        with gr.Row():
            with gr.Column():
                by_a = gr.Radio(list(isolated.BY), value="layer", label="Left: quantize alone",
                                elem_id="contrast-a-by")
                which_a = gr.Dropdown([], label="Which", allow_custom_value=True, elem_id="contrast-a")
            with gr.Column():
                by_b = gr.Radio(list(isolated.BY), value="layer", label="Right: quantize alone",
                                elem_id="contrast-b-by")
                which_b = gr.Dropdown([], label="Which", allow_custom_value=True, elem_id="contrast-b")
        with gr.Row():
            top_btn = gr.Button("The most damaging content and quality layer", size="sm")
            groups_btn = gr.Button("All content layers against all quality layers", size="sm")
        shown_as = dict(type="numpy", format="png", interactive=False)
        with gr.Row():
            fp_image = gr.Image(label="FP", elem_id="contrast-fp", **shown_as)
            a_image = gr.Image(label="Left, quantized alone", elem_id="contrast-a-image", **shown_as)
            b_image = gr.Image(label="Right, quantized alone", elem_id="contrast-b-image", **shown_as)
        with gr.Row():
            gr.Markdown(f"Under each side: its difference from FP, amplified {isolated.GAIN}x (black: identical, "
                        "yellow: at or past the top). The table: both measures now, on this prompt and seed, beside "
                        "what the sweep measured for a single layer (a group was never profiled as a whole).")
            a_diff = gr.Image(label=f"Left - FP, x{isolated.GAIN}", elem_id="contrast-a-diff", **shown_as)
            b_diff = gr.Image(label=f"Right - FP, x{isolated.GAIN}", elem_id="contrast-b-diff", **shown_as)
        scores = gr.Dataframe(interactive=False, elem_id="contrast-scores", wrap=True)
        status = gr.Markdown(elem_id="contrast-status")

    def refresh(model, b):
        """A model picked: its widths (the one shown kept where it was measured), its most damaging
        content and quality layers there, and what its profile says of the groups."""
        entry = shared.entry(model)
        measured = [str(w) for w in entry.profile.bits("weight")]
        b = b if b in measured else measured[0]
        a, q = contrast.most_damaging(entry, "weight", int(b))
        layers = entry.profile.names
        return (gr.update(choices=measured, value=b), "layer", gr.update(choices=layers, value=a.name), "layer",
                gr.update(choices=layers, value=q.name), contrast.separation(entry, "weight", int(b)))

    def show(model, b, how_a, name_a, how_b, name_b, text, s):
        if not (b and name_a and name_b):
            return (gr.skip(),) * 6 + ("choose a width and what each side quantizes",)
        entry = shared.entry(model)
        refused = entry.images_refused()
        if refused:
            return None, None, None, None, None, None, refused
        sides = [isolated.Selection(how_a, name_a), isolated.Selection(how_b, name_b)]
        seen = isolated.see_each(entry, sides, "weight", int(b), text, s)
        labels = [f"{side}: {selection.label(entry)} ({selection.group(entry)})"
                  for side, selection in zip(("Left", "Right"), sides)]
        return (seen[0].fp, gr.update(value=seen[0].quantized, label=labels[0]),
                gr.update(value=seen[1].quantized, label=labels[1]), seen[0].difference, seen[1].difference,
                contrast.scores_table(entry, sides, seen), f"Weights at {b} bits, each side alone; prompt "
                f"{text!r}, seed {int(s)}.")

    def shown_if_quick(*args):
        wait = isolated.waits(shared.entry(args[0]), 3, "both sides beside FP")
        return (gr.skip(),) * 6 + (wait,) if wait else show(*args)

    def top(model, b):
        a, q = contrast.most_damaging(shared.entry(model), "weight", int(b))
        layers = shared.entry(model).profile.names
        return "layer", gr.update(choices=layers, value=a.name), "layer", gr.update(choices=layers, value=q.name)

    def all_groups(model):
        offered = isolated.choices(shared.entry(model), "group")
        return "group", gr.update(choices=offered, value="content"), "group", gr.update(choices=offered,
                                                                                        value="quality")

    def targets(model, how):
        offered = isolated.choices(shared.entry(model), how)
        return gr.update(choices=offered, value=offered[0])

    private = dict(api_visibility="private")
    pipeline = dict(concurrency_id="pipeline", concurrency_limit=1, **private)
    show_inputs = [shared.model, bits, by_a, which_a, by_b, which_b, prompt, seed]
    show_outputs = [fp_image, a_image, b_image, a_diff, b_diff, scores, status]
    refreshed = [bits, by_a, which_a, by_b, which_b, profile_text]
    show_btn.click(friendly(show), show_inputs, show_outputs, **pipeline)
    by_a.input(friendly(targets), [shared.model, by_a], which_a, **private)
    by_b.input(friendly(targets), [shared.model, by_b], which_b, **private)
    top_btn.click(friendly(top), [shared.model, bits], [by_a, which_a, by_b, which_b], **private).then(
        friendly(shown_if_quick), show_inputs, show_outputs, **pipeline)
    groups_btn.click(friendly(all_groups), shared.model, [by_a, which_a, by_b, which_b], **private).then(
        friendly(shown_if_quick), show_inputs, show_outputs, **pipeline)
    bits.input(lambda model, b: contrast.separation(shared.entry(model), "weight", int(b)), [shared.model, bits],
               profile_text, **private).then(friendly(shown_if_quick), show_inputs, show_outputs, **pipeline)
    for picked in (which_a, which_b):
        picked.input(friendly(shown_if_quick), show_inputs, show_outputs, **pipeline)
    return ContrastTab([shared.model, bits], refreshed, refresh, shown_if_quick, show_inputs, show_outputs)
