"""Memory of an allocation, by arithmetic on the inventory ("simulated": what packed storage
would take). Measured bytes of a deployed model come with the deploy module.

Units: bytes, and MB = 10**6 bytes. Weight bytes cover Linear/Conv2d weights only (biases and
norms, ~0.06 % of SDXL's parameters, stay in floating point and are left out on both sides).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .allocation import Allocation
from .config import Bits, WeightQuantConfig
from .inventory import Inventory, LayerInfo

SCALE_BYTES = 2  # one fp16 scale per output channel
ZERO_POINT_BYTES = 1  # one 8-bit zero-point per output channel, asymmetric only


def layer_weight_bytes(layer: LayerInfo, bits: Bits, symmetric: bool = True, fp_bits: int = 16) -> float:
    """Packed weight bytes of `layer` at `bits` (None: floating point at `fp_bits`)."""
    if bits is None:
        return layer.params * fp_bits / 8
    per_channel = SCALE_BYTES + (0 if symmetric else ZERO_POINT_BYTES)
    return layer.params * bits / 8 + layer.out_channels * per_channel


def layer_act_bytes(layer: LayerInfo, bits: Bits, fp_bits: int = 16) -> float:
    return layer.act_elements * (fp_bits if bits is None else bits) / 8


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
    fp_bits: int = 16,
) -> MemoryReport:
    allocation.check_names(inventory.names)
    params = inventory.total_params
    acts = sum(layer.act_elements for layer in inventory)
    wbits = {layer.name: allocation.weight_bits(layer.name) for layer in inventory}
    abits = {layer.name: allocation.act_bits(layer.name) for layer in inventory}
    nominal = lambda b: fp_bits if b is None else b  # noqa: E731
    return MemoryReport(
        layers=len(inventory),
        weight_params=params,
        weight_bytes=sum(
            layer_weight_bytes(layer, wbits[layer.name], weight_config.symmetric, fp_bits)
            for layer in inventory
        ),
        weight_bytes_fp16=params * 2.0,
        weight_bytes_fp32=params * 4.0,
        avg_weight_bits=sum(nominal(wbits[layer.name]) * layer.params for layer in inventory) / params,
        act_elements=acts,
        act_bytes=sum(layer_act_bytes(layer, abits[layer.name], fp_bits) for layer in inventory),
        act_bytes_fp16=acts * 2.0,
        avg_act_bits=sum(nominal(abits[layer.name]) * layer.act_elements for layer in inventory)
        / max(acts, 1),
    )
