"""The compare view: the floating-point and the quantized image of one prompt and seed."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from gradio.components import Component

import mixdq
from mixdq.embedded import dataset

from .. import images, views
from .budget import BudgetTab
from .common import Shared, friendly

INTRO = (
    "Same prompt, same seed, two UNets: floating point on the left, the budget view's allocation "
    "on the right. The difference map is amplified 8x (black: identical). **Baselines** show what "
    "the allocation buys: uniform bits at the same memory, and naive W8A8 (every layer 8-bit, "
    "BOS-aware off). **BOS-aware**: the first token of CLIP's text embedding (BOS) is the same for "
    "every prompt and huge (MixDQ measured activations near 820 where the other tokens stay near "
    "10-15), so one 8-bit grid for all tokens would crush the others; MixDQ keeps BOS in floating "
    "point and leaves it out of calibration. The embedded model's small text encoder grew no such "
    "outlier, so here the toggle changes nothing measurable."
)
SHOWN = dict(type="numpy", format="png", interactive=False)  # lossless: the pixels are what is compared


def scale_of(images) -> int:
    """Small images are enlarged to about 256 px (nearest: the embedded model's 64 px pixels stay
    visible); full-size ones are shown as made."""
    return max(1, 256 // images.shape[-1])


def _weights_note(entry) -> str:
    refused = entry.images_refused()
    return "" if refused is None else f"**No images of {entry.key} here.** {refused}"


@dataclass(frozen=True, eq=False)
class CompareTab:
    """What the page uses of the compare view: the prompt and seed a link keeps, the note and
    composer a model change updates, the events that make images, and the first pair's handler."""

    prompt: gr.Textbox
    seed: gr.Number
    note: gr.Markdown
    composer: gr.Row
    made: list  # the events that make images (they change what is loaded and held)
    inputs: set[Component]  # of `first_pair`
    outputs: list[Component]  # what a pair of images fills
    first_pair: Callable
    model_changed: Callable  # model -> the note and the composer


