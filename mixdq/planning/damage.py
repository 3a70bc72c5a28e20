"""The damage table: what each layer loses at each bit-width, on one scale for both groups.

Damage of one layer at one bit-width, from the metric its group is judged by:

* SSIM (content layers, by default): `1 - SSIM`, the lost structural similarity of the images;
* SQNR (quality layers, by default): `10 ** (-SQNR / 10)`, the noise-to-signal power ratio of the
  UNet output (additive across layers for independent noise, like the knapsack assumes).

The two scales are incomparable, so each (kind, group) is normalised: damage 1 is the whole group
at the lowest measured bit-width. The objective is
`content_weight * content damage + (1 - content_weight) * quality damage`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mixdq.core.bits import Bits, Kind, supported_bits
from mixdq.core.errors import ConfigError
from mixdq.core.metrics import Metric
from mixdq.models.inventory import GROUPS
from mixdq.planning.config import PlanConfig
from mixdq.sensitivity.profile import Profile


def damage(metric: Metric, score: float) -> float:
    """One raw score (higher = better) as damage (lower = better, 0 = none)."""
    if metric == "ssim":
        return max(0.0, 1.0 - score)
    return 10.0 ** (-score / 10.0)


@dataclass(frozen=True, eq=False)
class DamageTable:
    """Per (layer, option) of one kind: `options` are the bit-widths (None = floating point, always
    last); `damage[i, j]` is on the normalised objective scale; `measured[i, j]` says the profile
    has the score (floating point always "measured": damage 0); `allowed[i, j]` applies the
    config's candidates, `allow_fp` and locks. Rows follow the profile's layer order."""

    kind: Kind
    options: tuple[Bits, ...]
    damage: np.ndarray
    measured: np.ndarray
    allowed: np.ndarray

    def __post_init__(self):
        for array in (self.damage, self.measured, self.allowed):
            array.setflags(write=False)

    def option(self, bits: Bits) -> int:
        return self.options.index(bits)


def damage_table(profile: Profile, config: PlanConfig, kind: Kind) -> DamageTable:
    # the engine has no 2-bit activations although MixDQ publishes their scores
    measured_bits = [b for b in profile.bits(kind) if b in supported_bits(kind)]
    options: tuple[Bits, ...] = (*measured_bits, None)
    n, fp = len(profile), len(options) - 1
    damages = np.zeros((n, len(options)))
    measured = np.zeros((n, len(options)), bool)
    measured[:, fp] = True
    allowed = np.zeros((n, len(options)), bool)
    allowed[:, fp] = config.allow_fp
    scale = {group: _group_scale(profile, config, kind, group) for group in GROUPS}
    for i, layer in enumerate(profile):
        metric = config.metric_of(layer.group)
        scores = layer.scores(kind).get(metric, {})
        permitted = config.candidates(kind).get(layer.group)
        for j, bits in enumerate(options[:fp]):
            if bits in scores:  # scored even when not allowed, so `evaluate` can price any allocation
                damages[i, j] = damage(metric, scores[bits]) * scale[layer.group]
                measured[i, j] = True
                allowed[i, j] = permitted is None or bits in permitted
    index = {name: i for i, name in enumerate(profile.names)}
    for name, bits in config.locks(kind).items():
        layer, i = profile[name], index[name]  # profile[name]: an unknown name is a clear error
        if bits not in options or not measured[i, options.index(bits)]:
            metric = config.metric_of(layer.group)
            have = sorted(layer.scores(kind).get(metric, {}))
            raise ConfigError(
                f"lock {name} = {bits}: {kind} {bits}-bit {metric.upper()} was not measured for this "
                f"layer (measured: {', '.join(map(str, have)) or 'none'}); lock it to a measured "
                "bit-width or 'fp'"
            )
        allowed[i] = False
        allowed[i, options.index(bits)] = True
    stuck = [profile.layers[i].name for i in np.nonzero(~allowed.any(axis=1))[0]]
    if stuck:
        metrics = "/".join(sorted({config.metric_of(g) for g in GROUPS}))
        raise ConfigError(
            f"{len(stuck)} layers have no allowed {kind} option with a measured {metrics} score "
            f"(e.g. '{stuck[0]}'); measure them, lock them, allow floating point, or change the "
            "metric mapping"
        )
    return DamageTable(kind, options, damages, measured, allowed)


def _group_scale(profile: Profile, config: PlanConfig, kind: Kind, group: str) -> float:
    """Objective weight of the group over its total damage at the lowest measured bits."""
    metric = config.metric_of(group)
    total = 0.0
    for layer in profile:
        scores = layer.scores(kind).get(metric, {})
        if layer.group == group and scores:
            total += damage(metric, scores[min(scores)])
    weight = config.content_weight if group == "content" else 1 - config.content_weight
    return weight / total if total > 0 else 0.0





def metric_agreement(profile: Profile, kind: Kind = "weight", bits: int = 4, group: str = "content"):
    """Do SSIM and SQNR rank the layers of `group` alike? Per layer measured by both at `bits`:
    its damage by each metric, and the Spearman rank correlation of the two columns.

    On MixDQ's SDXL-Turbo measurements content layers rank almost identically (0.994-0.998 at 2
    and 4 bits), so decoupling the metrics changes how the budget splits between the groups
    rather than the order within one."""

    rows = [dict(layer=layer.name, ssim_damage=damage("ssim", s["ssim"][bits]),
                 sqnr_damage=damage("sqnr", s["sqnr"][bits]))
            for layer in profile if layer.group == group
            for s in [layer.scores(kind)] if bits in s.get("ssim", {}) and bits in s.get("sqnr", {})]
    frame = pd.DataFrame(rows, columns=["layer", "ssim_damage", "sqnr_damage"])
    # Spearman = Pearson on (average) ranks; pandas' own spearman would pull in scipy
    ranks = frame[["ssim_damage", "sqnr_damage"]].rank()
    rho = float(ranks["ssim_damage"].corr(ranks["sqnr_damage"])) if len(frame) > 2 else float("nan")
    return frame, rho
__all__ = ["DamageTable", "damage", "damage_table", "metric_agreement"]
