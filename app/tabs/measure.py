"""The measure view: does the planner's predicted damage hold when every layer is quantized at once?"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

import mixdq

from .. import images, views
from .budget import BudgetTab
from .common import Shared, friendly

INTRO = (
    "The budget view **predicts** an allocation's damage by adding up what each layer did when it "
    "was quantized alone. Layers interact, so this checks the sum against reality: the allocation "
    "runs on held-out captions (caption i with seed i) and its images are compared with the FP "
    "model's. Uniform allocations (every layer at the same bits, 8-bit activations) are the reference "
    "points. If the additive model holds, lower predicted damage means better measured images."
)
COLUMNS = ["allocation", "avg_bits", "weight_mb", "predicted_damage", "psnr", "ssim", "alignment", "frechet"]
METRIC_AXES = {
    "frechet": ("Fréchet distance (lower is better)", "log"),
    "psnr": ("PSNR dB (higher is better)", "linear"),
    "ssim": ("SSIM (higher is better)", "linear"),
    "alignment": ("caption alignment", "linear"),
}


def uniform_plans(entry) -> list[tuple[str, mixdq.Plan]]:
    """The reference points: every layer at the same weight bits (3 and up), 8-bit activations."""
    planner = entry.planner(views.Controls().plan_config())
    return [(f"uniform W{bits}A8", planner.evaluate(mixdq.Allocation.uniform(entry.profile.names, bits, 8)))
            for bits in entry.profile.bits("weight") if bits >= 3]


def measured_rows(entry, labelled: list[tuple[str, mixdq.Plan]], n: int) -> list[dict]:
    """Each plan measured on `n` held-out captions (all in one GPU call), beside its prediction."""
    scores = images.measure(entry, [plan.allocation for _, plan in labelled], n)
    return [dict(allocation=label, avg_bits=round(plan.avg_bits, 3), weight_mb=round(plan.weight_mb, 4),
                 predicted_damage=float(f"{plan.damage:.4g}"), **{k: s[k] for k in COLUMNS[4:]})
            for (label, plan), s in zip(labelled, scores)]


def plot(history: pd.DataFrame, references: pd.DataFrame, metric: str) -> go.Figure:
    title, scale = METRIC_AXES[metric]
    fig = go.Figure()
    for df, name, style in ((references, "uniform", dict(color="#888", size=9, symbol="square")),
                            (history, "measured here", dict(color="#b2182b", size=12, symbol="diamond"))):
        if len(df):
            fig.add_trace(go.Scatter(x=df["predicted_damage"], y=df[metric], mode="markers+text", name=name,
                                     text=df["allocation"], textposition="top center", marker=style,
                                     hovertemplate="%{text}<br>predicted %{x:.3g}<br>measured %{y:.4g}<extra></extra>"))
    fig.update_layout(height=360, margin=dict(l=60, r=20, t=30, b=40), xaxis=dict(title="predicted damage", type="log"),
                      yaxis=dict(title=title, type=scale), legend=dict(orientation="h", y=1.1))
    return fig


@dataclass(frozen=True, eq=False)
class MeasureTab:
    """The measure view's components (nothing of it is wired from elsewhere)."""

    n: gr.Slider
    metric: gr.Dropdown
    button: gr.Button
    figure: gr.Plot
    table: gr.Dataframe


def build(shared: Shared, budget: BudgetTab) -> MeasureTab:
    with gr.Tab("Measure", id="measure"):
        gr.Markdown(INTRO)
        with gr.Row():
            n_slider = gr.Slider(8, 128, value=32, step=8, label="Held-out captions")
            metric = gr.Dropdown(list(METRIC_AXES), value="frechet", label="Measured by")
            go_btn = gr.Button("Measure the budget view's allocation", variant="primary", elem_id="measure")
        gr.Markdown("**Why a 3-bit mixed model can match a 4-bit uniform one:** most layers barely notice fewer "
                    "bits and a few notice a lot, so bits moved to the few buy more than they cost the many. "
                    "Measured on the embedded model (`bench/allocation_payoff.py`, 128 held-out captions, "
                    "weights only): planned 3-bit allocations reach PSNR 40.9-41.8 dB and Fréchet 1.4-1.5, "
                    "uniform 4-bit 40.0 dB and 1.3, with a quarter more memory.")
        figure = gr.Plot(show_label=False, elem_id="measure-plot")
        table = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="measure-table")
        history = gr.State([])  # this session's measured allocations
        references = gr.State(None)  # the uniform rows they were measured against

    # the inputs are a set: one dict of values, then gr.Progress, which Gradio finds by its position
    def run(values, progress=gr.Progress(track_tqdm=True)):
        model, mb, controls = budget.plan(values)
        entry = shared.entry(model)
        if not entry.embedded:
            raise mixdq.ConfigError("measuring needs images and held-out captions: pick the embedded model")
        plan = views.solve(entry, controls, mb)
        n, metric_name, rows = int(values[n_slider]), values[metric], values[history]
        acts = "float acts" if plan.act_avg_bits is None else f"A{plan.act_avg_bits:.1f}"
        refs = entry.memoized(("measured-uniform", n))  # the same for everyone: measured once per start
        todo = [*(uniform_plans(entry) if refs is None else []), (f"mixed W{plan.avg_bits:.2f} {acts}", plan)]
        progress(0.05, desc=f"{len(todo)} allocations on {n} captions")
        measured = measured_rows(entry, todo, n)
        if refs is None:
            refs = entry.memo(("measured-uniform", n), lambda: pd.DataFrame(measured[:-1], columns=COLUMNS))
        rows = [*rows, measured[-1]]
        hist = pd.DataFrame(rows, columns=COLUMNS)
        return rows, refs, plot(hist, refs, metric_name), pd.concat([refs, hist], ignore_index=True)

    def redraw(metric_name, rows, refs):
        return plot(pd.DataFrame(rows, columns=COLUMNS), refs if refs is not None else pd.DataFrame(columns=COLUMNS),
                    metric_name)

    go_btn.click(friendly(run), budget.inputs(n_slider, metric, history), [history, references, figure, table],
                 concurrency_id="pipeline", concurrency_limit=1, api_visibility="private")
    metric.input(redraw, [metric, history, references], figure, api_visibility="private")
    return MeasureTab(n_slider, metric, go_btn, figure, table)
