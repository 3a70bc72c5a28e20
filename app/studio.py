"""The studio's page: a header with the model picker, eight tabs (Sensitivity, Content vs quality,
Budget, Compare, Measure, Export, Analyse, Layers), and the named API endpoints. Each tab but Layers lives in
`app/tabs/`, its `build` returning the dataclass of what the others use of it; this file assembles
them and wires what happens when the page opens."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlencode

import gradio as gr
import pandas as pd
from gradio.components import Component

import mixdq
from mixdq.core.bits import bits_choices, parse_bits

from . import api, images, library, views
from .registry import ModelEntry, default_models
from .settings import EMBEDDED
from .tabs import analyse, budget, compare, contrast, export, measure, sensitivity
from .tabs.common import Shared, friendly

MODELS = [EMBEDDED, *mixdq.ARCHITECTURES]
HEADER = (
    "# MixDQ Studio\n"
    "Few-step text-to-image models (SDXL-Turbo, LCM) are fast but big. Storing their weights in 2-8 "
    "bits shrinks them, but not every layer tolerates it: "
    "[MixDQ (ECCV 2024)](https://arxiv.org/abs/2405.17873) measures how much each layer suffers, then "
    "chooses one bit-width per layer to do the least damage within a memory budget. **Sensitivity** "
    "shows the measurements, **Content vs quality** what they say of MixDQ's split, **Budget** the choice, "
    "**Compare** the images."
)
HONEST = (
    "What the embedded model can and cannot show: it is tiny (5.8 M weights, 64 px shapes) and runs "
    "here on a CPU; its text encoder has no BOS outlier, and on its data SSIM and SQNR rank content "
    "layers almost alike. SDXL-Turbo's map comes from MixDQ's published measurements."
)
TABLE_COLUMNS = ["name", "kind", "group", "layer_type", "params", "act_elements", "macs"]


@lru_cache(maxsize=8)
def _inventory(model: str) -> mixdq.Inventory:
    return mixdq.load_inventory(None if model == EMBEDDED else model)


def inventory_view(model: str, weight_bits: str, act_bits: str) -> tuple[pd.DataFrame, str]:
    """The layer table and the memory of a uniform allocation."""
    try:
        inv = _inventory(model)
        alloc = mixdq.Allocation.uniform(inv.names, parse_bits(weight_bits), parse_bits(act_bits))
    except mixdq.MixDQError as e:
        raise gr.Error(str(e)) from None
    report = mixdq.memory_report(inv, alloc)
    summary = (
        f"**{model}**: {len(inv)} layers, {inv.total_params / 1e6:,.1f} M weight parameters "
        f"({len(inv.group('content'))} content, {len(inv.group('quality'))} quality)\n\n"
        f"W{weight_bits}A{act_bits}: weights {report.weight_mb:,.1f} MB "
        f"({report.ratio_fp16:.3f}x FP16, {report.ratio_fp32:.3f}x FP32), "
        f"activations {report.act_bytes / 1e6:,.1f} MB per sample per UNet call"
    )
    return inv.to_dataframe()[TABLE_COLUMNS], summary


@dataclass(frozen=True, eq=False)
class LayersTab:
    """The layer table of any architecture, for uniform bits: what `/inventory` fills on load."""

    inputs: list[Component]  # architecture, weight bits, activation bits
    outputs: list[Component]  # the table and its summary


def layers_tab() -> LayersTab:
    with gr.Tab("Layers", id="layers"):
        with gr.Row():
            model = gr.Dropdown(MODELS, value=EMBEDDED, label="Architecture")
            wbits = gr.Dropdown(bits_choices("weight"), value="8", label="Weight bits")
            abits = gr.Dropdown(bits_choices("activation"), value="8", label="Activation bits")
        summary = gr.Markdown()
        table = gr.Dataframe(interactive=False, max_height=480, elem_id="layers-table")
    inputs = [model, wbits, abits]
    for control in inputs:
        control.change(inventory_view, inputs, [table, summary], api_visibility="private")
    return LayersTab(inputs, [table, summary])


def api_endpoints(models: dict[str, ModelEntry]) -> None:
    """Named endpoints on hidden components: /allocate and /compare for gradio_client."""
    with gr.Column(visible=False):
        model, avg_bits, cw, plan = gr.Textbox(), gr.Number(), gr.Number(value=0.5), gr.JSON()
        prompt, seed, bits2 = gr.Textbox(), gr.Number(precision=0), gr.Number()
        fp, q, metrics = gr.Image(type="numpy", format="png"), gr.Image(type="numpy", format="png"), gr.JSON()
        count, files, archive, sizes, measured = gr.Number(value=32, precision=0), gr.File(file_count="multiple"), \
            gr.File(), gr.JSON(), gr.JSON()
        profile_files, profile_key = gr.File(file_count="multiple"), gr.Textbox()
        self_attention = gr.Number(value=0, precision=0)  # /export_openvino: 8, or 0 for float (MixDQ)
        go_allocate, go_compare, go_measure, go_export, go_deployed, go_openvino, go_upload = (
            gr.Button() for _ in range(7))
    go_allocate.click(friendly(lambda m, b, w: api.allocate(models, m, b, w)), [model, avg_bits, cw], plan,
                      api_name="allocate", concurrency_id="solve", concurrency_limit=8)
    go_compare.click(friendly(lambda p, s, b: api.compare(models, p, s, b)), [prompt, seed, bits2], [fp, q, metrics],
                     api_name="compare", concurrency_id="pipeline", concurrency_limit=1)
    go_measure.click(friendly(lambda b, n: api.measure(models, b, n)), [bits2, count], measured, api_name="measure",
                     concurrency_id="pipeline", concurrency_limit=1)
    go_export.click(friendly(lambda m, b, w: api.export(models, m, b, w)), [model, avg_bits, cw], files,
                    api_name="export", concurrency_id="solve", concurrency_limit=8)
    go_upload.click(friendly(lambda m, f: api.upload_profile(models, m, f)), [model, profile_files], profile_key,
                    api_name="upload_profile")
    go_deployed.click(friendly(lambda b: api.export_deployed(models, b)), bits2, [archive, sizes],
                      api_name="export_deployed", concurrency_id="pipeline", concurrency_limit=1)
    go_openvino.click(friendly(lambda b, sa: api.export_openvino(models, b, sa)), [bits2, self_attention],
                      [archive, sizes],
                      api_name="export_openvino", concurrency_id="pipeline", concurrency_limit=1)


def url_state(models: dict[str, ModelEntry], default: str, request: gr.Request):
    """The state a shared link asks for (`?model=&budget=&cw=&prompt=&seed=`); what is missing or
    malformed keeps its default."""
    q = dict(request.query_params) if request is not None else {}

    def number(key, low=-math.inf, high=math.inf):
        try:
            value = float(q[key])
        except (KeyError, ValueError):
            return None
        return min(max(value, low), high) if math.isfinite(value) else None  # "nan", "inf": ignored

    model = q.get("model") if q.get("model") in models else default
    cw, seed = number("cw", 0.0, 1.0), number("seed", 0, images.MAX_SEED)
    # the choices too: profiles swept or uploaded since this page was built are offered again
    return (gr.update(choices=list(models), value=model), cw if cw is not None else gr.skip(),
            q["prompt"] if q.get("prompt") else gr.skip(), int(seed) if seed is not None else gr.skip(),
            (model, number("budget", 0.0)))


# The reader's own sans-serif: Gradio 6.31's bundled Source Sans Pro semibold draws bold "A" and
# "B" from a fallback font, smaller than their word ("Budget", "Allocation"), seen in chromium.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"])


def make_link(model, mb, cw, prompt, seed, request: gr.Request) -> str:
    base = (request.headers.get("referer") or "http://127.0.0.1:7860/").split("?")[0]
    return base + "?" + urlencode(dict(model=model, budget=f"{mb:g}", cw=f"{cw:g}", prompt=prompt or "", seed=seed))


def build_demo(models: dict[str, ModelEntry] | None = None, default: str = EMBEDDED) -> gr.Blocks:
    models = models or default_models()
    library.load_saved(models)  # profiles measured or uploaded by earlier runs
    with gr.Blocks(title="MixDQ Studio") as demo:
        with gr.Row():
            gr.Markdown(HEADER)
            with gr.Column(scale=0, min_width=260):
                picker = gr.Dropdown(list(models), value=default, label="Model", elem_id="model-picker")
        gr.Markdown(HONEST, elem_classes="honest")
        hardware = gr.Markdown(elem_id="hardware")
        with gr.Row():
            link_btn = gr.Button("Link to this view", size="sm", scale=0, min_width=160)
            link = gr.Textbox(show_label=False, placeholder="a URL that opens the studio in this state "
                              "(model, budget, content weight, prompt, seed)", scale=5, elem_id="state-link")
        shared = Shared(models, picker, gr.State(()), gr.State(None))
        with gr.Tabs():
            s = sensitivity.build(shared)
            q = contrast.build(shared)
            b = budget.build(shared)
            c = compare.build(shared, b)
            measure.build(shared, b)
            export.build(shared, b)
            a = analyse.build(shared, b)
            layers = layers_tab()
        sensitivity.wire_lock(shared, s, b)  # a lock set in the sensitivity view re-solves the budget
        api_endpoints(models)

        cw = b.controls.content_weight
        state = [picker, cw, c.prompt, c.seed, shared.url]
        def opening(request: gr.Request):  # Gradio passes the request to a parameter annotated so
            return url_state(models, default, request)

        opened = demo.load(opening, None, state, api_visibility="private")
        reset = opened.then(friendly(b.reset), b.reset_inputs, b.reset_outputs, api_visibility="private")
        # the Compare tab opens on a pair of images, not an empty frame (made once, then from memory)
        reset.then(c.first_pair, c.inputs, c.outputs, concurrency_id="pipeline", concurrency_limit=1,
                   show_progress="minimal", api_visibility="private").then(
            views.hardware_text, None, hardware, api_visibility="private")
        opened.then(friendly(s.bit_choices), [picker, s.kind], [s.bits, s.layer],
                    api_visibility="private").then(friendly(s.show), s.inputs, s.shown, api_visibility="private")
        opened.then(views.hardware_text, None, hardware, api_visibility="private")
        for event in (opened.then, picker.change):  # content against quality: set up, then seen where quick
            event(friendly(q.refresh), q.inputs, q.outputs, api_visibility="private").then(
                friendly(q.shown), q.show_inputs, q.show_outputs, concurrency_id="pipeline", concurrency_limit=1,
                api_visibility="private")
        for event in c.made:  # images change what is loaded and held
            event.then(views.hardware_text, None, hardware, api_visibility="private")
        opened.then(friendly(c.model_changed), picker, [c.note, c.composer], api_visibility="private")
        opened.then(friendly(a.agreement), [picker, a.bits], [a.bits, a.scatter], api_visibility="private")
        link_btn.click(make_link, [picker, b.slider, cw, c.prompt, c.seed], link, api_visibility="private")
        demo.load(inventory_view, layers.inputs, layers.outputs, api_name="inventory")
    return demo
