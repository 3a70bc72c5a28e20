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

import torch
import torch.nn.functional as F
from torch import nn

from ..quantizers import QParams, fake_quantize, quantize
from .packing import PACKED_BITS, unpack


def int8_kernels_available() -> bool:
    return hasattr(torch.ops.onednn, "qlinear_prepack") and torch.backends.mkldnn.is_available()


class DeployedLayer(nn.Module):
    """Shared storage and forward logic; `DeployedLinear` / `DeployedConv2d` add the op."""

    def __init__(self, spec: dict, tensors: dict[str, torch.Tensor]):
        super().__init__()
        self.spec = dict(spec)  # JSON-able: goes to the manifest
        self.weight_bits: int | None = spec["weight_bits"]
        self.act_bits: int | None = spec["act_bits"]
        self.weight_shape = tuple(spec["weight_shape"])
        self.register_buffer("bias", tensors.get("bias"))
        self.register_buffer("bos_output", tensors.get("bos_output"))
        self.register_buffer("weight_scale", tensors.get("weight_scale"))
        self.register_buffer("weight_zero_point", tensors.get("weight_zero_point"))
        self.register_buffer("weight", tensors.get("weight"))  # floating-point weights only
        self._act_qparams = None if self.act_bits is None else QParams(  # the calibrated grid, as simulated
            torch.tensor(spec["act_scale"]), torch.tensor(float(spec["act_zero_point"])), spec["act_qmin"], spec["act_qmax"])
        self.int8 = spec.get("kernel") == "int8"
        self._packed_int8 = None  # oneDNN's pre-packed weight: the only copy of an int8 weight
        if self.int8:
            self._packed_int8 = self._prepack(tensors["weight_codes"])
            self.register_buffer("weight_codes", None)
        else:
            self.register_buffer("weight_codes", tensors.get("weight_codes"))

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
        if self.bos_output is not None and x.dim() == 3 and x.shape[1] > 1:
            bos = self.bos_output.to(x.dtype).expand(x.shape[0], 1, -1)
            return torch.cat([bos, self._forward(x[:, 1:])], dim=1)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8:
            return self._int8_forward(x)
        return self._op(self._fake_quantize_input(x), self.dequantized_weight().to(x.dtype))

    def extra_repr(self) -> str:
        bits = lambda b: "fp" if b is None else str(b)  # noqa: E731
        kernel = ", int8 kernel" if self.int8 else ""
        return f"{self.spec['layer']}, w={bits(self.weight_bits)}, a={bits(self.act_bits)}{kernel}"

    # op-specific
    def _op(self, x, weight):
        raise NotImplementedError

    def _prepack(self, codes):
        raise NotImplementedError

    def _int8_codes(self):
        raise NotImplementedError

    def _int8_forward(self, x):
        raise NotImplementedError


def _zero_points(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.long)


class DeployedLinear(DeployedLayer):
    # what pipelines read off nn.Linear (SDXL checks add_embedding.linear_1.in_features)
    in_features = property(lambda self: self.weight_shape[1])
    out_features = property(lambda self: self.weight_shape[0])

    def _op(self, x, weight):
        return F.linear(x, weight, self.bias)

    def _prepack(self, codes):
        return torch.ops.onednn.qlinear_prepack(codes, None)

    def _int8_codes(self):
        return self._packed_int8.to_dense().t().contiguous()

    def _int8_forward(self, x):
        s = self.spec
        lead = x.shape[:-1]
        qx = quantize(x.reshape(-1, x.shape[-1]), self._act_qparams).to(torch.uint8)
        out = torch.ops.onednn.qlinear_pointwise(
            qx, s["act_scale"], s["act_zero_point"], self._packed_int8, self.weight_scale,
            _zero_points(self.weight_shape[0]), self.bias, 1.0, 0, torch.float32, "none", [], "",
        )
        return out.reshape(*lead, -1).to(x.dtype)


class DeployedConv2d(DeployedLayer):
    in_channels = property(lambda self: self.weight_shape[1] * self.spec["groups"])
    out_channels = property(lambda self: self.weight_shape[0])
    kernel_size = property(lambda self: tuple(self.weight_shape[2:]))
    stride = property(lambda self: tuple(self.spec["stride"]))
    padding = property(lambda self: tuple(self.spec["padding"]))
    dilation = property(lambda self: tuple(self.spec["dilation"]))
    groups = property(lambda self: self.spec["groups"])

    def _conv(self) -> dict:
        return {k: self.spec[k] for k in ("stride", "padding", "dilation", "groups")}

    def _op(self, x, weight):
        return F.conv2d(x, weight, self.bias, **self._conv())

    def _prepack(self, codes):
        c = self._conv()
        return torch.ops.onednn.qconv_prepack(
            codes, self.weight_scale, self.spec["act_scale"], self.spec["act_zero_point"],
            c["stride"], c["padding"], c["dilation"], c["groups"], None,
        )

    def _int8_codes(self):
        return self._packed_int8.to_dense()

    def _int8_forward(self, x):
        s, c = self.spec, self._conv()
        qx = quantize(x, self._act_qparams).to(torch.uint8)
        out = torch.ops.onednn.qconv2d_pointwise(
            qx, s["act_scale"], s["act_zero_point"], self._packed_int8, self.weight_scale,
            _zero_points(self.weight_shape[0]), self.bias, c["stride"], c["padding"], c["dilation"],
            c["groups"], 1.0, 0, torch.float32, "none", [], "",
        )
        return out.contiguous().to(x.dtype)


DEPLOYED_CLASSES = {"Linear": DeployedLinear, "Conv2d": DeployedConv2d}


__all__ = ["DEPLOYED_CLASSES", "DeployedConv2d", "DeployedLayer", "DeployedLinear", "int8_kernels_available"]
