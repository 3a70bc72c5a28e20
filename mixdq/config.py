"""What to quantize and how, as frozen dataclasses that serialize to JSON.

The config says *what* (range methods, BOS handling, calibration runs, the allocation's
objective); `layers.py`, `quantize.py` and `planner.py` say *how*. Bit-widths: `bits.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .bits import ACT_BITS, KINDS, Bits, Kind, check_bits, parse_bits
from .errors import ConfigError
from .inventory import GROUPS, Group, strip_prefix
from .profile import METRICS, Metric
from .serialization import FrozenMap, dumps, from_jsonable

Lock = int | Literal["fp"]


class JsonConfig:
    def to_json(self) -> str:
        return dumps(self)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{cls.__name__}: not valid JSON ({e})") from None
        return from_jsonable(cls, data)


@dataclass(frozen=True)
class WeightQuantConfig(JsonConfig):
    """Per-output-channel weight quantization.

    `range_method="mse"` searches `mse_grid` clipping ratios in [`mse_min_ratio`, 1] per channel
    and keeps the one with the least squared error; "minmax" uses the full range.
    """

    symmetric: bool = True
    range_method: Literal["minmax", "mse"] = "minmax"
    mse_grid: int = 20
    mse_min_ratio: float = 0.5

    def __post_init__(self):
        if self.range_method not in ("minmax", "mse"):
            raise ConfigError(f"range_method must be 'minmax' or 'mse', got {self.range_method!r}")
        if not (0.0 < self.mse_min_ratio <= 1.0) or self.mse_grid < 1:
            raise ConfigError("mse_min_ratio must be in (0, 1] and mse_grid at least 1")


@dataclass(frozen=True)
class ActQuantConfig(JsonConfig):
    """Per-tensor, asymmetric, static activation quantization.

    The observer records each calibration call's range (min/max, or the `percentile` and its
    mirror) and averages them: equally when `momentum` is None, else as an exponential moving
    average `r = momentum * r + (1 - momentum) * r_call`.
    """

    observer: Literal["minmax", "percentile"] = "minmax"
    momentum: float | None = None
    percentile: float = 99.99

    def __post_init__(self):
        if self.observer not in ("minmax", "percentile"):
            raise ConfigError(f"observer must be 'minmax' or 'percentile', got {self.observer!r}")
        if self.momentum is not None and not (0.0 <= self.momentum < 1.0):
            raise ConfigError(f"momentum must be None or in [0, 1), got {self.momentum}")
        if not (50.0 < self.percentile <= 100.0):
            raise ConfigError(f"percentile must be in (50, 100], got {self.percentile}")


@dataclass(frozen=True)
class QuantConfig(JsonConfig):
    """How every layer is quantized; which bit-width each layer gets is an `Allocation`.

    `bos_aware`: in cross-attention `to_k`/`to_v`, keep the first (BOS) token of the text
    embedding in floating point and out of activation calibration (MixDQ, section 4.1).
    `self_attention_bits`: also put every self-attention's query and key (the outputs of
    `attn1.to_q` / `attn1.to_k`) on a symmetric calibrated grid of this many bits, as NNCF's PTQ
    does; it lets OpenVINO run self-attention on int8 kernels (`mixdq.attention`). None (MixDQ's
    default): the attention products stay floating point.
    """

    weight: WeightQuantConfig = field(default_factory=WeightQuantConfig)
    act: ActQuantConfig = field(default_factory=ActQuantConfig)
    bos_aware: bool = True
    self_attention_bits: int | None = None

    def __post_init__(self):
        bits = self.self_attention_bits
        if bits is not None and (isinstance(bits, bool) or bits not in ACT_BITS):
            raise ConfigError(f"self_attention_bits must be one of {ACT_BITS} or None (float), got {bits!r}")


DEFAULT_CALIBRATION_PROMPTS: tuple[str, ...] = (
    "a photograph of an astronaut riding a horse",
    "a red double-decker bus driving down a city street",
    "a bowl of fruit on a wooden kitchen table",
    "a cat sleeping on a sunny windowsill",
    "a lighthouse on a rocky coast at sunset",
    "two people skiing down a snowy mountain",
    "a plate of pasta with tomato sauce and basil",
    "an old steam train crossing a stone bridge",
)


@dataclass(frozen=True)
class CalibrationConfig(JsonConfig):
    """The pipeline runs that record activation ranges: every timestep of every prompt."""

    prompts: tuple[str, ...] = DEFAULT_CALIBRATION_PROMPTS
    num_inference_steps: int = 1
    guidance_scale: float = 0.0
    seed: int = 0
    batch_size: int = 8
    height: int | None = None
    width: int | None = None

    def __post_init__(self):
        if not self.prompts:
            raise ConfigError("calibration needs at least one prompt")
        if self.num_inference_steps < 1 or self.batch_size < 1:
            raise ConfigError("num_inference_steps and batch_size must be at least 1")


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