def build(shared: Shared, budget: BudgetTab) -> CompareTab:
    with gr.Tab("Compare", id="compare"):
        gr.Markdown(INTRO)
        note = gr.Markdown(elem_id="weights-note")
        with gr.Row(visible=True) as composer:
            size = gr.Dropdown(list(dataset.SIZES), value="large", label="size", min_width=90)
            colour = gr.Dropdown(list(dataset.COLOURS), value="red", label="colour", min_width=90)
            shape = gr.Dropdown(list(dataset.SHAPES), value="circle", label="shape", min_width=90)
            where = gr.Dropdown(list(dataset.POSITIONS), value="on the left", label="where", min_width=120)
            background = gr.Dropdown(list(dataset.BACKGROUNDS), value="white", label="background", min_width=90)
        with gr.Row():
            prompt = gr.Textbox(images.compose("large", "red", "circle", "on the left", "white"),
                                label="Prompt", scale=4, elem_id="prompt")
            seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=images.MAX_SEED, scale=1)
            bos = gr.Checkbox(True, label="BOS-aware", scale=1)
            follow = gr.Checkbox(True, label="Redo when the budget changes", scale=1)
        with gr.Row():
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            uniform = gr.Button("Baseline: uniform bits, same memory")
            naive = gr.Button("Baseline: naive W8A8")
            grid_btn = gr.Button("Grid: 8 held-out captions")
        with gr.Row():
            slider = gr.ImageSlider(label="FP | quantized (drag the divider)", height=300, **SHOWN)
            fp_img = gr.Image(label="floating point", height=300, elem_id="fp-image", **SHOWN)
            q_img = gr.Image(label="quantized", height=300, elem_id="q-image", **SHOWN)
            diff = gr.Image(label="difference x8", height=300, **SHOWN)
        metrics = gr.Markdown(elem_id="compare-metrics")
        grid_img = gr.Image(label="FP (top) over quantized (bottom)", visible=False, elem_id="grid-image", **SHOWN)

    def allocation_for(entry, which: str, mb: float, controls) -> tuple[mixdq.Allocation, str, bool]:
        """(allocation, its label, whether BOS-aware may apply)."""
        names = entry.profile.names
        if which == "naive":
            return mixdq.Allocation.uniform(names, 8, 8), "naive W8A8 (BOS-aware off)", False
        plan = views.solve(entry, controls, mb)
        if which == "plan":
            mb_text = views.megabytes(plan.weight_mb)
            return plan.allocation, f"the allocation: {plan.avg_bits:.2f} bits, {mb_text} MB", True
        # uniform: the widest weight bits within the plan's memory; activations as close as allowed
        refs = views.uniform_references(entry, controls)
        fits = refs[refs["weight_mb"] <= plan.weight_mb + 1e-9]
        if not len(fits):
            raise mixdq.ConfigError(f"no uniform bit-width fits in {views.megabytes(plan.weight_mb)} MB")
        row = fits.iloc[-1]
        act = None
        if controls.act_bits is not None:
            act = max([b for b in mixdq.ACT_BITS if b <= controls.act_bits] or [min(mixdq.ACT_BITS)])
        label = f"uniform {row['label']}{f'A{act}' if act else ''}, {views.megabytes(row['weight_mb'])} MB"
        return mixdq.Allocation.uniform(names, int(row["label"][1:]), act), label, True

    def run(which, values):
        model, mb, controls = budget.plan(values)
        entry = shared.entry(model)
        text, s = images.check_prompt(entry, values[prompt], values[seed])
        allocation, label, use_bos = allocation_for(entry, which, mb, controls)
        fp, q, m = images.compare(entry, [text], s, allocation, values[bos] and use_bos)
        scale = scale_of(fp)
        fp_a, q_a = images.to_uint8(fp, scale)[0], images.to_uint8(q, scale)[0]
        return ((fp_a, q_a), fp_a, q_a, images.difference(fp, q, scale=scale),
                images.metrics_text(label, m), gr.update(visible=False))

    def run_grid(values):
        model, mb, controls = budget.plan(values)
        entry = shared.entry(model)
        if not entry.embedded:
            raise gr.Error("the grid uses the embedded model's held-out captions; pick the embedded model")
        s = images.check_seed(values[seed])
        allocation, label, _ = allocation_for(entry, "plan", mb, controls)
        captions = images.held_out_captions(8)
        fp, q, m = images.compare(entry, captions, s, allocation, values[bos])
        return (gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                images.metrics_text(f"{label}, 8 held-out captions, seeds {s}-{s + 7}", m),
                gr.update(value=images.grid(fp, q), visible=True))

    def model_changed(model):
        entry = shared.entry(model)
        return _weights_note(entry), gr.update(visible=entry.embedded)

    outputs = [slider, fp_img, q_img, diff, metrics, grid_img]

    def said_in_place(fn):
        """A prompt, seed or budget the model cannot take: the message goes where the metrics go,
        the last images stay (a toast in a corner is easy to miss)."""

        @functools.wraps(fn)  # keeps the signature Gradio reads the progress parameter from
        def wrapper(*args):
            try:
                return fn(*args)
            except mixdq.MixDQError as e:
                return (*[gr.skip()] * 4, f"⚠️ **{e}**", gr.skip())

        return wrapper

    # The inputs are a set, so a handler's values come as one dict; Gradio finds gr.Progress by its
    # position among named parameters, after that one. It shows the pipeline's first load and
    # calibration, and SDXL's sampling steps.
    def generating(which):
        def handler(values, progress=gr.Progress(track_tqdm=True)):
            return run(which, values)

        return handler

    def grid_handler(values, progress=gr.Progress(track_tqdm=True)):
        return run_grid(values)

    common = dict(concurrency_id="pipeline", concurrency_limit=1, api_visibility="private")
    state = budget.inputs(prompt, seed, bos)
    made = [button.click(said_in_place(generating(which)), state, outputs, **common)
            for button, which in ((generate, "plan"), (uniform, "uniform"), (naive, "naive"))]
    made.append(grid_btn.click(said_in_place(grid_handler), budget.inputs(seed, bos), outputs, **common))

    def follow_slider(values):  # only once an image is on screen
        return run("plan", values) if values[follow] and values[q_img] is not None else [gr.skip()] * len(outputs)

    budget.slider.release(said_in_place(follow_slider), {follow, q_img, *state}, outputs, show_progress="minimal",
                          trigger_mode="always_last", **common)
    for picker in (size, colour, shape, where, background):
        picker.change(images.compose, [size, colour, shape, where, background], prompt, api_visibility="private")
    shared.model.change(friendly(model_changed), shared.model, [note, composer], api_visibility="private")

    def clear_if_refused(model):
        """Images of another model under a note that says this one makes none would mislead."""
        if shared.entry(model).images_refused() is None:
            return [gr.skip()] * len(outputs)
        return None, None, None, None, "", gr.update(value=None, visible=False)

    shared.model.change(friendly(clear_if_refused), shared.model, outputs, api_visibility="private")
    def first_pair(values):
        """The pair a new visitor sees before pressing anything, at the budget the page opens at:
        made once per model and state (every page load after the first shows it from memory)."""
        entry = shared.entry(values[shared.model])
        if entry.images_refused() is not None:
            return [gr.skip()] * len(outputs)
        values = {**values, budget.slider: budget.opened_at(values, entry)}
        model, mb, controls = budget.plan(values)
        key = ("first-pair", repr((values[prompt], values[seed], bool(values[bos]), mb, controls)))
        return entry.memo(key, lambda: run("plan", values))

    return CompareTab(prompt, seed, note, composer, made, budget.opening_inputs(prompt, seed, bos), outputs,
                      said_in_place(first_pair), model_changed)
