"""The studio's page: a header with the model picker, four tabs, and the named API endpoints.
Each tab lives in `app/tabs/`; this file only assembles them."""

from __future__ import annotations

from functools import lru_cache

import gradio as gr
import pandas as pd

import mixdq
from mixdq.bits import bits_choices, parse_bits

from . import api
from .session import EMBEDDED, ModelEntry, default_models
from .tabs import budget, compare, sensitivity
from .tabs.common import Shared, friendly

MODELS = [EMBEDDED, *mixdq.ARCHITECTURES]
HEADER = (
    "# MixDQ Studio\n"
    "Few-step text-to-image models (SDXL-Turbo, LCM) are fast but big. Storing their weights in 2-8 "
    "bits shrinks them, but not every layer tolerates it: "
    "[MixDQ (ECCV 2024)](https://arxiv.org/abs/2405.17873) measures how much each layer suffers, then "
    "chooses one bit-width per layer to do the least damage within a memory budget. **Sensitivity** "
    "shows the measurements, **Budget** the choice, **Compare** the images."
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


def layers_tab() -> None:
    with gr.Tab("Layers", id="layers"):
        with gr.Row():
            model = gr.Dropdown(MODELS, value=EMBEDDED, label="Architecture")
            wbits = gr.Dropdown(bits_choices("weight"), value="8", label="Weight bits")
            abits = gr.Dropdown(bits_choices("activation"), value="8", label="Activation bits")
        summary = gr.Markdown()
        table = gr.Dataframe(interactive=False, max_height=480)
    inputs = [model, wbits, abits]
    for control in inputs:
        control.change(inventory_view, inputs, [table, summary], api_visibility="private")
    return inputs, [table, summary]


def api_endpoints(models: dict[str, ModelEntry]) -> None:
    """Named endpoints on hidden components: /allocate and /compare for gradio_client."""
    with gr.Column(visible=False):
        model, avg_bits, cw, plan = gr.Textbox(), gr.Number(), gr.Number(value=0.5), gr.JSON()
        prompt, seed, bits2 = gr.Textbox(), gr.Number(precision=0), gr.Number()
        fp, q, metrics = gr.Image(type="numpy"), gr.Image(type="numpy"), gr.JSON()
        go_allocate, go_compare = gr.Button(), gr.Button()
    go_allocate.click(friendly(lambda m, b, w: api.allocate(models, m, b, w)), [model, avg_bits, cw], plan,
                      api_name="allocate", concurrency_id="solve", concurrency_limit=8)
    go_compare.click(friendly(lambda p, s, b: api.compare(models, p, s, b)), [prompt, seed, bits2], [fp, q, metrics],
                     api_name="compare", concurrency_id="pipeline", concurrency_limit=1)


def build_demo(models: dict[str, ModelEntry] | None = None, default: str = EMBEDDED) -> gr.Blocks:
    models = models or default_models()
    with gr.Blocks(title="MixDQ Studio") as demo:
        with gr.Row():
            gr.Markdown(HEADER)
            with gr.Column(scale=0, min_width=260):
                picker = gr.Dropdown(list(models), value=default, label="Model", elem_id="model-picker")
        gr.Markdown(HONEST, elem_classes="honest")
        shared = Shared(models, picker, gr.State(()))
        with gr.Tabs():
            sensitivity.build(shared)
            budget.build(shared)
            compare.build(shared)
            layers_inputs, layers_outputs = layers_tab()
        for wire in shared.later:
            wire()
        api_endpoints(models)

        b, s, c = shared.budget, shared.sensitivity, shared.compare
        demo.load(friendly(b["reset"]), picker, b["reset_outputs"], api_visibility="private").then(
            friendly(b["reshape"]), [picker, b["slider"], *b["controls"]], [b["slider"], *b["outputs"]],
            api_visibility="private")
        demo.load(friendly(s["bit_choices"]), [picker, s["kind"]], [s["bits"], s["layer"]],
                  api_visibility="private").then(friendly(s["show"]), s["inputs"], s["shown"],
                                                 api_visibility="private")
        demo.load(friendly(c["model_changed"]), picker, [c["note"], c["composer"]], api_visibility="private")
        demo.load(inventory_view, layers_inputs, layers_outputs, api_name="inventory")
    return demo
