"""Where a model runs and in which float type, and how much memory that machine has.

    placement = mixdq.Placement.resolve()          # cuda + float16 where a GPU is, else cpu + float32
    placement = mixdq.Placement.resolve("cpu")     # or MIXDQ_DEVICE=cpu / MIXDQ_DTYPE=float32
    pipe = mixdq.load_pipeline("stabilityai/sdxl-turbo", device=placement.device)

An explicit argument wins over the environment, the environment over the default.
"""

from __future__ import annotations

import ctypes
import gc
import os
import resource
from dataclasses import dataclass

import torch

from mixdq.core.errors import ConfigError

DEVICE_ENV, DTYPE_ENV = "MIXDQ_DEVICE", "MIXDQ_DTYPE"

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    if isinstance(value, torch.dtype):
        if value not in DTYPES.values():
            raise ConfigError(f"dtype {value} is not one mixdq runs in; use float32, float16 or bfloat16")
        return value
    try:
        return DTYPES[str(value).strip().lower().removeprefix("torch.")]
    except KeyError:
        raise ConfigError(f"unknown dtype {value!r}; use float32, float16 or bfloat16 (or fp32, fp16, bf16)") from None


def parse_device(value: str | torch.device) -> torch.device:
    try:
        device = torch.device(str(value).strip())
    except RuntimeError:
        raise ConfigError(f"unknown device {value!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {value!r} was asked for, but torch sees no CUDA GPU here "
                          f"(torch {torch.__version__}); use cpu, or unset {DEVICE_ENV}")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {value!r}: mixdq runs on cpu or cuda")
    return device


@dataclass(frozen=True)
class Placement:
    """A device and the float type a model is loaded in there."""

    device: str
    dtype: torch.dtype

    @classmethod
    def resolve(cls, device: str | None = None, dtype: str | torch.dtype | None = None) -> Placement:
        """fp16 on CUDA (the hub's fp16 weights, half the download), fp32 on a CPU (fp16 matmuls
        are slow or missing there); arguments, then MIXDQ_DEVICE / MIXDQ_DTYPE, override."""
        device = device or os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
        where = parse_device(device)
        dtype = dtype or os.environ.get(DTYPE_ENV) or ("float16" if where.type == "cuda" else "float32")
        return cls(str(where), parse_dtype(dtype))

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def variant(self) -> str | None:
        """The hub's weight variant to load: "fp16" files for a half-precision model."""
        return "fp16" if self.dtype == torch.float16 else None

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def describe(self) -> str:
        name = torch.cuda.get_device_name(torch.device(self.device)) if self.on_cuda else "CPU"
        return f"{self.device} ({name}), {self.dtype_name}"


def process_rss_bytes() -> int:
    """Resident memory of this process now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def available_bytes(device: str = "cpu") -> int:
    """Memory a new allocation can still get on `device`: free GPU memory plus what torch's caching
    allocator holds unused, or the host's MemAvailable (a container's limit where that is lower)."""
    where = torch.device(device)
    if where.type == "cuda":
        free, _ = torch.cuda.mem_get_info(where)
        return free + torch.cuda.memory_reserved(where) - torch.cuda.memory_allocated(where)
    available = _meminfo_available()
    limit = _cgroup_headroom()
    return min(available, limit) if limit is not None else available


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _cgroup_headroom() -> int | None:
    """A container's memory limit less its usage (cgroup v2), or None without a limit: Spaces run
    in containers whose limit (16 GB on CPU basic) is below the host's memory."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def memory_in_use(device: str = "cpu") -> dict[str, int]:
    """What this process holds: RSS, and on CUDA the tensors allocated and torch's peak."""
    out = {"rss_bytes": process_rss_bytes()}
    where = torch.device(device)
    if where.type == "cuda":
        out["cuda_allocated_bytes"] = torch.cuda.memory_allocated(where)
        out["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(where)
    return out


def release_freed_memory() -> None:
    """Hand memory that Python and torch freed back to the operating system. glibc keeps freed heap
    for reuse, so after a big temporary (an export's packed copy of a UNet) a long-running
    studio's RSS would stay at its peak."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def format_gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
