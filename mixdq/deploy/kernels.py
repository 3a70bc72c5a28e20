"""Which kernel each deployed layer computes with: measured on the layer's own input shape.

The kernels of `modules.KERNELS` give the same numbers, but their speed depends on the shape: the
int8 kernels win by 2-13x on large activations, lose to a float matmul on tiny ones (a call into
oneDNN and quantizing the input cost tens of microseconds), and unpacking or re-packing the
weight every call costs more than the matmul itself where the weight is large and the activation
small (README, "Deployment"). So the choice is made per layer by timing, once, at deployment,
and written to the manifest with the figures behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from mixdq.deploy.blocked import POSITIONS, SCRATCH, chunk_rows
from mixdq.deploy.layers import DeployedLayer
from mixdq.deploy.manifest import KERNELS, Kernel
from mixdq.deploy.measure import latency
from mixdq.deploy.packing import packed_nbytes
from mixdq.quant.layers import QuantMixin


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


def median_ms(fn: Callable[[], object], enough_ms: float = float("inf")) -> float:
    """One kernel on one layer: after a warm-up, at least 3 calls and 20 ms (at most 50 calls);
    only one if that one takes more than `enough_ms` (a slow kernel is slow enough measured once)."""
    fn()  # oneDNN makes its primitive on the first call
    once = latency(fn, repeats=1, warmup=0) * 1e3
    if once > enough_ms:
        return once
    return latency(fn, repeats=3, warmup=0, min_seconds=0.02, max_repeats=50) * 1e3


def time_kernels(layer: DeployedLayer, shape: tuple[int, ...], kernels: list[str],
                 compiled: bool = False) -> dict[str, float | str]:
    """Milliseconds per call of `layer` with each of `kernels` on a random input of `shape`, and of
    the float op ("float", for reference). A kernel that fails on this shape maps to its error.
    `compiled`: int8 kernels are called as a compiled graph calls them (one opaque custom op, whose
    dispatch costs tens of microseconds more than a direct call)."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(layer.weight_scale.device)
    kept = layer.kernel
    timings: dict[str, float | str] = {}
    with torch.no_grad():
        weight = layer.dequantized_weight()
        timings["float"] = median_ms(lambda: layer._op(x, weight))
        enough = max(3 * timings["float"], 1.0)  # beyond this, a kernel is timed once
        for kernel in kernels:
            try:
                layer.use_kernel(kernel)
                call = (lambda: layer._forward(x, opaque=True)) if compiled else (lambda: layer(x))
                timings[kernel] = median_ms(call, enough)
            except (RuntimeError, ValueError) as e:  # oneDNN refuses some shapes, or its layout; say which
                timings[kernel] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        layer.use_kernel(kept)
    return timings


def _int8_extra_bytes(layer: DeployedLayer) -> int:
    """Bytes a pre-packed int8 weight holds beyond the stored codes it replaces (0 at 8 bits)."""
    if layer.weight_zero_point is None or layer.weight_bits >= 8:
        return 0
    return layer.numel - packed_nbytes(layer.numel, layer.weight_bits)


def _scratch(layer: DeployedLayer) -> tuple[tuple, int]:
    """(which scratch weight `layer` runs on, about its bytes): one chunk of its output channels
    in int8 and an int32 per channel; layers whose chunks have one shape share it."""
    per_channel = int(torch.Size(layer.weight_shape[1:]).numel())
    rows = chunk_rows(layer.weight_shape[0], per_channel)
    return (*layer._layout_key(), rows, *layer.weight_shape[1:]), rows * (per_channel + 4)


def default_allowance(layers: Mapping[str, DeployedLayer]) -> int:
    """1/8 of the quantized weights' code bytes (half a bit per weight at 4 bits)."""
    return sum(packed_nbytes(m.numel, m.weight_bits) if m.weight_bits < 8 else m.numel
               for m in layers.values() if m.weight_bits) // 8


def compiled_costs(ms: Mapping[str, float]) -> dict[str, float]:
    """What each kernel is expected to cost once the UNet is compiled: the compiler fuses the
    dequant kernel's unpacking, scaling and input rounding into loops around the float op, so it
    costs about what the float op does; the int8 kernels are opaque calls and cost what they were
    measured to (an upper bound: their input quantization gets fused too)."""
    return {k: ms["float"] if k == Kernel.DEQUANT else v for k, v in ms.items()}


