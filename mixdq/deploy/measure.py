"""Memory and speed, measured: bytes actually held, peak resident memory, latency.

"Simulated" memory is arithmetic on bit-widths (`mixdq.memory_report`); these functions look at
what the process really holds, so the two can be shown side by side.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import pandas as pd
import torch
from torch import nn

from mixdq.core.bits import format_bits
from mixdq.deploy.blocked import SCRATCH
from mixdq.deploy.layers import DeployedLayer, kernel_counts
from mixdq.deploy.manifest import LayerSpec, read_manifest
from mixdq.models.inventory import Inventory
from mixdq.quant.allocation import Allocation
from mixdq.quant.layers import QuantMixin, unet_of
from mixdq.quant.memory import memory_report

T = TypeVar("T")
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def module_bytes(model) -> int:
    """Bytes of every distinct parameter and buffer of the UNet, plus storage deployed layers hold
    outside them (pre-packed int8 weights, blocked codes, the scratch weights they share)."""
    unet: nn.Module = unet_of(model)
    seen, total = set(), 0
    for t in [*unet.parameters(), *unet.buffers()]:
        key = (t.untyped_storage().data_ptr(), t.dtype, t.shape)
        if key not in seen:
            seen.add(key)
            total += t.nbytes
    deployed = [m for m in unet.modules() if isinstance(m, DeployedLayer)]
    return total + sum(m.extra_storage_bytes() for m in deployed) + scratch_bytes(deployed)


def scratch_bytes(layers: list[DeployedLayer]) -> int:
    """Bytes of the pre-packed scratch weights that `int8-unpack` layers share (one per shape)."""
    return SCRATCH.nbytes(set().union(*(m.scratch_keys() for m in layers)))


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def release_free_memory() -> None:
    """Return freed heap memory to the system (glibc keeps it otherwise), so resident memory shows
    what the model holds, not what an earlier conversion step once used."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def resident_bytes() -> int | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def peak_rss_during(fn: Callable[[], T]) -> tuple[T, int | None]:
    """(fn(), the process's peak resident bytes while it ran), via Linux's resettable high-water
    mark (/proc/self/clear_refs); None where that is not available."""
    release_free_memory()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return fn(), None
    out = fn()
    peak = _status_kb("VmHWM")
    return out, None if peak is None else peak * 1024


def latency(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, min_seconds: float = 0.0,
            max_repeats: int | None = None) -> float:
    """Median seconds per call: `repeats` calls, or more until `min_seconds` have passed (at most
    `max_repeats`), after `warmup` calls. GPU work is waited for: a CUDA call returns before its
    kernels finish."""
    sync = torch.cuda.synchronize if torch.cuda.is_initialized() else lambda: None
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_seconds and len(times) < (max_repeats or 1 << 30)):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def weight_bytes(model) -> int:
    """Bytes the UNet's Linear/Conv2d weights really take: deployed layers' codes, scales and
    zero-points (or pre-packed int8), and the float weights of layers never deployed."""
    total = 0
    for m in unet_of(model).modules():
        if isinstance(m, DeployedLayer):
            total += m.weight_bytes()
        elif type(m) in (nn.Linear, nn.Conv2d) or isinstance(m, QuantMixin):
            total += m.weight.nbytes
    return total


@dataclass(frozen=True)
class DeployReport:
    """Memory both ways, and speed, of one model running one call."""

    simulated_weight_bytes: float  # arithmetic: bits x params / 8 + per-channel scales (memory_report)
    measured_weight_bytes: int  # what the Linear/Conv2d weights really hold
    unet_bytes: int  # every tensor of the UNet, measured
    resident_before_bytes: int | None  # the process before the call
    peak_rss_bytes: int | None  # the process's peak during the call
    latency_s: float  # median per call
    avg_weight_bits: float
    kernels: dict[str, int]  # layers per kernel ("float": floating-point weights)
    peak_gpu_bytes: int | None = None  # CUDA memory allocated at the call's peak (None: no GPU used)

    def to_dict(self) -> dict:
        return asdict(self)


def report(model, inventory: Inventory, allocation: Allocation | None, call: Callable[[], object],
           repeats: int = 3, fp_bits: int = 32) -> DeployReport:
    """Measure `model` (pipeline or UNet) running `call` (one generation, or one UNet call).
    `allocation` None means the float model. Floating-point layers count `fp_bits` on both sides:
    deployed models keep them as they were (fp32 on the CPU, fp16 as GPUs run them)."""
    simulated = memory_report(inventory, allocation or Allocation(), fp_bits=fp_bits)
    gpu = torch.cuda.is_initialized()
    with torch.no_grad():
        release_free_memory()
        before = resident_bytes()
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        _, peak = peak_rss_during(call)
        peak_gpu = torch.cuda.max_memory_allocated() if gpu else None
        seconds = latency(call, repeats=repeats, warmup=0)
    kernels = kernel_counts({n: m for n, m in unet_of(model).named_modules() if isinstance(m, DeployedLayer)})
    return DeployReport(simulated.weight_bytes, weight_bytes(model), module_bytes(model), before, peak,
                        seconds, simulated.avg_weight_bits, kernels, peak_gpu)


def kernel_table(source) -> pd.DataFrame:
    """One row per deployed layer: bits, kernel, why, and the milliseconds behind the choice
    (chosen and float, on the recorded input shape). `source`: a deployed model, or a folder
    written by `save_deployed` (read from its manifest, without loading weights)."""

    if isinstance(source, str | Path):
        specs = [LayerSpec.from_dict(entry) for entry in read_manifest(source)["layers"].values()]
    else:
        specs = [m.spec for m in unet_of(source).modules() if isinstance(m, DeployedLayer)]
    rows = []
    for s in specs:
        ms = dict(s.kernel_ms or {})
        chosen, fp = ms.get(s.kernel or ""), ms.get("float")
        rows.append(dict(layer=s.layer, weight_bits=format_bits(s.weight_bits), act_bits=format_bits(s.act_bits),
                         kernel=s.kernel or "float", ms=chosen, float_ms=fp,
                         x_float=None if chosen is None or not fp else chosen / fp,
                         input_shape="x".join(map(str, s.input_shape)) if s.input_shape else "",
                         reason=s.kernel_reason or ""))
    return pd.DataFrame(rows)
