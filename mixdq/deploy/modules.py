"""Really low-bit Linear and Conv2d layers: what a quantized layer becomes when deployed.

Weights are stored as integer codes with one fp32 scale (and zero-point) per output channel:
* W8A8 with symmetric weights runs on PyTorch's own int8 CPU kernels (oneDNN, the x86 quantized
  engine): the input is quantized with the calibrated per-tensor scale, the int8 weight is held
  once, pre-packed for the kernel, and the output comes back in fp32 (no output requantization,
  so the result is the simulated layer's up to float summation order);
* 2-6-bit weights (and 8-bit ones without 8-bit activations) are packed several per byte and
  dequantized on the fly; quantized activations are then simulated in float on the way in;
* floating-point weights stay as they are.
BOS-aware `attn2.to_k`/`to_v` keep the first token in floating point: its projection is the same
for every prompt, so it is computed once at conversion and stored (`bos_output`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..bits import format_bits
from ..bos import has_bos, split_bos
from ..quantizers import QParams, fake_quantize, quantize
from .packing import PACKED_BITS, unpack

# The oneDNN ops below return fp32 straight from the int32 accumulator: no output requantization
# (output scale 1, zero-point 0) and no fused post-op.
_FLOAT_OUTPUT = dict(output_scale=1.0, output_zero_point=0, output_dtype=torch.float32)


def int8_kernels_available() -> bool:
    return hasattr(torch.ops.onednn, "qlinear_prepack") and torch.backends.mkldnn.is_available()


@dataclass(frozen=True)
class LayerSpec:
    """What a deployed layer is, apart from its tensors: one entry of the manifest's `layers`."""

    layer: str
    kind: str  # "Linear" or "Conv2d"
    weight_bits: int | None
    act_bits: int | None
    weight_shape: tuple[int, ...]
    bos: bool = False
    kernel: str | None = None  # "int8": oneDNN's kernels; None: dequantize on the fly
    # the calibrated activation grid; None when activations stay floating point
    act_scale: float | None = None
    act_zero_point: int | None = None
    act_qmin: int | None = None
    act_qmax: int | None = None
    # Conv2d only
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None
    groups: int | None = None

    def act_qparams(self) -> QParams | None:
        if self.act_bits is None:
            return None
        return QParams(torch.tensor(self.act_scale), torch.tensor(float(self.act_zero_point)),
                       self.act_qmin, self.act_qmax)

    def conv_kwargs(self) -> dict[str, Any]:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry (format version 1): keys that do not apply are left out, not null."""
        d: dict[str, Any] = dict(layer=self.layer, kind=self.kind, weight_bits=self.weight_bits,
                                 act_bits=self.act_bits, weight_shape=list(self.weight_shape), bos=self.bos)
        if self.kind == "Conv2d":
            d.update(stride=list(self.stride), padding=list(self.padding), dilation=list(self.dilation),
                     groups=self.groups)
        if self.act_bits is not None:
            d.update(act_scale=self.act_scale, act_zero_point=self.act_zero_point, act_qmin=self.act_qmin,
                     act_qmax=self.act_qmax)
        if self.kernel is not None:
            d["kernel"] = self.kernel
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerSpec:
        return cls(
            layer=d["layer"], kind=d["kind"], weight_bits=d["weight_bits"], act_bits=d["act_bits"],
            weight_shape=tuple(d["weight_shape"]), bos=d["bos"], kernel=d.get("kernel"),
            act_scale=d.get("act_scale"), act_zero_point=d.get("act_zero_point"),
            act_qmin=d.get("act_qmin"), act_qmax=d.get("act_qmax"),
            stride=_tuple(d.get("stride")), padding=_tuple(d.get("padding")),
            dilation=_tuple(d.get("dilation")), groups=d.get("groups"),
        )


def _tuple(v: list[int] | None) -> tuple[int, ...] | None:
    return None if v is None else tuple(v)


class DeployedLayer(nn.Module, ABC):
    """Shared storage and forward logic; `DeployedLinear` / `DeployedConv2d` add the op."""

    def __init__(self, spec: LayerSpec, tensors: dict[str, torch.Tensor]):
        super().__init__()
        self.spec = spec
        self.register_buffer("bias", tensors.get("bias"))
        self.register_buffer("bos_output", tensors.get("bos_output"))
        self.register_buffer("weight_scale", tensors.get("weight_scale"))
        self.register_buffer("weight_zero_point", tensors.get("weight_zero_point"))
        self.register_buffer("weight", tensors.get("weight"))  # floating-point weights only
        self._act_qparams = spec.act_qparams()  # the calibrated grid, as simulated
        self._packed_int8 = None  # oneDNN's pre-packed weight: the only copy of an int8 weight
        if self.int8:
            self._packed_int8 = self._prepack(tensors["weight_codes"])
            self.register_buffer("weight_codes", None)
        else:
            self.register_buffer("weight_codes", tensors.get("weight_codes"))

    weight_bits = property(lambda self: self.spec.weight_bits)
    act_bits = property(lambda self: self.spec.act_bits)
    weight_shape = property(lambda self: self.spec.weight_shape)
    int8 = property(lambda self: self.spec.kernel == "int8")

    # --- storage ----------------------------------------------------------------------------

    def extra_storage_bytes(self) -> int:
        """Bytes held outside parameters and buffers (the pre-packed int8 weight)."""
        return 0 if self._packed_int8 is None else self._packed_int8.nbytes

    def weight_bytes(self) -> int:
        """Bytes of the weight as held: codes (or pre-packed int8, or float), scales, zero-points."""
        held = [self.weight, self.weight_codes, self.weight_scale, self.weight_zero_point]
        return sum(t.nbytes for t in held if t is not None) + self.extra_storage_bytes()

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to rebuild this layer (what goes to safetensors)."""
        out = {k: v for k, v in self._buffers.items() if v is not None}
        if self.int8:
            out["weight_codes"] = self._int8_codes()
        return out

    def dequantized_weight(self) -> torch.Tensor:
        if self.weight_bits is None:
            return self.weight
        shape = (-1,) + (1,) * (len(self.weight_shape) - 1)  # per output channel
        if self.int8:  # symmetric: no zero-point
            return self._int8_codes().float() * self.weight_scale.reshape(shape)
        numel = int(torch.Size(self.weight_shape).numel())
        if self.weight_bits in PACKED_BITS:
            codes = unpack(self.weight_codes, self.weight_bits, numel)
        else:
            codes = self.weight_codes
        codes = codes.reshape(self.weight_shape).float()
        return (codes - self.weight_zero_point.reshape(shape).float()) * self.weight_scale.reshape(shape)

    # --- forward ----------------------------------------------------------------------------

    def _fake_quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.act_bits is None else fake_quantize(x, self._act_qparams)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bos_output is not None and has_bos(x):
            _, rest = split_bos(x)
            bos = self.bos_output.to(x.dtype).expand(x.shape[0], 1, -1)
            return torch.cat([bos, self._forward(rest)], dim=1)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8:
            return self._int8_forward(x)
        return self._op(self._fake_quantize_input(x), self.dequantized_weight().to(x.dtype))

    def _onednn_kwargs(self) -> dict[str, Any]:
        """What both int8 ops take alike. Their `.default` overloads are the ones whose input scale
        and zero-point are Python numbers (`.tensor` wants tensors)."""
        s = self.spec
        return dict(x_scale=s.act_scale, x_zero_point=s.act_zero_point, qw=self._packed_int8,
                    w_scale=self.weight_scale,
                    w_zero_point=torch.zeros(self.weight_shape[0], dtype=torch.long),  # symmetric weights
                    bias=self.bias, **_FLOAT_OUTPUT)

    def extra_repr(self) -> str:
        kernel = ", int8 kernel" if self.int8 else ""
        return f"{self.spec.layer}, w={format_bits(self.weight_bits)}, a={format_bits(self.act_bits)}{kernel}"

    @abstractmethod
    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The float op (F.linear / F.conv2d) with this layer's bias and geometry."""

    @abstractmethod
    def _prepack(self, codes: torch.Tensor) -> torch.Tensor:
        """oneDNN's packed form of the int8 `codes`."""

    @abstractmethod
    def _int8_codes(self) -> torch.Tensor:
        """The int8 codes, unpacked from oneDNN's form, in the float weight's layout."""

    @abstractmethod
    def _int8_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass on oneDNN's int8 kernel."""