def choose_kernels(layers: Mapping[str, DeployedLayer], shapes: Mapping[str, tuple[int, ...]],
                   kernel: str | Mapping[str, str] = "auto", cache_bytes: int | None = None,
                   compiled: bool = False) -> None:
    """Set each quantized layer's kernel, with the reason and the timings in its spec.

    "auto": each layer times every kernel it can use on its recorded input shape and takes the
    fastest that needs no memory beyond its codes (int8-repack, dequant; int8 at 8 bits). Then
    `cache_bytes` (default `default_allowance`: 1/8 of the code bytes) is spent, greedily by
    milliseconds saved per byte, on the two kernels that hold more: a scratch weight shared by
    every layer of one shape, which lets them all run `int8-unpack`, and a pre-packed int8 weight
    for one layer below 8 bits (`int8`). A layer with no recorded shape keeps the rule that needs
    no timing: int8 at 8-bit weights and activations, else dequant. A fixed kernel (one name, or
    per layer) is used where the layer supports it; elsewhere the layer falls back as under "auto"
    and says why. `compiled`: the UNet will run under torch.compile, so kernels are compared by
    `compiled_costs` (on tiny layers eager overheads, not arithmetic, decide otherwise)."""
    if isinstance(kernel, str) and kernel not in (*KERNELS, "auto"):
        raise ValueError(f"unknown kernel {kernel!r}; expected 'auto' or one of {', '.join(KERNELS)}")
    timed: dict[str, dict[str, float]] = {}
    how = "fastest once compiled (dequant costed as the float op it is fused into)" if compiled else "fastest measured"
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
            static = Kernel.INT8 if Kernel.INT8 in usable and layer.weight_bits == 8 else Kernel.DEQUANT
            layer.use_kernel(static, reason=fallback + "not timed (no input seen in the sample call)")
            continue
        timings = time_kernels(layer, shape, usable, compiled)
        ms = {k: v for k, v in timings.items() if not isinstance(v, str)}
        cost = compiled_costs(ms) if compiled else ms
        notes = "".join(f"; {k} failed: {v}" for k, v in timings.items() if isinstance(v, str))
        if not fallback and (why := layer.unsupported(Kernel.INT8)):  # e.g. on a GPU, or weight-only
            notes += f"; no int8 kernel: {why}"
        own_bits = [k for k in usable if k in ms and k != Kernel.INT8_UNPACK
                    and (k != Kernel.INT8 or not _int8_extra_bytes(layer))]
        best = min(own_bits, key=cost.__getitem__)
        layer.use_kernel(best, reason=fallback + how + notes, timings=ms, input_shape=shape)
        timed[name] = cost
    _spend_allowance(layers, timed, default_allowance(layers) if cache_bytes is None else cache_bytes, how)
    SCRATCH.keep(set().union(*(m.scratch_keys() for m in layers.values())))
    POSITIONS.clear()


def _spend_allowance(layers: Mapping[str, DeployedLayer], timed: dict[str, dict[str, float]], allowance: int,
                     how: str) -> None:
    """Greedy multiple-choice knapsack: scratch weights per shape and int8 weights per layer, by
    milliseconds saved per byte (`timed`: each layer's cost per kernel), while they fit."""
    items = []  # (ms saved per byte, bytes, kernel, layers it serves)
    shared: dict[tuple[tuple, int], list[str]] = {}
    for name, ms in timed.items():
        layer = layers[name]
        if Kernel.INT8_UNPACK in ms and ms[Kernel.INT8_UNPACK] < ms[layer.kernel]:
            shared.setdefault(_scratch(layer), []).append(name)
        if Kernel.INT8 in ms and ms[Kernel.INT8] < ms[layer.kernel] and _int8_extra_bytes(layer):
            extra = _int8_extra_bytes(layer)
            items.append(((ms[layer.kernel] - ms[Kernel.INT8]) / extra, extra, Kernel.INT8, [name]))
    for (_, cost), names in shared.items():
        saved = sum(timed[n][layers[n].kernel] - timed[n][Kernel.INT8_UNPACK] for n in names)
        items.append((saved / cost, cost, Kernel.INT8_UNPACK, names))
    spent = 0
    for _, cost, kernel, names in sorted(items, key=lambda item: -item[0]):
        if spent + cost > allowance:
            continue
        spent += cost
        for name in names:
            layer, ms = layers[name], timed[name]
            if ms[kernel] < ms[layer.kernel]:
                what = ("a scratch weight shared by its shape" if kernel == Kernel.INT8_UNPACK
                        else "its weight pre-packed in int8")
                layer.use_kernel(kernel, reason=f"{how}; {what} from the memory allowance ({cost:,} bytes)",
                                 timings=dict(layer.spec.kernel_ms), input_shape=layer.spec.input_shape)
