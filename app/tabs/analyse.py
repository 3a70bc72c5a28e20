"""The analyse view: measure a profile from the page or upload one; see whether the two metrics
agree, and what MixDQ's K-split does against one joint program."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

import mixdq
from mixdq.planning.damage import metric_agreement

from .. import library, settings, views
from .budget import BudgetTab
from .common import Shared, friendly

INTRO = (
    "A **profile** is what the other views stand on: each layer quantized alone at each bit-width, "
    "its damage measured by both metrics. Measure one for the loaded model here (resumable: a "
    "cancelled or crashed sweep continues where it stopped when started again with the same "
    "settings), or upload one: our JSON, or MixDQ's YAML files. It joins the model picker, and is "
    "kept on disk so a reload does not measure it again."
)
AGREEMENT = (
    "**Why measure content and quality apart, if the metrics agree?** MixDQ judges content layers "
    "(cross-attention, feed-forward) by how the *image* changes (SSIM) and the rest by the noise in "
    "the UNet's output (SQNR). Within the content layers the two rank layers almost identically "
    "(Spearman 0.994-0.998 at 2 and 4 bits on MixDQ's SDXL-Turbo data, 0.97-0.98 on the embedded "
    "model): decoupling changes how the budget is *split between* the groups, not the order within one."
)
KSPLIT = (
    "**MixDQ's K-split against one joint program, at the budget view's memory.** MixDQ solves content "
    "and quality apart, their average bits in the ratio K; the joint program lets the damage decide. "
    "Both are priced by the same objective."
)


def agreement_plot(profile: mixdq.Profile, bits: int):
    frame, rho = metric_agreement(profile, "weight", bits)
    fig = go.Figure(go.Scatter(x=frame["sqnr_damage"], y=frame["ssim_damage"], mode="markers", text=frame["layer"],
                               marker=dict(color="#b2182b", size=6, opacity=0.7),
                               hovertemplate="%{text}<br>SQNR damage %{x:.3g}<br>SSIM damage %{y:.3g}<extra></extra>"))
    fig.update_layout(height=340, margin=dict(l=60, r=20, t=40, b=40),
                      title=dict(text=f"{len(frame)} content layers at {bits} bits: Spearman {rho:.3f}",
                                 font=dict(size=13)),
                      xaxis=dict(title="damage by SQNR of the UNet output", type="log"),
                      yaxis=dict(title="damage by SSIM of the images", type="log"))
    return fig


def k_split(entry, controls: views.Controls, mb: float, ks=(0.8, 1.0, 1.25)) -> pd.DataFrame:
    planner = entry.planner(controls.plan_config())
    groups = {layer.name: layer.group for layer in entry.profile}
    params = {layer.name: layer.params for layer in entry.profile}

    def row(label, plan):
        avg = {g: sum((plan.allocation.weight_bits(n) or 16) * params[n] for n in groups if groups[n] == g)
               / sum(params[n] for n in groups if groups[n] == g) for g in ("content", "quality")}
        return dict(program=label, weight_mb=round(plan.weight_mb, 3), avg_bits=round(plan.avg_bits, 3),
                    content_bits=round(avg["content"], 2), quality_bits=round(avg["quality"], 2),
                    predicted_damage=float(f"{plan.weight_damage:.4g}"))

    rows = [row("joint (decoupled metrics, one program)", planner.plan(budget_mb=mb))]
    for k in ks:
        try:
            rows.append(row(f"MixDQ K={k:g}", mixdq.plan_mixdq(planner, budget_mb=mb, k=k)))
        except mixdq.ConfigError as e:
            rows.append(dict(program=f"MixDQ K={k:g}", weight_mb=None, avg_bits=None, content_bits=None,
                             quality_bits=None, predicted_damage=None, note=str(e).split(";")[0]))
    return pd.DataFrame(rows)


@dataclass(frozen=True, eq=False)
class AnalyseTab:
    """What the page wires of the analyse view once it has opened: the metrics' agreement."""

    bits: gr.Dropdown
    scatter: gr.Plot
    agreement: Callable  # (model, bits) -> the bits measured and the scatter


