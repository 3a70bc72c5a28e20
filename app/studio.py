"""The studio's page. Until the full studio lands, it explores the layer inventory and the memory
of uniform allocations: of the embedded model, and of the full-size architectures (no weights)."""

from __future__ import annotations

from functools import lru_cache

import gradio as gr
import pandas as pd

import mixdq
from mixdq.bits import bits_choices, parse_bits

EMBEDDED = "embedded"
MODELS = [EMBEDDED, *mixdq.ARCHITECTURES]
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


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="MixDQ Studio") as demo:
        gr.Markdown(
            "# MixDQ Studio\n"
            "Mixed-precision quantization of few-step text-to-image diffusion models "
            "([MixDQ, ECCV 2024](https://arxiv.org/abs/2405.17873)). "
            "Sensitivity heatmaps, the live budget slider and side-by-side images are on their "
            "way; today: every quantizable layer of the embedded model and of full-size "
            "SDXL-Turbo, SD-Turbo and SD 1.5, and what it weighs."
        )
        with gr.Tab("Layers"):
            with gr.Row():
                model = gr.Dropdown(MODELS, value=EMBEDDED, label="Model")
                wbits = gr.Dropdown(bits_choices("weight"), value="8", label="Weight bits")
                abits = gr.Dropdown(bits_choices("activation"), value="8", label="Activation bits")
            summary = gr.Markdown()
            table = gr.Dataframe(interactive=False, max_height=480)

        inputs = [model, wbits, abits]
        for control in inputs:
            control.change(inventory_view, inputs, [table, summary], api_name=False)
        demo.load(inventory_view, inputs, [table, summary], api_name="inventory")
    return demo
