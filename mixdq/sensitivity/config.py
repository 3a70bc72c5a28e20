"""What a sensitivity sweep measures, as a frozen dataclass that serializes to JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mixdq.core.bits import ACT_BITS, KINDS, WEIGHT_BITS, Kind, check_bits
from mixdq.core.errors import ConfigError
from mixdq.core.serialization import JsonConfig
from mixdq.models.generation import CalibrationConfig
from mixdq.models.inventory import MIXDQ_RULE
from mixdq.quant.config import QuantConfig


@dataclass(frozen=True)
class SweepConfig(JsonConfig):
    """What a sensitivity sweep measures. Calibration uses the same prompts, steps and seeds."""

    prompts: tuple[str, ...]
    first_seed: int = 0  # prompt i is sampled with seed first_seed + i
    num_inference_steps: int = 1
    guidance_scale: float = 0.0
    height: int | None = None
    width: int | None = None
    batch_size: int = 32  # prompts per pipeline call; one probe = ceil(len(prompts)/batch_size) calls
    weight_bits: tuple[int, ...] = WEIGHT_BITS
    act_bits: tuple[int, ...] = ACT_BITS
    layers: str | None = None  # regex: only probe matching layers (all are still reported)
    quant: QuantConfig = field(default_factory=QuantConfig)
    content_pattern: str = MIXDQ_RULE.content_pattern

    def __post_init__(self):
        if not self.prompts:
            raise ConfigError("a sweep needs at least one prompt")
        for kind, bits in (("weight", self.weight_bits), ("activation", self.act_bits)):
            for b in bits:
                if check_bits(kind, b) is None:
                    raise ConfigError(f"{kind} bits must be integers; floating point is the reference")
        if self.layers is not None:
            try:
                re.compile(self.layers)
            except re.error as e:
                raise ConfigError(f"--layers is not a valid regular expression: {e}") from None

    @property
    def calibration(self) -> CalibrationConfig:
        return CalibrationConfig(
            prompts=self.prompts, num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale, seed=self.first_seed, batch_size=self.batch_size,
            height=self.height, width=self.width,
        )

    def generation_kwargs(self) -> dict:
        kw = dict(num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale)
        if self.height is not None:
            kw.update(height=self.height, width=self.width or self.height)
        return kw

    def probes(self, names: list[str]) -> list[tuple[Kind, str, int]]:
        """(kind, layer, bits) in a fixed order: layer-major, so each layer's cached quantized
        weights can be dropped once its probes are done."""
        chosen = [n for n in names if self.layers is None or re.search(self.layers, n)]
        return [
            (kind, name, bits)
            for kind in KINDS
            for name in chosen
            for bits in (self.weight_bits if kind == "weight" else self.act_bits)
        ]
