"""MixDQ's own integer programs, as thu-nics/MixDQ's `integer_programming.py` runs them: content
and quality solved apart, each maximizing its raw score sum (SSIM, SQNR dB) with its average bits
held within a band around a target; the targets split the budget so that content / quality = K.

Weights choose content {2,4,8}, quality {4,8}; activations {4,8}, with the ceil(1 %) most
activation-sensitive layers per group left in floating point. Kept for comparison with the
decoupled single program of `planner.Planner`: same profile, same `Plan` totals.
"""

from __future__ import annotations

import math
import time

import numpy as np

from mixdq.core.bits import Bits, Kind
from mixdq.core.errors import ConfigError
from mixdq.models.inventory import GROUPS
from mixdq.planning.planner import Plan, Planner
from mixdq.planning.solver import Knapsack, solve_exact
from mixdq.quant.allocation import Allocation
from mixdq.quant.memory import packed_weight_bytes

WEIGHT_CANDIDATES = {"content": (2, 4, 8), "quality": (4, 8)}
ACT_CANDIDATES = {"content": (4, 8), "quality": (4, 8)}


def plan_mixdq(
    planner: Planner,
    *,
    avg_bits: float | None = None,
    budget_mb: float | None = None,
    k: float = 1.0,
    act_avg_bits: float | None = None,
    act_k: float = 1.0,
    band: float = 0.02,
    fp_fraction: float = 0.01,
) -> Plan:
    """MixDQ's allocation for `planner`'s profile and locks, priced by `planner.evaluate`.
    `k` (`act_k`): content / quality average bits; `band`: +- bits around each target;
    `fp_fraction`: share of each group's activations kept in floating point. Locked layers keep
    their locks and stay out of both programs."""
    if (budget_mb is None) == (avg_bits is None):
        raise ConfigError("give exactly one weight budget: budget_mb or avg_bits")
    for name, value in (("k", k), ("act_k", act_k)):
        if value <= 0:
            raise ConfigError(
                f"{name} is a ratio of average bits (content / quality) and must be positive, got {value:g}"
            )
    t0 = time.perf_counter()
    if budget_mb is not None:  # packed MB -> average bits, scales paid first
        scales = packed_weight_bytes(planner.params, planner.out_channels, 0.0, planner.config.weight.symmetric)
        avg_bits = (budget_mb * 1e6 - scales.sum()) * 8 / planner.params.sum()
    weights = _solve_kind(planner, "weight", avg_bits, k, band, WEIGHT_CANDIDATES, set())
    acts = {}
    if act_avg_bits is not None:
        keep = most_act_sensitive(planner, fp_fraction)
        acts = _solve_kind(planner, "activation", act_avg_bits, act_k, band, ACT_CANDIDATES, keep)
    return planner.evaluate(Allocation(weights, acts), exact=True, solve_ms=(time.perf_counter() - t0) * 1e3,
                            with_acts=act_avg_bits is not None)


def most_act_sensitive(planner: Planner, fraction: float = 0.01) -> set[str]:
    """Per group, the ceil(fraction x layers) layers whose activations hurt most even at the
    highest measured activation bit-width (lowest SSIM / SQNR at 8 bits): MixDQ keeps these in
    floating point (this ranking reproduces its published lists for SDXL-Turbo)."""
    keep = set()
    for group in GROUPS:
        metric = planner.config.metric_of(group)
        scored = [(max(layer.activation[metric].items())[1], layer.name) for layer in planner.profile
                  if layer.group == group and layer.activation.get(metric)]
        keep.update(name for _, name in sorted(scored)[: math.ceil(fraction * len(scored))])
    return keep


def _solve_kind(planner: Planner, kind: Kind, avg: float, k: float, band: float,
                candidates: dict[str, tuple[int, ...]], keep_fp: set[str]) -> dict[str, Bits]:
    profile = planner.profile
    size = planner.size(kind)
    groups = np.array([layer.group for layer in profile])
    ratio = size[groups == "content"].sum() / size[groups == "quality"].sum()
    quality_target = avg * (1 + ratio) / (k * ratio + 1)  # MixDQ's get_mean_bit
    targets = {"content": k * quality_target, "quality": quality_target}
    locks = planner.config.locks(kind)
    out: dict[str, Bits] = {**locks, **{n: None for n in keep_fp if n not in locks}}
    for group in GROUPS:
        metric = planner.config.metric_of(group)
        rows = [i for i, layer in enumerate(profile) if layer.group == group and layer.name not in out]
        bits, target = candidates[group], targets[group]
        if not (bits[0] - band <= target <= bits[-1] + band):
            raise ConfigError(
                f"MixDQ mode, {kind}s: K={k:g} gives {group} layers a target of {target:.2f} bits, "
                f"outside their candidates {bits[0]}-{bits[-1]}; choose another K or budget"
            )
        score = np.array([[profile.layers[i].scores(kind).get(metric, {}).get(b, np.nan) for b in bits]
                          for i in rows]).reshape(len(rows), len(bits))
        if np.isnan(score).any():
            r = int(np.argwhere(np.isnan(score))[0][0])
            raise ConfigError(f"MixDQ mode needs {kind} {metric.upper()} at {list(bits)} bits for every "
                              f"{group} layer; '{profile.layers[rows[r]].name}' lacks some")
        cost = size[rows][:, None] * np.array(bits, float)[None, :]
        total = size[rows].sum()
        # maximize the score sum = minimize its negative
        choice = solve_exact(Knapsack(cost, -score), (target + band) * total, lower=(target - band) * total)
        out.update({profile.layers[i].name: bits[j] for i, j in zip(rows, choice)})
    return out


__all__ = ["most_act_sensitive", "plan_mixdq"]
