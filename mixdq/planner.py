"""From a sensitivity profile and a budget to an `Allocation`: MixDQ's decoupled objective.

Damage of one layer at one bit-width, from the metric its group is judged by:

* SSIM (content layers, by default): `1 - SSIM`, the lost structural similarity of the images;
* SQNR (quality layers, by default): `10 ** (-SQNR / 10)`, the noise-to-signal power ratio of the
  UNet output (additive across layers for independent noise, like the knapsack assumes).

The two scales are incomparable, so each (kind, group) is normalised: damage 1 is the whole group
at the lowest measured bit-width. The objective is
`content_weight * content damage + (1 - content_weight) * quality damage`.

`Planner` precomputes one `Frontier` per (kind, cost unit), so the studio's slider gets answers in
well under a millisecond per budget; `exact=True` solves the integer program instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np
import pandas as pd

from .allocation import Allocation, strip_prefix
from .config import ACT_BITS, WEIGHT_BITS, Bits, _JsonConfig
from .errors import ConfigError
from .memory import SCALE_BYTES, ZERO_POINT_BYTES
from .profile import Kind, Metric, Profile
from .solver import Frontier, Knapsack, solve_exact

FP_BITS = 16
GROUPS = ("content", "quality")
Lock = int | Literal["fp"]


def _damage(metric: Metric, score: float) -> float:
    if metric == "ssim":
        return max(0.0, 1.0 - score)
    return 10.0 ** (-score / 10.0)


@dataclass(frozen=True)
class PlanConfig(_JsonConfig):
    """How the allocation trades layers off; every field has MixDQ's default.

    `metric`: which score judges each group. `content_weight`: 0 = only quality counts, 1 = only
    content. `weight_candidates` / `act_candidates`: allowed bit-widths per group (None: every
    measured one). `allow_fp`: floating point (16-bit) is also a choice for every layer.
    `weight_locks` / `act_locks`: layer -> bits or "fp", fixed whatever the budget.
    """

    metric: Mapping[str, Metric] = field(default_factory=lambda: {"content": "ssim", "quality": "sqnr"})
    content_weight: float = 0.5
    weight_candidates: Mapping[str, tuple[int, ...] | None] = field(default_factory=dict)
    act_candidates: Mapping[str, tuple[int, ...] | None] = field(default_factory=dict)
    allow_fp: bool = False
    weight_locks: Mapping[str, Lock] = field(default_factory=dict)
    act_locks: Mapping[str, Lock] = field(default_factory=dict)
    symmetric: bool = True  # scale bytes only: one fp16 scale (+ one zero-point if asymmetric) per channel

    def __post_init__(self):
        if not 0.0 <= self.content_weight <= 1.0:
            raise ConfigError(f"content_weight must be in [0, 1], got {self.content_weight}")
        for group, metric in self.metric.items():
            if group not in GROUPS or metric not in ("ssim", "sqnr"):
                raise ConfigError(f"metric maps content/quality to ssim/sqnr; got {group!r}: {metric!r}")
        for name, cands in (("weight_candidates", self.weight_candidates), ("act_candidates", self.act_candidates)):
            unknown = set(cands) - set(GROUPS)
            if unknown:
                raise ConfigError(f"{name} keys are content/quality, got {sorted(unknown)}")


@dataclass(frozen=True)
class Plan:
    """An allocation and what it costs and risks."""

    allocation: Allocation
    layers: tuple[str, ...]  # every layer of the profile, in order
    avg_bits: float  # parameter-weighted weight bits (floating point counts 16)
    weight_mb: float  # packed weight bytes / 1e6, scales included
    damage: float  # weights + activations, on the normalised scale
    weight_damage: float
    act_damage: float
    act_avg_bits: float | None
    exact: bool
    solve_ms: float

    def to_dict(self) -> dict:
        """`weights` and `activations` list every layer (bits, or "fp"), then the totals."""
        d = self.allocation.to_dict(self.layers)
        d.update({k: getattr(self, k) for k in (f.name for f in fields(self)) if k not in ("allocation", "layers")})
        return d


class Planner:
    """Allocations from one profile under one `PlanConfig`, for any budget."""

    def __init__(self, profile: Profile, config: PlanConfig = PlanConfig()):
        self.profile = profile
        self.config = config
        profile.check_names(strip_prefix(n) for n in [*config.weight_locks, *config.act_locks])
        params = np.array([layer.params for layer in profile], float)
        channels = np.array([layer.out_channels for layer in profile], float)
        self.params = params
        self.overhead = channels * (SCALE_BYTES + (0 if config.symmetric else ZERO_POINT_BYTES))
        self.act_elements = np.array([layer.act_elements for layer in profile], float)
        self._built: dict[Kind, tuple[list[Bits], np.ndarray, np.ndarray]] = {}
        self._frontiers: dict[tuple[Kind, str], Frontier] = {}

    # --- problem building -------------------------------------------------------------------

    def _metric(self, group: str) -> Metric:
        return self.config.metric.get(group, "ssim" if group == "content" else "sqnr")

    def _options(self, kind: Kind) -> tuple[list[Bits], np.ndarray, np.ndarray]:
        if kind not in self._built:  # built on first use: a weights-only profile never needs acts
            self._built[kind] = self._build(kind)
        return self._built[kind]

    def _build(self, kind: Kind) -> tuple[list[Bits], np.ndarray, np.ndarray]:
        """Options (bits, None = fp), an (n, options) availability mask and damage matrix."""
        cfg, profile = self.config, self.profile
        supported = WEIGHT_BITS if kind == "weight" else ACT_BITS  # e.g. MixDQ lists 2-bit activations too
        measured = [b for b in profile.bits(kind) if b in supported]
        options: list[Bits] = [*measured, None]
        n = len(profile)
        avail = np.zeros((n, len(options)), bool)
        damage = np.zeros((n, len(options)))
        cands = cfg.weight_candidates if kind == "weight" else cfg.act_candidates
        locks = {strip_prefix(k): v for k, v in (cfg.weight_locks if kind == "weight" else cfg.act_locks).items()}
        group_scale = {}
        for group in GROUPS:
            metric = self._metric(group)
            rows = [i for i, layer in enumerate(profile) if layer.group == group]
            lowest = [min(profile.layers[i].scores(kind).get(metric, {}) or [math.inf]) for i in rows]
            total = sum(_damage(metric, profile.layers[i].scores(kind)[metric][b])
                        for i, b in zip(rows, lowest) if b != math.inf)
            weight = cfg.content_weight if group == "content" else 1 - cfg.content_weight
            group_scale[group] = (metric, weight / total if total > 0 else 0.0)
        unmeasured = []
        for i, layer in enumerate(profile):
            metric, scale = group_scale[layer.group]
            scores = layer.scores(kind).get(metric, {})
            allowed = cands.get(layer.group)
            for j, bits in enumerate(options[:-1]):
                if bits in scores:  # scored even when not allowed, so `evaluate` can price any allocation
                    damage[i, j] = _damage(metric, scores[bits]) * scale
                    avail[i, j] = allowed is None or bits in allowed
            avail[i, -1] = cfg.allow_fp
            if layer.name in locks:
                lock = locks[layer.name]
                want = None if lock in (None, "fp") else lock
                if want is not None and want not in scores:
                    raise ConfigError(
                        f"lock {layer.name} = {lock}: {kind} {lock}-bit {metric.upper()} was not measured "
                        f"for this layer (measured: {', '.join(map(str, sorted(scores))) or 'none'}); "
                        "lock it to a measured bit-width or 'fp'"
                    )
                avail[i] = False
                avail[i, options.index(want)] = True
            if not avail[i].any():
                unmeasured.append(layer.name)
        if unmeasured:
            raise ConfigError(
                f"{len(unmeasured)} layers have no allowed {kind} option with a measured "
                f"{'/'.join(sorted(set(m for m, _ in group_scale.values())))} score (e.g. '{unmeasured[0]}'); "
                "measure them, lock them, allow floating point, or change the metric mapping"
            )
        return options, avail, damage

    def _knapsack(self, kind: Kind, unit: str) -> Knapsack:
        options, avail, damage = self._options(kind)
        bits = np.array([FP_BITS if b is None else b for b in options], float)
        if kind == "weight" and unit == "bytes":
            quantized = np.array([b is not None for b in options])
            cost = self.params[:, None] * bits[None, :] / 8 + self.overhead[:, None] * quantized[None, :]
        else:  # bit-weighted sizes: average bits = cost / total size
            cost = self._size(kind)[:, None] * bits[None, :]
        return Knapsack(np.where(avail, cost, np.inf), damage)

    def frontier(self, kind: Kind = "weight", unit: str = "bytes") -> Frontier:
        key = (kind, unit)
        if key not in self._frontiers:
            self._frontiers[key] = Frontier(self._knapsack(kind, unit))
        return self._frontiers[key]

    # --- answers ---------------------------------------------------------------------------

    def _solve(self, kind: Kind, unit: str, budget: float, exact: bool) -> dict[str, Bits]:
        frontier, options = self.frontier(kind, unit), self._options(kind)[0]
        if unit == "bytes":
            frontier.problem.check_budget(budget, " MB", 1e-6)
        else:
            frontier.problem.check_budget(budget, " average bits", 1 / self._size(kind).sum())
        choice = solve_exact(frontier.problem, budget) if exact else frontier.solve(budget)
        return {layer.name: options[j] for layer, j in zip(self.profile, choice)}

    def _size(self, kind: Kind) -> np.ndarray:
        return self.params if kind == "weight" else self.act_elements

    def plan(
        self,
        *,
        budget_mb: float | None = None,
        avg_bits: float | None = None,
        act_avg_bits: float | None = None,
        exact: bool = False,
    ) -> Plan:
        """Weight bits within `budget_mb` (packed MB) or `avg_bits`; activation bits within
        `act_avg_bits` (input-size weighted) when given, else activations stay floating point."""
        if (budget_mb is None) == (avg_bits is None):
            raise ConfigError("give exactly one weight budget: budget_mb or avg_bits")
        t0 = time.perf_counter()
        if budget_mb is not None:
            weights = self._solve("weight", "bytes", budget_mb * 1e6, exact)
        else:
            weights = self._solve("weight", "bits", avg_bits * self.params.sum(), exact)
        acts = {}
        if act_avg_bits is not None:
            acts = self._solve("activation", "bits", act_avg_bits * self.act_elements.sum(), exact)
        return self.evaluate(Allocation(weights, acts), exact=exact, solve_ms=(time.perf_counter() - t0) * 1e3,
                             with_acts=act_avg_bits is not None)

    def evaluate(self, allocation: Allocation, exact: bool = False, solve_ms: float = 0.0, with_acts: bool = True) -> Plan:
        """Cost and damage of any allocation under this planner's objective."""
        totals = {"activation": 0.0}
        for kind in ("weight", "activation") if with_acts else ("weight",):
            options, avail, damage = self._options(kind)
            get = allocation.weight_bits if kind == "weight" else allocation.act_bits
            d = 0.0
            for i, layer in enumerate(self.profile):
                b = get(layer.name)
                measured = b is None or b in self.profile[layer.name].scores(kind).get(self._metric(layer.group), {})
                if b not in options or not measured:
                    raise ConfigError(f"{layer.name}: {kind} {b}-bit was not measured in this profile")
                d += damage[i, options.index(b)]
            totals[kind] = d
        wbits = np.array([FP_BITS if (b := allocation.weight_bits(layer.name)) is None else b for layer in self.profile], float)
        abits = np.array([FP_BITS if (b := allocation.act_bits(layer.name)) is None else b for layer in self.profile], float)
        quantized = wbits < FP_BITS
        return Plan(
            allocation=allocation,
            layers=tuple(self.profile.names),
            avg_bits=float((wbits * self.params).sum() / self.params.sum()),
            weight_mb=float((self.params * wbits / 8 + self.overhead * quantized).sum() / 1e6),
            damage=totals["weight"] + totals["activation"],
            weight_damage=totals["weight"],
            act_damage=totals["activation"],
            act_avg_bits=float((abits * self.act_elements).sum() / self.act_elements.sum()) if with_acts else None,
            exact=exact,
            solve_ms=solve_ms,
        )

    # --- the paper's own program -----------------------------------------------------------

    def plan_mixdq(
        self,
        *,
        avg_bits: float | None = None,
        budget_mb: float | None = None,
        k: float = 1.0,
        act_avg_bits: float | None = None,
        act_k: float = 1.0,
        band: float = 0.02,
        fp_fraction: float = 0.01,
    ) -> Plan:
        """MixDQ's integer programs as its code runs them: content and quality solved apart,
        each maximizing its raw score sum (SSIM, SQNR dB) with its average bits held within
        +-`band` of a target; the targets split `avg_bits` so that content / quality = `k`.
        Weights choose content {2,4,8}, quality {4,8}; activations {4,8}, with the
        ceil(`fp_fraction` x group) most activation-sensitive layers per group left in floating
        point. Locked layers keep their locks and stay out of both programs."""
        if (budget_mb is None) == (avg_bits is None):
            raise ConfigError("give exactly one weight budget: budget_mb or avg_bits")
        if k <= 0 or act_k <= 0:
            raise ConfigError(f"K is a ratio of average bits (content / quality) and must be positive, got {k:g}")
        t0 = time.perf_counter()
        if budget_mb is not None:  # packed MB -> average bits, scales paid first
            avg_bits = (budget_mb * 1e6 - self.overhead.sum()) * 8 / self.params.sum()
        weights = self._mixdq_kind("weight", avg_bits, k, band, {"content": (2, 4, 8), "quality": (4, 8)}, set())
        acts = {}
        if act_avg_bits is not None:
            keep = self.most_act_sensitive(fp_fraction)
            acts = self._mixdq_kind("activation", act_avg_bits, act_k, band, {"content": (4, 8), "quality": (4, 8)}, keep)
        return self.evaluate(Allocation(weights, acts), exact=True, solve_ms=(time.perf_counter() - t0) * 1e3,
                             with_acts=act_avg_bits is not None)

    def most_act_sensitive(self, fraction: float = 0.01) -> set[str]:
        """Per group, the ceil(fraction x layers) layers whose activations hurt most even at the
        highest measured activation bit-width (lowest SSIM / SQNR at 8 bits): MixDQ keeps these in
        floating point (this ranking reproduces its published lists for SDXL-Turbo)."""
        keep = set()
        for group in GROUPS:
            metric = self._metric(group)
            scored = [(max(layer.activation[metric].items())[1], layer.name) for layer in self.profile
                      if layer.group == group and layer.activation.get(metric)]
            keep.update(name for _, name in sorted(scored)[: math.ceil(fraction * len(scored))])
        return keep

    def _mixdq_kind(self, kind: Kind, avg: float, k: float, band: float,
                    candidates: dict[str, tuple[int, ...]], keep_fp: set[str]) -> dict[str, Bits]:
        locks = {strip_prefix(n): (None if b == "fp" else b)
                 for n, b in (self.config.weight_locks if kind == "weight" else self.config.act_locks).items()}
        size = self._size(kind)
        groups = np.array([layer.group for layer in self.profile])
        ratio = size[groups == "content"].sum() / size[groups == "quality"].sum()
        quality_target = avg * (1 + ratio) / (k * ratio + 1)  # MixDQ's get_mean_bit
        targets = {"content": k * quality_target, "quality": quality_target}
        out: dict[str, Bits] = {**locks, **{n: None for n in keep_fp if n not in locks}}
        for group in GROUPS:
            metric = self._metric(group)
            rows = [i for i, layer in enumerate(self.profile) if layer.group == group and layer.name not in out]
            bits = candidates[group]
            target = targets[group]
            if not (bits[0] - band <= target <= bits[-1] + band):
                raise ConfigError(
                    f"MixDQ mode, {kind}s: K={k:g} gives {group} layers a target of {target:.2f} bits, "
                    f"outside their candidates {bits[0]}-{bits[-1]}; choose another K or budget"
                )
            score = np.full((len(rows), len(bits)), np.nan)
            for r, i in enumerate(rows):
                measured = self.profile.layers[i].scores(kind).get(metric, {})
                for j, b in enumerate(bits):
                    score[r, j] = measured.get(b, np.nan)
            if np.isnan(score).any():
                r = int(np.argwhere(np.isnan(score))[0][0])
                raise ConfigError(f"MixDQ mode needs {kind} {metric.upper()} at {list(bits)} bits for every "
                                  f"{group} layer; '{self.profile.layers[rows[r]].name}' lacks some")
            cost = size[rows][:, None] * np.array(bits, float)[None, :]
            total = size[rows].sum()
            # maximize the score sum = minimize its negative
            choice = solve_exact(Knapsack(cost, -score), (target + band) * total, lower=(target - band) * total)
            out.update({self.profile.layers[i].name: bits[j] for i, j in zip(rows, choice)})
        return out

    def pareto(self, kind: Kind = "weight", unit: str = "bytes") -> pd.DataFrame:
        """Damage against memory over the whole budget range: every breakpoint of the frontier
        (each one an optimal allocation for its own cost)."""
        cost, damage = self.frontier(kind, unit).points()
        size = self._size(kind).sum()
        df = pd.DataFrame({"damage": damage})
        if unit == "bytes":
            df.insert(0, "weight_mb", cost / 1e6)
        else:
            df.insert(0, "avg_bits", cost / size)
        return df


def plan(profile: Profile, config: PlanConfig = PlanConfig(), **budget) -> Plan:
    """One-shot `Planner(profile, config).plan(**budget)`."""
    return Planner(profile, config).plan(**budget)


__all__ = ["FP_BITS", "Plan", "PlanConfig", "Planner", "plan"]
