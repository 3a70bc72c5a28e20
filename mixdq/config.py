"""What to quantize and how, as frozen dataclasses that serialize to JSON.

The config says *what* (bit-width choices, range methods, BOS handling); `layers.py` and
`quantize.py` say *how*. Bit-widths are `int`, and `None` means floating point.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigError, UnsupportedBitsError
from .serialization import dumps, from_jsonable

WEIGHT_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
ACT_BITS: tuple[int, ...] = (4, 6, 8)

Bits = int | None  # None: keep floating point


def check_bits(what: Literal["weight", "activation"], bits: object, layer: str | None = None) -> Bits:
    """Return `bits` as an int or None, or raise an error that lists the valid choices."""
    choices = WEIGHT_BITS if what == "weight" else ACT_BITS
    if bits is None or bits == "fp":
        return None
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in choices:
        raise UnsupportedBitsError(what, bits, choices, layer)
    return bits


class _JsonConfig:
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
class WeightQuantConfig(_JsonConfig):
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
class ActQuantConfig(_JsonConfig):
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
class QuantConfig(_JsonConfig):
    """How every layer is quantized; which bit-width each layer gets is an `Allocation`.

    `bos_aware`: in cross-attention `to_k`/`to_v`, keep the first (BOS) token of the text
    embedding in floating point and out of activation calibration (MixDQ, section 4.1).
    """

    weight: WeightQuantConfig = field(default_factory=WeightQuantConfig)
    act: ActQuantConfig = field(default_factory=ActQuantConfig)
    bos_aware: bool = True


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
class CalibrationConfig(_JsonConfig):
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
