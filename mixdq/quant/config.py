"""How every layer is quantized, as frozen dataclasses that serialize to JSON.

The config says *what* (range methods, BOS handling); `layers.py` and `quantize.py` say *how*.
Which bit-width each layer gets is an `Allocation`; bit-widths themselves: `mixdq.core.bits`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mixdq.core.bits import ACT_BITS
from mixdq.core.errors import ConfigError
from mixdq.core.serialization import JsonConfig


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
    does; it lets OpenVINO run self-attention on int8 kernels (`mixdq.quant.attention`). None (MixDQ's
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
