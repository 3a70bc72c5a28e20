"""Engine results as tables and text: plain functions, tested without a server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

import mixdq
from mixdq.core.bits import format_bits
from mixdq.core.device import format_gb
from mixdq.planning.damage import damage

from . import gpu, plots, settings
from .registry import ModelEntry
from .settings import zero_gpu

FP16_BYTES, FP32_BYTES = 2, 4


def _scores_text(layer: mixdq.LayerProfile, kind: str) -> str:
    parts = []
    for metric, by_bits in layer.scores(kind).items():
        unit = " dB" if metric == "sqnr" else ""
        parts.append(f"{metric.upper()}: " + ", ".join(f"{b}b {v:.4g}{unit}" for b, v in by_bits.items()))
    return "<br>".join(parts) or "not measured"


def damage_frame(profile: mixdq.Profile, kind: str, metric: Mapping[str, str], bits: int) -> pd.DataFrame:
    """Per layer: its damage at `bits` by its group's metric (NaN where not measured) and a hover
    text. `metric`: group -> "ssim" | "sqnr"."""
    rows = []
    for layer in profile:
        score = layer.scores(kind).get(metric[layer.group], {}).get(bits)
        rows.append(dict(
            layer=layer.name, group=layer.group, params=layer.params,
            damage=np.nan if score is None else damage(metric[layer.group], score),
            hover=(f"<b>{layer.name}</b><br>{layer.group} layer, {layer.params:,} weights<br>"
                   f"{kind} scores: <br>{_scores_text(layer, kind)}"),
        ))
    return pd.DataFrame(rows)


def most_sensitive(frame: pd.DataFrame, top: int = 25) -> pd.DataFrame:
    """The layers that suffer most, most first (a table a person can sort and pick from)."""
    df = frame.dropna(subset=["damage"]).sort_values("damage", ascending=False).head(top)
    df = df[["layer", "damage", "group", "params"]].reset_index(drop=True)
    df["damage"] = df["damage"].map(lambda d: float(f"{d:.3g}"))  # still numbers: the table sorts them
    return df


def damage_curves(layer: mixdq.LayerProfile) -> pd.DataFrame:
    rows = [dict(kind=kind, metric=metric, bits=b, damage=max(damage(metric, v), 1e-12))
            for kind in mixdq.core.bits.KINDS for metric, by_bits in layer.scores(kind).items()
            for b, v in by_bits.items()]
    return pd.DataFrame(rows, columns=["kind", "metric", "bits", "damage"])


@dataclass(frozen=True)
class Controls:
    """Everything besides the budget that decides an allocation (what the budget view's controls
    hold): hashable, so planners are cached by it."""

    content_weight: float = 0.5
    content_bits: tuple[int, ...] = ()  # empty: every measured bit-width
    quality_bits: tuple[int, ...] = ()
    allow_fp: bool = False
    locks: tuple[tuple[str, str], ...] = ()  # (layer, "fp" or bits)
    act_bits: float | None = None  # average activation bits; None: activations stay float
    mode: str = "decoupled"  # or "mixdq": the paper's two programs with K
    k: float = 1.0
    metric: tuple[tuple[str, str], ...] = field(default=(("content", "ssim"), ("quality", "sqnr")))

    def plan_config(self) -> mixdq.PlanConfig:
        cands = {g: bits for g, bits in (("content", self.content_bits), ("quality", self.quality_bits)) if bits}
        return mixdq.PlanConfig(
            metric=dict(self.metric), content_weight=self.content_weight, weight_candidates=cands,
            allow_fp=self.allow_fp, weight_locks={n: (b if b == "fp" else int(b)) for n, b in self.locks},
        )


def with_lock(entry: ModelEntry, controls: Controls, layer: str, bits: str) -> tuple[tuple[str, str], ...]:
    """The locks with `layer` pinned to `bits` ("fp" or a width), once the planner accepts them
    (the layer exists, the width was measured for it); else the engine's error, locks unchanged."""
    locks = tuple((n, b) for n, b in controls.locks if n != layer) + ((layer, bits),)
    entry.planner(replace(controls, locks=locks).plan_config()).table("weight")
    return locks


def locks_frame(locks) -> pd.DataFrame:
    """The locks as the budget view's table shows them. None is a row that says so: Gradio 6.31
    draws an empty table with its column numbers for headers."""
    return pd.DataFrame(list(locks) or [("none locked", "")], columns=["layer", "bits"])


def layer_grid(entry: ModelEntry) -> plots.Grid:
    """Where each of the model's layers goes in the layer maps; built once per model (kept with
    its planners)."""
    return entry.memo(("layer-grid",), lambda: plots.Grid(entry.positions))


def megabytes(mb: float) -> str:
    """As precise as the slider moves: 0.01 MB for the embedded model, 1 MB for SDXL."""
    return f"{mb:,.2f}" if mb < 100 else f"{mb:,.0f}"


def solve(entry: ModelEntry, controls: Controls, budget_mb: float, exact: bool = False) -> mixdq.Plan:
    planner = entry.planner(controls.plan_config())
    if controls.mode == "mixdq":
        return mixdq.plan_mixdq(planner, budget_mb=budget_mb, k=controls.k, act_avg_bits=controls.act_bits)
    return planner.plan(budget_mb=budget_mb, act_avg_bits=controls.act_bits, exact=exact)


def budget_range(entry: ModelEntry, controls: Controls) -> tuple[float, float]:
    """The feasible weight MB: every layer at its cheapest allowed option, up to its dearest."""
    frontier = pareto(entry, controls)
    return float(frontier["weight_mb"].min()), float(frontier["weight_mb"].max())


