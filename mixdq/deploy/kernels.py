"""Which kernel each deployed layer computes with: measured on the layer's own input shape.

The kernels of `modules.KERNELS` give the same numbers, but their speed depends on the shape: the
int8 kernels win by 2-13x on large activations, lose to a float matmul on tiny ones (a call into
oneDNN and quantizing the input cost tens of microseconds), and unpacking or re-packing the
weight every call costs more than the matmul itself where the weight is large and the activation
small (measured per shape in README "Deployment speed"). So the choice is made per layer by timing, once, at
deployment, and written to the manifest with the figures behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ..layers import QuantMixin
from .measure import latency
from .modules import KERNELS, DeployedLayer
from .packing import packed_nbytes


def record_input_shapes(layers: Mapping[str, QuantMixin], sample: Callable[[], object]) -> dict[str, tuple[int, ...]]:
    """The input shape each layer sees first while `sample()` runs (one generation or UNet call)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name):
        def record(module, args):
            shapes.setdefault(name, tuple(args[0].shape))

        return record

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in layers.items()]
    try:
        with torch.no_grad():
            sample()
    finally:
        for h in handles:
            h.remove()
    return shapes


def median_ms(fn: Callable[[], object]) -> float:
    """One kernel on one layer: at least 3 calls and 20 ms (at most 50 calls), after a warm-up."""
    return latency(fn, repeats=3, warmup=1, min_seconds=0.02, max_repeats=50) * 1e3


def time_kernels(layer: DeployedLayer, shape: tuple[int, ...], kernels: list[str]) -> dict[str, float | str]:
    """Milliseconds per call of `layer` with each of `kernels` on a random input of `shape`, and of
    the float op ("float", for reference). A kernel that fails on this shape maps to its error."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    kept = layer.kernel
    timings: dict[str, float | str] = {}
    with torch.no_grad():
        weight = layer.dequantized_weight()
        timings["float"] = median_ms(lambda: layer._op(x, weight))
        for kernel in kernels:
            try:
                layer.use_kernel(kernel)
                timings[kernel] = median_ms(lambda: layer(x))
            except (RuntimeError, ValueError) as e:  # oneDNN refuses some shapes, or its layout; say which
                timings[kernel] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        layer.use_kernel(kept)
    return timings


def _extra_bytes(layer: DeployedLayer, kernel: str) -> int:
    """Bytes `kernel` holds beyond the weight's stored codes: a pre-packed int8 weight replaces the
    codes, so it costs one byte per weight less the codes' own bytes."""
    if kernel != "int8" or layer.weight_zero_point is None:  # 8-bit int8 codes: same bytes
        return 0
    numel = int(torch.Size(layer.weight_shape).numel())
    return numel - packed_nbytes(numel, layer.weight_bits) if layer.weight_bits < 8 else 0


def choose_kernels(layers: Mapping[str, DeployedLayer], shapes: Mapping[str, tuple[int, ...]],
                   kernel: str | Mapping[str, str] = "auto", cache_bytes: int = 0) -> None:
    """Set each quantized layer's kernel, with the reason and the timings in its spec.

    "auto": the fastest kernel on the layer's recorded input shape among those that hold the
    weight at its own bits; then, within `cache_bytes` more, the layers whose pre-packed int8
    weight saves the most milliseconds per extra byte hold one. A layer with no recorded shape
    keeps the rule that needs no timing: int8 for 8-bit weights and activations, else dequant.
    A fixed kernel (one name, or per layer) is used where the layer supports it; elsewhere the
    layer falls back as under "auto" and says why."""
    if isinstance(kernel, str) and kernel not in (*KERNELS, "auto"):
        raise ValueError(f"unknown kernel {kernel!r}; expected 'auto' or one of {KERNELS}")
    gains: list[tuple[float, int, str, float]] = []
    for name, layer in layers.items():
        if layer.weight_bits is None:
            continue
        wanted = kernel.get(name, "auto") if isinstance(kernel, Mapping) else kernel
        usable = [k for k in KERNELS if layer.unsupported(k) is None]
        shape = shapes.get(name)
        fallback = ""
        if wanted != "auto":
            why = layer.unsupported(wanted)
            if why is None:
                try:
                    layer.use_kernel(wanted, reason="fixed", input_shape=shape)
                    continue
                except ValueError as e:
                    why = str(e)
            fallback = f"{wanted} asked for, but {why}; "
        if shape is None:
            static = "int8" if "int8" in usable and layer.weight_bits == 8 else "dequant"
            layer.use_kernel(static, reason=fallback + "not timed (no input seen in the sample call)")
            continue
        timings = time_kernels(layer, shape, usable)
        failed = {k: v for k, v in timings.items() if isinstance(v, str)}
        ms = {k: v for k, v in timings.items() if not isinstance(v, str)}
        fitting = [k for k in usable if k in ms and _extra_bytes(layer, k) == 0]
        best = min(fitting, key=ms.__getitem__)
        notes = "".join(f"; {k} failed: {v}" for k, v in failed.items())
        layer.use_kernel(best, reason=fallback + "fastest measured" + notes, timings=ms, input_shape=shape)
        if "int8" in ms and "int8" not in fitting and ms["int8"] < ms[best]:
            gains.append(((ms[best] - ms["int8"]) / _extra_bytes(layer, "int8"), _extra_bytes(layer, "int8"), name,
                          ms["int8"]))
    spent = 0
    for _, extra, name, _ in sorted(gains, reverse=True):
        if spent + extra > cache_bytes:
            continue
        spent += extra
        layer = layers[name]
        layer.use_kernel("int8", reason=f"fastest measured; holds its weight pre-packed in int8 (+{extra:,} bytes "
                                        "of the cache allowance)", timings=dict(layer.spec.kernel_ms),
                         input_shape=layer.spec.input_shape)
