"""Really low-bit Linear and Conv2d layers: what a quantized layer becomes when deployed.

Weights are stored as integer codes with one fp32 scale per output channel: 8-bit symmetric codes
as int8, every other grid as unsigned codes (2-6 bits packed several per byte) with a uint8
zero-point. A layer computes with one of three kernels, all equal to the simulated layer up to
float summation order:
* `int8`: PyTorch's int8 CPU kernels (oneDNN): the input is quantized to uint8 with the
  calibrated per-tensor grid and the weight, as `code - zero_point` in int8, is held pre-packed
  for the kernel; the output comes back in fp32 from the int32 sums (no requantization).
  `code - zero_point` fits int8 for every grid but asymmetric 8 bits, so W2..W8 with A2..A8 all
  run here. For a 2-6-bit layer the pre-packed int8 weight is bigger than its packed codes;
* `int8-unpack`: the same kernel, with 2-6-bit symmetric codes kept in oneDNN's blocked order at
  their own bits and unpacked into a shared pre-packed scratch weight on every call (`blocked`);
* `int8-repack`: the same kernel, the weight unpacked to int8 and pre-packed on every call (for
  grids `int8-unpack` cannot hold: asymmetric ones);
* `dequant`: the weight dequantized to float on every call and the float op run on the
  (fake-)quantized input: works for everything, also weight-only quantization;
* `int-mm`: `torch._int_mm`, int8 x int8 summed in int32 (cuBLASLt on int8 tensor cores on a
  GPU, a CPU implementation too): the input's uint8 codes shifted to int8, the weight as
  `code - zero_point` (8-bit codes read in place, lower widths unpacked on every call), the
  input's zero-point taken out of the int32 sums exactly (times each output channel's weight
  sum), then one multiply by both scales. Linear layers and 1x1 convolutions (one GEMM over
  every pixel); traceable, so under torch.compile inductor fuses the quantization and the
  epilogue around it.
Floating-point layers keep their weight as it is. Which kernel a layer uses is chosen at
deployment (`kernels.choose_kernels`) and recorded in its `LayerSpec`. Under torch.compile the
int8 kernels run as one custom op, `int8_layer` (`compiling`).
BOS-aware `attn2.to_k`/`to_v` keep the first token in floating point: its projection is the same
for every prompt, so it is computed once at conversion and stored (`bos_output`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mixdq.core.bits import format_bits
from mixdq.deploy.blocked import SCRATCH, BlockedChunk, BlockedWeight, LayoutError, to_blocked
from mixdq.deploy.manifest import INT8_KERNELS, KERNELS, Kernel, LayerSpec
from mixdq.deploy.ops import int8_layer, register
from mixdq.deploy.packing import PACKED_BITS, pack, unpack
from mixdq.quant.affine import fake_quantize
from mixdq.quant.bos import has_bos, split_bos
from mixdq.quant.layers import FixedLayer

# The oneDNN ops below return fp32 straight from the int32 accumulator: no output requantization
# (output scale 1, zero-point 0) and no fused post-op.
_FLOAT_OUTPUT = dict(output_scale=1.0, output_zero_point=0, output_dtype=torch.float32)
_ALL = slice(None)  # every output channel


def int8_kernels_available() -> bool:
    return hasattr(torch.ops.onednn, "qlinear_prepack") and torch.backends.mkldnn.is_available()


class DeployedLayer(nn.Module, FixedLayer, ABC):
    """Shared storage and forward logic; `DeployedLinear` / `DeployedConv2d` add the ops."""

    def __init__(self, spec: LayerSpec, tensors: dict[str, torch.Tensor]):
        super().__init__()
        self.spec = spec
        self.register_buffer("bias", tensors.get("bias"))
        self.register_buffer("bos_output", tensors.get("bos_output"))
        self.register_buffer("weight_scale", tensors.get("weight_scale"))
        self.register_buffer("weight_zero_point", tensors.get("weight_zero_point"))  # None: signed int8 codes
        self.register_buffer("weight", tensors.get("weight"))  # floating-point weights only
        self.register_buffer("weight_codes", tensors.get("weight_codes"))
        self._act_qparams = spec.act_qparams()  # the calibrated grid, as simulated
        self._output_qparams = spec.output_qparams()
        self._packed_int8 = None  # oneDNN's pre-packed weight (kernel "int8"): then the only copy
        self._blocked: BlockedWeight | None = None  # codes in blocked order (kernel "int8-unpack"): ditto
        if spec.act_bits is not None:  # the same grid shifted to uint8, what the int8 kernels take
            self._x_zero_point = spec.act_zero_point - spec.act_qmin
            self._x_qmax = spec.act_qmax - spec.act_qmin
        self._w_zero_point = torch.zeros(self.weight_shape[0], dtype=torch.long)  # code - zp is centred
        self._weight_sums: torch.Tensor | None = None  # int-mm: sum over inputs of code - zp, per channel
        self._hold(spec.kernel)
        self._register()

    def _register(self) -> None:
        self._handle = register(self)  # how the compiled graph's custom op finds this layer

    def __setstate__(self, state):
        super().__setstate__(state)
        self._register()  # a copy is a layer of its own: compiled code must find it, not its original

    weight_bits = property(lambda self: self.spec.weight_bits)
    act_bits = property(lambda self: self.spec.act_bits)
    weight_shape = property(lambda self: self.spec.weight_shape)
    kernel = property(lambda self: self.spec.kernel)
    numel = property(lambda self: int(torch.Size(self.spec.weight_shape).numel()))  # weights
    int8 = property(lambda self: self.spec.kernel in INT8_KERNELS)

    # --- storage ----------------------------------------------------------------------------

    def _form(self) -> str:
        return "prepacked" if self._packed_int8 is not None else "blocked" if self._blocked is not None else "codes"

    def _hold(self, kernel: str | None) -> None:
        """Keep the weight in the one form `kernel` reads: pre-packed int8, codes in blocked
        order, or the stored codes. Nothing changes if the new form cannot be built."""
        form = {Kernel.INT8: "prepacked", Kernel.INT8_UNPACK: "blocked"}.get(kernel, "codes")
        if form == self._form():
            return
        centred = self.centred_weight()
        prepacked = blocked = codes = None
        if form == "prepacked":
            prepacked = self._prepack(centred)
        elif form == "blocked":
            blocked = to_blocked(centred, self.weight_bits, self._prepack, self._layout_key())
            self._check_blocked(blocked, centred)
        else:
            codes = self._stored_codes(centred)
        self._packed_int8, self._blocked, self.weight_codes = prepacked, blocked, codes

    def _apply(self, fn, recurse=True):
        """`.to(device)` and the like. oneDNN's packed weights cannot leave the CPU, so a layer
        moved elsewhere (`pipe.to("cuda")`) first takes back its stored codes and computes with
        `dequant` there, as the simulation does."""
        if self.int8 and (target := fn(self.weight_scale).device).type != "cpu":
            self.use_kernel(Kernel.DEQUANT, reason=f"{self.kernel} chosen on the CPU, but oneDNN's int8 kernels run "
                            f"on the CPU only and this layer moved to {target}", input_shape=self.spec.input_shape)
        return super()._apply(fn, recurse)

    def _layout_key(self) -> tuple:
        """What oneDNN's packing depends on besides the weight's shape."""
        return (type(self).__name__, *self.spec.conv_kwargs().values())

    def _scratch(self, chunk: BlockedChunk) -> torch.Tensor:
        """The shared pre-packed scratch weight, filled with `chunk` (hold SCRATCH.lock)."""
        shape = chunk.key[-2]
        packed, view = SCRATCH.get(chunk.key, lambda: self._prepack(torch.zeros(shape, dtype=torch.int8), chunk.rows))
        chunk.fill(view)
        return packed

    def _blocked_op(self, qx: torch.Tensor, blocked: BlockedWeight) -> torch.Tensor:
        """The int8 op chunk by chunk of output channels, each on the scratch weight of its shape."""
        with SCRATCH.lock:
            outs = [self._int8_op(qx, self._scratch(c), c.rows) for c in blocked.chunks]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1 if len(self.weight_shape) == 4 else -1)

    def _check_blocked(self, blocked: BlockedWeight, centred: torch.Tensor) -> None:
        """The scratch filled with `blocked` must compute what the real packing does, exactly."""
        shape = [2, self.weight_shape[1]]
        if len(self.weight_shape) == 4:
            s = self.spec
            shape = [1, self.weight_shape[1] * s.groups] + [
                (k - 1) * d + 1 + st for k, d, st in zip(self.weight_shape[2:], s.dilation, s.stride, strict=True)]
        qx = torch.randint(0, self._x_qmax + 1, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        expected = self._int8_op(qx, self._prepack(centred))
        if not torch.equal(self._blocked_op(qx, blocked), expected):
            raise LayoutError("the blocked codes do not reproduce oneDNN's output here")

    def use_kernel(self, kernel: str, reason: str | None = None, timings: dict[str, float] | None = None,
                   input_shape: tuple[int, ...] | None = None) -> None:
        """Compute with `kernel` from now on (see `unsupported` for which ones this layer can use)."""
        why = self.unsupported(kernel)
        if why:
            raise ValueError(f"{self.spec.layer} cannot use the {kernel} kernel: {why}")
        self._hold(kernel)
        self.spec = replace(self.spec, kernel=kernel, kernel_reason=reason, kernel_ms=timings,
                            input_shape=input_shape)

    def unsupported(self, kernel: str) -> str | None:
        """Why this layer cannot use `kernel`, or None if it can."""
        if kernel not in KERNELS:
            return f"unknown kernel; expected one of {', '.join(KERNELS)}"
        if self.weight_bits is None:
            return "its weights stay floating point"
        if kernel == Kernel.DEQUANT:
            return None
        if self.act_bits is None:
            return "its activations stay floating point, and int8 kernels take integer inputs"
        if self.weight_zero_point is not None and self.weight_bits == 8:
            return "asymmetric 8-bit weights (code - zero-point) do not fit int8"
        if kernel == Kernel.INT_MM:
            return self._int_mm_unsupported()
        if self.weight_scale.device.type != "cpu":
            return f"oneDNN's int8 kernels run on the CPU, and this layer is on {self.weight_scale.device}"
        if not int8_kernels_available():
            return "this PyTorch build has no oneDNN int8 kernels"
        if kernel == Kernel.INT8_UNPACK:
            if self.weight_bits not in PACKED_BITS:
                return "only 2-6-bit codes are unpacked (8-bit ones are held pre-packed at their own size)"
            if (self.weight_zero_point != 2 ** (self.weight_bits - 1)).any():
                return "asymmetric weights: code - zero-point takes one bit more than the code"
        return None

    def _int_mm_unsupported(self) -> str | None:
        if not hasattr(torch, "_int_mm"):
            return "this PyTorch build has no torch._int_mm"
        k, n = self._gemm_shape()
        if self.weight_scale.device.type == "cuda" and (k % 8 or n % 8):
            return f"cuBLASLt's int8 GEMM wants inputs and outputs in multiples of 8, and this layer has {k} and {n}"
        return None

    def scratch_keys(self) -> set[tuple]:
        """The shared scratch weights this layer's `int8-unpack` kernel fills (none otherwise)."""
        return set() if self._blocked is None else self._blocked.keys

    def extra_storage_bytes(self) -> int:
        """Bytes held outside parameters and buffers (the pre-packed int8 weight)."""
        if self._blocked is not None:
            return self._blocked.nbytes
        return 0 if self._packed_int8 is None else self._packed_int8.nbytes

    def weight_bytes(self) -> int:
        """Bytes of the weight as held: codes (or pre-packed int8, or float), scales, zero-points."""
        held = [self.weight, self.weight_codes, self.weight_scale, self.weight_zero_point]
        return sum(t.nbytes for t in held if t is not None) + self.extra_storage_bytes()

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to rebuild this layer (what goes to safetensors): always the stored
        codes, whichever kernel runs, so a checkpoint is as small as its bits."""
        out = {k: v for k, v in self._buffers.items() if v is not None}
        if self._form() != "codes":
            out["weight_codes"] = self._stored_codes(self.centred_weight())
        return out

    def _per_channel(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape((-1,) + (1,) * (len(self.weight_shape) - 1))

    def centred_weight(self) -> torch.Tensor:
        """`code - zero_point` per weight, in the weight's shape: int8 where that fits (all grids
        but asymmetric 8 bits), else int16. Times the scale, it is the simulated weight exactly."""
        if self._packed_int8 is not None:
            return self._dense(self._packed_int8)
        if self._blocked is not None:
            with SCRATCH.lock:
                return torch.cat([self._dense(self._scratch(c)) for c in self._blocked.chunks])
        codes = self.weight_codes
        if self.weight_zero_point is None:  # signed int8 codes, zero-point 0
            return codes.reshape(self.weight_shape)
        numel = self.numel
        if self.weight_bits in PACKED_BITS:
            codes = unpack(codes, self.weight_bits, numel)
        codes = codes.reshape(self.weight_shape)
        zp = self._per_channel(self.weight_zero_point)
        if self.weight_bits <= 7:  # unsigned codes below 128 read as int8 unchanged
            return codes.view(torch.int8) - zp.view(torch.int8)
        return codes.to(torch.int16) - zp.to(torch.int16)

    def _stored_codes(self, centred: torch.Tensor) -> torch.Tensor:
        """The inverse of `centred_weight`: the codes as stored."""
        if self.weight_zero_point is None:
            return centred.to(torch.int8)
        codes = (centred.to(torch.int16) + self._per_channel(self.weight_zero_point)).to(torch.uint8)
        return pack(codes, self.weight_bits) if self.weight_bits in PACKED_BITS else codes.reshape(-1)

    def dequantized_weight(self) -> torch.Tensor:
        if self.weight_bits is None:
            return self.weight
        return self.centred_weight().float().mul_(self._per_channel(self.weight_scale))

    # --- forward ----------------------------------------------------------------------------

    def _fake_quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.act_bits is None else fake_quantize(x, self._act_qparams)

    def _quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 codes of `x` on the calibrated grid (shifted to start at 0): the simulation's
        `quantize`, in place where it can be."""
        q = torch.div(x.float(), self.spec.act_scale).round_().add_(self._x_zero_point)
        return q.clamp_(0, self._x_qmax).to(torch.uint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bos_output is not None and has_bos(x):
            _, rest = split_bos(x)
            bos = self.bos_output.to(x.dtype).expand(x.shape[0], 1, -1)
            return torch.cat([bos, self._forward(rest)], dim=1)
        y = self._forward(x)
        return y if self._output_qparams is None else fake_quantize(y, self._output_qparams)

    def _forward(self, x: torch.Tensor, opaque: bool = False) -> torch.Tensor:
        """`opaque`: call the int8 kernels as a compiled graph does, through `int8_layer`."""
        kernel = self.spec.kernel
        if kernel in (None, Kernel.DEQUANT):
            return self._op(self._fake_quantize_input(x), self.dequantized_weight().to(x.dtype))
        if kernel == Kernel.INT_MM:
            return self._int_mm_forward(x).to(x.dtype)
        qx = self._quantize_input(x)
        out = int8_layer(qx, self._handle) if opaque or torch.compiler.is_compiling() else self._int8_forward(qx)
        return out.to(x.dtype)

    def _int8_forward(self, qx: torch.Tensor) -> torch.Tensor:
        if self.spec.kernel == Kernel.INT8_UNPACK:
            return self._blocked_op(qx, self._blocked)
        packed = self._packed_int8 if self.spec.kernel == Kernel.INT8 else self._prepack(self.centred_weight())
        return self._int8_op(qx, packed)

    def _int_mm(self, rows: torch.Tensor) -> torch.Tensor:
        """(M, K) float inputs -> (M, N) fp32 outputs on `torch._int_mm`: sum (q - z) w over k is
        sum q' w - z' sum w, with q' = q - 128 and z' = z - 128 (uint8 codes shifted into int8)."""
        q = (self._quantize_input(rows).to(torch.int16) - 128).to(torch.int8)
        m = q.shape[0]
        if q.is_cuda and m <= 16:  # cuBLASLt's int8 GEMM wants more than 16 rows: zero rows, dropped after
            q = F.pad(q, (0, 0, 0, 17 - m))
        centred = self.centred_weight().reshape(self.weight_shape[0], -1)  # 8-bit codes: a view, no copy
        sums = self._weight_sums
        if sums is None or sums.device != q.device:
            sums = self._weight_sums = centred.sum(1, dtype=torch.int32)
        acc = torch._int_mm(q, centred.t())[:m] - (self._x_zero_point - 128) * sums
        out = acc.float() * (self.spec.act_scale * self.weight_scale.float())
        return out if self.bias is None else out + self.bias.float()

    def _onednn_kwargs(self, packed: torch.Tensor, rows: slice) -> dict[str, Any]:
        """What both int8 ops take alike, for output channels `rows`. Their `.default` overloads are
        the ones whose input scale and zero-point are Python numbers (`.tensor` wants tensors)."""
        return dict(x_scale=self.spec.act_scale, x_zero_point=self._x_zero_point, qw=packed,
                    w_scale=self.weight_scale[rows].float(), w_zero_point=self._w_zero_point[rows],
                    bias=None if self.bias is None else self.bias[rows].float(), **_FLOAT_OUTPUT)

    def extra_repr(self) -> str:
        kernel = f", {self.kernel} kernel" if self.kernel else ""
        return f"{self.spec.layer}, w={format_bits(self.weight_bits)}, a={format_bits(self.act_bits)}{kernel}"

    @abstractmethod
    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The float op (F.linear / F.conv2d) with this layer's bias and geometry."""

    @abstractmethod
    def _prepack(self, centred: torch.Tensor, rows: slice = _ALL) -> torch.Tensor:
        """oneDNN's packed form of the int8 `centred` weight (of output channels `rows`)."""

    @abstractmethod
    def _dense(self, packed: torch.Tensor) -> torch.Tensor:
        """The int8 weight back from oneDNN's form, in the float weight's layout (a copy)."""

    @abstractmethod
    def output_shape(self, input_shape: torch.Size) -> tuple[int, ...]:
        """The shape of this layer's output for an input of `input_shape`."""

    @abstractmethod
    def _int8_op(self, qx: torch.Tensor, packed: torch.Tensor, rows: slice = _ALL) -> torch.Tensor:
        """oneDNN's int8 op on uint8 input codes, fp32 out (output channels `rows`)."""

    @abstractmethod
    def _gemm_shape(self) -> tuple[int, int]:
        """(K, N) of this layer as one GEMM: inputs and outputs per row."""

    @abstractmethod
    def _int_mm_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The `int-mm` kernel on `x` (fp32 out): its rows through `_int_mm`."""


def _like(t: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """`t` in `x`'s dtype (the float ops want one dtype; a no-op when it already is)."""
    return None if t is None else t.to(x.dtype)


class DeployedLinear(DeployedLayer):
    # what pipelines read off nn.Linear (SDXL checks add_embedding.linear_1.in_features)
    in_features = property(lambda self: self.weight_shape[1])
    out_features = property(lambda self: self.weight_shape[0])

    def _op(self, x, weight):
        return F.linear(x, weight, _like(self.bias, x))

    def output_shape(self, input_shape):
        return (*input_shape[:-1], self.weight_shape[0])

    def _prepack(self, centred, rows=_ALL):
        return torch.ops.onednn.qlinear_prepack.default(weight=centred.to(torch.int8), x_shape=None)

    def _dense(self, packed):
        return packed.to_dense().t().contiguous()

    def _gemm_shape(self):
        return self.weight_shape[1], self.weight_shape[0]

    def _int_mm_forward(self, x):
        return self._int_mm(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)

    def _int8_op(self, qx, packed, rows=_ALL):
        lead = qx.shape[:-1]
        out = torch.ops.onednn.qlinear_pointwise.default(
            qx=qx.reshape(-1, qx.shape[-1]), **self._onednn_kwargs(packed, rows), post_op_name="none",
            post_op_args=[], post_op_algorithm="")
        return out.reshape(*lead, -1)


class DeployedConv2d(DeployedLayer):
    in_channels = property(lambda self: self.weight_shape[1] * self.spec.groups)
    out_channels = property(lambda self: self.weight_shape[0])
    kernel_size = property(lambda self: tuple(self.weight_shape[2:]))
    stride = property(lambda self: self.spec.stride)
    padding = property(lambda self: self.spec.padding)
    dilation = property(lambda self: self.spec.dilation)
    groups = property(lambda self: self.spec.groups)

    def _op(self, x, weight):
        return F.conv2d(x, weight, _like(self.bias, x), **self.spec.conv_kwargs())

    def output_shape(self, input_shape):
        s = self.spec
        hw = [(n + 2 * p - d * (k - 1) - 1) // st + 1 for n, p, d, k, st
              in zip(input_shape[2:], s.padding, s.dilation, self.weight_shape[2:], s.stride, strict=True)]
        return (input_shape[0], self.weight_shape[0], *hw)

    def _prepack(self, centred, rows=_ALL):
        return torch.ops.onednn.qconv_prepack.default(
            weight=centred.to(torch.int8), w_scales=self.weight_scale[rows], x_scale=self.spec.act_scale,
            x_zp=self._x_zero_point, **self.spec.conv_kwargs(), x_shape=None)

    def _dense(self, packed):
        return packed.to_dense()

    def _gemm_shape(self):
        return int(torch.Size(self.weight_shape[1:]).numel()), self.weight_shape[0]

    def _int_mm_unsupported(self):
        s = self.spec
        if tuple(self.weight_shape[2:]) != (1, 1) or s.groups != 1 or set(s.stride) != {1} or set(s.padding) != {0}:
            return ("only 1x1 convolutions (stride 1, no padding, one group) run as one GEMM; a 3x3 one would need "
                    "its input unfolded, 9 times its size")
        return super()._int_mm_unsupported()

    def _int_mm_forward(self, x):
        n, c, h, w = x.shape  # a 1x1 convolution is a GEMM over every pixel
        rows = self._int_mm(x.permute(0, 2, 3, 1).reshape(-1, c))
        return rows.reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()

    def _int8_op(self, qx, packed, rows=_ALL):
        out = torch.ops.onednn.qconv2d_pointwise.default(
            qx=qx, **self._onednn_kwargs(packed, rows), **self.spec.conv_kwargs(), attr="none", scalars=[],
            algorithm="")
        return out.contiguous()


DEPLOYED_CLASSES = {"Linear": DeployedLinear, "Conv2d": DeployedConv2d}


def kernel_counts(layers: dict[str, DeployedLayer]) -> dict[str, int]:
    """How many layers compute with each kernel ("float": floating-point weights), keyed by plain
    strings (JSON encoders such as Gradio's refuse `str` subclasses as keys)."""
    counts = {str(k): 0 for k in (*KERNELS, "float")}
    for layer in layers.values():
        counts[str(layer.kernel or "float")] += 1
    return counts