def pareto(entry: ModelEntry, controls: Controls) -> pd.DataFrame:
    config = controls.plan_config()
    return entry.memo(("pareto", config), lambda: entry.planner(config).pareto())


def uniform_references(entry: ModelEntry, controls: Controls) -> pd.DataFrame:
    """Uniform weight bits (every measured width) priced by the same objective: the points a
    mixed allocation should beat."""
    config = controls.plan_config()
    return entry.memo(("uniform", config), lambda: _uniform_references(entry, entry.planner(config)))


def _uniform_references(entry: ModelEntry, planner: mixdq.Planner) -> pd.DataFrame:
    rows = []
    for bits in entry.profile.bits("weight"):
        try:
            p = planner.evaluate(mixdq.Allocation.uniform(entry.profile.names, weight=bits), with_acts=False)
        except mixdq.ConfigError:  # not measured for every layer
            continue
        rows.append(dict(label=f"W{bits}", weight_mb=p.weight_mb, damage=p.weight_damage))
    return pd.DataFrame(rows, columns=["label", "weight_mb", "damage"])


def fp_mb(profile: mixdq.Profile, bytes_per_weight: int = FP16_BYTES) -> float:
    return profile.total_params * bytes_per_weight / 1e6


def plan_summary(entry: ModelEntry, plan: mixdq.Plan, exact: mixdq.Plan | None = None, mixdq_mode: bool = False) -> str:
    """The allocation in a few lines: memory against FP16/FP32, predicted damage, layers per width."""
    how = ("MixDQ's two integer programs: content 2/4/8 bits, quality 4/8, the ~1 % most "
           "activation-sensitive layers in FP16" if mixdq_mode else
           "exact integer program" if plan.exact else "live frontier")
    counts = pd.Series([format_bits(plan.allocation.weight_bits(n)) for n in plan.layers]).value_counts()
    order = sorted(counts.index, key=lambda b: 99 if b == "fp" else int(b))
    per_width = ", ".join(f"**{b}**-bit: {counts[b]}" if b != "fp" else f"**FP16**: {counts[b]}" for b in order)
    fp16 = fp_mb(entry.profile)
    lines = [
        f"### {megabytes(plan.weight_mb)} MB of UNet weights, {plan.avg_bits:.2f} bits on average",
        f"{plan.weight_mb / fp16:.3f}x FP16 ({fp16:,.0f} MB), {plan.weight_mb / (2 * fp16):.3f}x FP32 "
        f"({2 * fp16:,.0f} MB) · predicted damage **{plan.damage:.4g}**"
        + (f" (weights {plan.weight_damage:.3g}, activations {plan.act_damage:.3g} at "
           f"{plan.act_avg_bits:.2f} bits)" if plan.act_avg_bits is not None else ""),
        f"Layers per weight width: {per_width}",
        f"Solved in {plan.solve_ms:.1f} ms ({how}).",
    ]
    if exact is not None:
        gap = (plan.damage - exact.damage) / exact.damage * 100 if exact.damage > 0 else 0.0
        lines.append(f"Exact solve (PuLP/CBC, {exact.solve_ms:.0f} ms): damage {exact.damage:.4g}; the live "
                     f"answer is {gap:.4f} % above the optimum.")
    return "\n\n".join(lines)


def bits_hover(entry: ModelEntry, plan: mixdq.Plan) -> dict[str, str]:
    """Each layer's hover on the bits map: `hover_prefix`, its weight bits, `act_suffix`."""
    prefix, suffix = hover_prefix(entry), act_suffix(plan)
    return {n: prefix[n] + format_bits(plan.allocation.weight_bits(n)) + suffix[n] for n in plan.layers}


def hover_prefix(entry: ModelEntry) -> dict[str, str]:
    """What a bits-map hover says before the weight bits. Short: it is sent on every control
    change, with every slider position (the sensitivity map's hover has the details)."""
    return entry.memo(("hover-prefix",), lambda: {
        layer.name: f"{layer.name}<br>{layer.group}, {layer.params / 1e6:.3g} M weights: W" for layer in entry.profile})


def act_suffix(plan: mixdq.Plan) -> dict[str, str]:
    """What a bits-map hover says after the weight bits: the activation bits, when planned."""
    if plan.act_avg_bits is None:
        return dict.fromkeys(plan.layers, "")
    return {n: f"A{format_bits(plan.allocation.act_bits(n))}" for n in plan.layers}


def weight_bits_of(plan: mixdq.Plan) -> dict[str, int]:
    """Bits per layer for the map, floating point as 16."""
    return {n: (16 if (b := plan.allocation.weight_bits(n)) is None else b) for n in plan.layers}


def hardware_text() -> str:
    """Where images are made and what memory the studio holds: one line for the page's header."""
    studio = settings.current()
    placement = studio.placement
    where = "ZeroGPU (a GPU lent for each image request)" if zero_gpu() else placement.describe()
    use = mixdq.memory_in_use("cpu" if zero_gpu() else placement.device)
    parts = [f"**Images on** {where}", f"process memory {format_gb(use['rss_bytes'])}"]
    if "cuda_allocated_bytes" in use:
        parts.append(f"GPU memory {format_gb(use['cuda_allocated_bytes'])} (peak {format_gb(use['cuda_peak_bytes'])})")
    loaded = [f"{key} ({format_gb(m.pipeline_bytes())})" for key, m in gpu.PIPELINES.items()]
    parts.append(f"loaded: {', '.join(loaded) or 'none yet (the embedded model loads on its first image)'}")
    return " · ".join(parts)