def build(shared: Shared, budget: BudgetTab) -> AnalyseTab:
    with gr.Tab("Analyse", id="analyse") as tab:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                gr.Markdown("**Measure the loaded model**")
                with gr.Row():
                    n = gr.Slider(2, 32, value=8, step=1, label="Prompts")
                    layers = gr.Textbox("", label="Only layers matching (regex; empty: all)", elem_id="sweep-layers")
                wbits = gr.CheckboxGroup([str(b) for b in mixdq.WEIGHT_BITS], value=["2", "4", "8"],
                                         label="Weight bits")
                abits = gr.CheckboxGroup([str(b) for b in mixdq.ACT_BITS], value=["8"], label="Activation bits")
                with gr.Row():
                    start = gr.Button("Start (or resume) the sweep", variant="primary", elem_id="sweep-start")
                    stop = gr.Button("Cancel", elem_id="sweep-cancel")
                sweep_status = gr.Markdown(elem_id="sweep-status")
            with gr.Column():
                gr.Markdown("**Or upload a profile**")
                upload = gr.File(file_count="multiple", file_types=[".json", ".yaml", ".yml"], label="Profile files",
                                 elem_id="profile-upload")
                upload_status = gr.Markdown(elem_id="upload-status")
        gr.Markdown(AGREEMENT)
        with gr.Row():
            bits = gr.Dropdown(["2", "4", "8"], value="4", label="Bits", scale=0, min_width=120)
            scatter = gr.Plot(show_label=False, elem_id="agreement")
        gr.Markdown(KSPLIT)
        ksplit = gr.Dataframe(interactive=False, elem_id="k-split")
        compare_btn = gr.Button("Again at the current budget", size="sm")

    def config_of(entry, count, w, a, regex) -> mixdq.SweepConfig:
        d = entry.defaults
        return mixdq.SweepConfig(
            prompts=d.prompts[: int(count)], num_inference_steps=d.num_inference_steps, guidance_scale=d.guidance_scale,
            height=d.height, width=d.width, batch_size=int(count), weight_bits=tuple(sorted(int(b) for b in w or ())),
            act_bits=tuple(sorted(int(b) for b in a or ())), layers=(regex or "").strip() or None,
        )

    def run(model, count, w, a, regex, progress=gr.Progress(track_tqdm=True)):
        entry = shared.entry(model)
        config = config_of(entry, count, w, a, regex)
        resumed = library.journaled(library.sweep_path(entry, config))
        try:
            profile, _ = library.run_sweep(entry, config)
        except library.SweepCancelled as e:
            return gr.skip(), f"**Sweep {e}**"
        except mixdq.MixDQError as e:  # not allowed here, or no memory for it: said where the user looks
            return gr.skip(), f"⚠️ **{e}**"
        key = library.add(shared.models, entry, profile, "sweep")
        measured = sum(bool(layer.weight or layer.activation) for layer in profile)
        partial = ("" if measured == len(profile) else
                   f" Only {measured} of {len(profile)} layers were measured: the heatmaps show them; the budget "
                   "needs every layer (measure the rest, or allow FP16 for the others).")
        return (gr.update(choices=list(shared.models), value=model if partial else key),
                f"Measured {profile.meta['probes']} probes ({resumed} resumed from the journal) in "
                f"{profile.meta['elapsed_s']:.0f} s of probing: now **{key}** in the model picker.{partial}")

    def cancel(model):
        entry = shared.entry(model)
        return ("Cancelling after the probe in flight..." if library.cancel(entry)
                else "No sweep of this model is running.")

    def uploaded(model, paths):
        if not paths:
            return gr.skip(), gr.skip()
        try:
            key, profile = library.accept_upload(shared.models, shared.entry(model), paths)
        except mixdq.MixDQError as e:  # said where the user looks, not in a corner toast
            return gr.skip(), f"⚠️ **{e}**"
        return (gr.update(choices=list(shared.models), value=key),
                f"Read {len(profile)} layers ({profile.meta.get('source', 'profile')}): now **{key}** in the picker.")

    def agreement(model, b):
        entry = shared.entry(model)
        measured = [str(x) for x in entry.profile.bits("weight")]
        b = b if b in measured else (measured[len(measured) // 2] if measured else "4")
        return gr.update(choices=measured, value=b), agreement_plot(entry.profile, int(b))

    def splits(values):
        model, mb, controls = budget.plan(values)
        return k_split(shared.entry(model), controls, mb)

    def sweeps_here(model):
        """Said before anyone presses Start: whether this studio sweeps the model at all."""
        entry = shared.entry(model)
        note = None if entry.embedded else settings.current().sweeps_note()
        return f"ℹ️ {note}" if note else ""

    shared.model.change(friendly(sweeps_here), shared.model, sweep_status, api_visibility="private")
    start.click(friendly(run), [shared.model, n, wbits, abits, layers], [shared.model, sweep_status],
                concurrency_id="sweep", concurrency_limit=4, api_visibility="private")
    stop.click(friendly(cancel), shared.model, sweep_status, api_visibility="private")
    upload.upload(friendly(uploaded), [shared.model, upload], [shared.model, upload_status], api_visibility="private")
    for trigger in (shared.model.change, bits.input):
        trigger(friendly(agreement), [shared.model, bits], [bits, scatter], api_visibility="private")
    for trigger in (compare_btn.click, tab.select):
        trigger(friendly(splits), budget.inputs(), ksplit, api_visibility="private")
    return AnalyseTab(bits, scatter, agreement)
