"""The allocation's objective, as a frozen dataclass that serializes to JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mixdq.core.bits import KINDS, Bits, Kind, check_bits, parse_bits
from mixdq.core.errors import ConfigError
from mixdq.core.metrics import METRICS, Metric
from mixdq.core.serialization import FrozenMap, JsonConfig
from mixdq.models.inventory import GROUPS, Group, strip_prefix
from mixdq.quant.config import WeightQuantConfig

Lock = int | Literal["fp"]


@dataclass(frozen=True)
class PlanConfig(JsonConfig):
    """How the allocation trades layers off; every field has MixDQ's default. Hashable, so
    plans can be cached by config.

    `metric`: which score judges each group. `content_weight`: 0 = only quality counts, 1 = only
    content. `weight_candidates` / `act_candidates`: allowed bit-widths per group (absent: every
    measured one). `allow_fp`: floating point (16-bit) is also a choice for every layer.
    `weight_locks` / `act_locks`: layer -> bits or "fp", fixed whatever the budget.
    `weight`: how weights are stored, as given to `quantize_` (asymmetric: a zero-point per
    channel beside each scale, which the byte budget counts).
    """

    metric: Mapping[Group, Metric] = field(default_factory=lambda: {"content": "ssim", "quality": "sqnr"})
    content_weight: float = 0.5
    weight_candidates: Mapping[Group, tuple[int, ...]] = field(default_factory=dict)
    act_candidates: Mapping[Group, tuple[int, ...]] = field(default_factory=dict)
    allow_fp: bool = False
    weight_locks: Mapping[str, Lock] = field(default_factory=dict)
    act_locks: Mapping[str, Lock] = field(default_factory=dict)
    weight: WeightQuantConfig = field(default_factory=WeightQuantConfig)

    def __post_init__(self):
        if not 0.0 <= self.content_weight <= 1.0:
            raise ConfigError(f"content_weight must be in [0, 1], got {self.content_weight}")
        for group, metric in self.metric.items():
            if group not in GROUPS or metric not in METRICS:
                raise ConfigError(f"metric maps content/quality to ssim/sqnr; got {group!r}: {metric!r}")
        for name in ("weight_candidates", "act_candidates"):
            cands = getattr(self, name)
            unknown = set(cands) - set(GROUPS)
            if unknown:
                raise ConfigError(f"{name} keys are content/quality, got {sorted(unknown)}")
            frozen = {g: tuple(bits) for g, bits in cands.items() if bits is not None}
            object.__setattr__(self, name, FrozenMap(frozen))
        for name in ("metric", "weight_locks", "act_locks"):
            object.__setattr__(self, name, FrozenMap(getattr(self, name)))
        for kind in KINDS:
            for layer, bits in self.locks(kind).items():
                check_bits(kind, bits, layer)

    def metric_of(self, group: Group) -> Metric:
        return self.metric.get(group, "ssim" if group == "content" else "sqnr")

    def candidates(self, kind: Kind) -> Mapping[Group, tuple[int, ...]]:
        return self.weight_candidates if kind == "weight" else self.act_candidates

    def locks(self, kind: Kind) -> dict[str, Bits]:
        """Locks of `kind` by bare layer name (no `model.` prefix), "fp" as None."""
        raw = self.weight_locks if kind == "weight" else self.act_locks
        return {strip_prefix(name): parse_bits(b, kind) for name, b in raw.items()}
