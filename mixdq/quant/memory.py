"""Memory of an allocation, by arithmetic on the inventory ("simulated": what packed storage
would take). Measured bytes of a deployed model come with the deploy module.

Units: bytes, and MB = 10**6 bytes. Weight bytes cover Linear/Conv2d weights only (biases and
norms, ~0.06 % of SDXL's parameters, stay in floating point and are left out on both sides).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mixdq.core.bits import FP_BITS, Bits
from mixdq.models.inventory import Inventory
from mixdq.quant.allocation import Allocation
from mixdq.quant.config import WeightQuantConfig

SCALE_BYTES = 2  # one fp16 scale per output channel
ZERO_POINT_BYTES = 1  # one 8-bit zero-point per output channel, asymmetric only


def bits_array(bits) -> np.ndarray:
    """Bit-widths as floats, floating point (None) as NaN: the form `packed_weight_bytes` takes in bulk."""
    return np.array([np.nan if b is None else b for b in bits], float)


def packed_weight_bytes(params, out_channels, bits, symmetric: bool = True, fp_bits: int = FP_BITS):
    """Packed weight bytes: `params * bits / 8` plus a scale (and a zero-point when asymmetric)
    per output channel; a floating-point layer (bits None, or NaN in an array) takes
    `params * fp_bits / 8` and no scales. Element-wise over numpy arrays, so the planner prices
    every (layer, option) with this same formula."""
    b = np.asarray(np.nan if bits is None else bits, float)
    quantized = ~np.isnan(b)
    per_channel = SCALE_BYTES + (0 if symmetric else ZERO_POINT_BYTES)
    payload = np.asarray(params, float) * np.where(quantized, b, fp_bits) / 8
    out = payload + np.asarray(out_channels, float) * per_channel * quantized
    return float(out) if out.ndim == 0 else out


def average_bits(bits, sizes, fp_bits: int = FP_BITS) -> float:
    """Size-weighted average of per-layer bits (None: floating point, counted as `fp_bits`)."""
    sizes = np.asarray(sizes, float)
    nominal = np.nan_to_num(bits_array(bits), nan=fp_bits)
    return float((nominal * sizes).sum() / max(sizes.sum(), 1.0))


def packed_act_bytes(elements, bits: Bits, fp_bits: int = FP_BITS) -> float:
    return elements * (fp_bits if bits is None else bits) / 8


@dataclass(frozen=True)
class MemoryReport:
    layers: int
    weight_params: int
    weight_bytes: float  # packed, with scales and zero-points; FP layers at fp_bits
    weight_bytes_fp16: float
    weight_bytes_fp32: float
    avg_weight_bits: float  # parameter-weighted mean of the allocated bits (no overhead)
    act_elements: int  # per sample, per UNet call: every quantized layer's input
    act_bytes: float
    act_bytes_fp16: float
    avg_act_bits: float

    @property
    def weight_mb(self) -> float:
        return self.weight_bytes / 1e6

    @property
    def ratio_fp16(self) -> float:
        return self.weight_bytes / self.weight_bytes_fp16

    @property
    def ratio_fp32(self) -> float:
        return self.weight_bytes / self.weight_bytes_fp32

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(weight_mb=self.weight_mb, ratio_fp16=self.ratio_fp16, ratio_fp32=self.ratio_fp32)
        return d

    def summary(self) -> str:
        return (
            f"{self.layers} layers, {self.weight_params / 1e6:,.1f} M weight params\n"
            f"weights: {self.weight_bytes / 1e6:,.1f} MB packed (avg {self.avg_weight_bits:.2f} bits)"
            f" vs FP16 {self.weight_bytes_fp16 / 1e6:,.1f} MB ({self.ratio_fp16:.3f}x)"
            f" and FP32 {self.weight_bytes_fp32 / 1e6:,.1f} MB ({self.ratio_fp32:.3f}x)\n"
            f"activations (per sample, per UNet call): {self.act_bytes / 1e6:,.1f} MB"
            f" (avg {self.avg_act_bits:.2f} bits) vs FP16 {self.act_bytes_fp16 / 1e6:,.1f} MB"
        )


def memory_report(
    inventory: Inventory,
    allocation: Allocation,
    weight_config: WeightQuantConfig = WeightQuantConfig(),
    fp_bits: int = FP_BITS,
) -> MemoryReport:
    allocation.check_names(inventory.names)
    params = inventory.total_params
    acts = sum(layer.act_elements for layer in inventory)
    wbits = {layer.name: allocation.weight_bits(layer.name) for layer in inventory}
    abits = {layer.name: allocation.act_bits(layer.name) for layer in inventory}
    return MemoryReport(
        layers=len(inventory),
        weight_params=params,
        weight_bytes=sum(
            packed_weight_bytes(layer.params, layer.out_channels, wbits[layer.name], weight_config.symmetric, fp_bits)
            for layer in inventory
        ),
        weight_bytes_fp16=params * 2.0,
        weight_bytes_fp32=params * 4.0,
        avg_weight_bits=average_bits(wbits.values(), [layer.params for layer in inventory], fp_bits),
        act_elements=acts,
        act_bytes=sum(packed_act_bytes(layer.act_elements, abits[layer.name], fp_bits) for layer in inventory),
        act_bytes_fp16=acts * 2.0,
        avg_act_bits=average_bits(abits.values(), [layer.act_elements for layer in inventory], fp_bits),
    )