class DeployedLinear(DeployedLayer):
    # what pipelines read off nn.Linear (SDXL checks add_embedding.linear_1.in_features)
    in_features = property(lambda self: self.weight_shape[1])
    out_features = property(lambda self: self.weight_shape[0])

    def _op(self, x, weight):
        return F.linear(x, weight, self.bias)

    def _prepack(self, codes):
        return torch.ops.onednn.qlinear_prepack.default(weight=codes, x_shape=None)

    def _int8_codes(self):
        return self._packed_int8.to_dense().t().contiguous()

    def _int8_forward(self, x):
        lead = x.shape[:-1]
        qx = quantize(x.reshape(-1, x.shape[-1]), self._act_qparams).to(torch.uint8)
        out = torch.ops.onednn.qlinear_pointwise.default(
            qx=qx, **self._onednn_kwargs(), post_op_name="none", post_op_args=[], post_op_algorithm="")
        return out.reshape(*lead, -1).to(x.dtype)


class DeployedConv2d(DeployedLayer):
    in_channels = property(lambda self: self.weight_shape[1] * self.spec.groups)
    out_channels = property(lambda self: self.weight_shape[0])
    kernel_size = property(lambda self: tuple(self.weight_shape[2:]))
    stride = property(lambda self: self.spec.stride)
    padding = property(lambda self: self.spec.padding)
    dilation = property(lambda self: self.spec.dilation)
    groups = property(lambda self: self.spec.groups)

    def _op(self, x, weight):
        return F.conv2d(x, weight, self.bias, **self.spec.conv_kwargs())

    def _prepack(self, codes):
        s = self.spec
        return torch.ops.onednn.qconv_prepack.default(
            weight=codes, w_scales=self.weight_scale, x_scale=s.act_scale, x_zp=s.act_zero_point,
            **s.conv_kwargs(), x_shape=None)

    def _int8_codes(self):
        return self._packed_int8.to_dense()

    def _int8_forward(self, x):
        qx = quantize(x, self._act_qparams).to(torch.uint8)
        out = torch.ops.onednn.qconv2d_pointwise.default(
            qx=qx, **self._onednn_kwargs(), **self.spec.conv_kwargs(), attr="none", scalars=[], algorithm="")
        return out.contiguous().to(x.dtype)


DEPLOYED_CLASSES = {"Linear": DeployedLinear, "Conv2d": DeployedConv2d}


__all__ = [
    "DEPLOYED_CLASSES", "DeployedConv2d", "DeployedLayer", "DeployedLinear", "LayerSpec", "int8_kernels_available",
]
