"""What machine a benchmark ran on: speed ratios depend on the CPU's vector extensions (bf16 is
slow without AVX-512 BF16; int8 kernels gain most with VNNI), so every bench prints this first, and `save` writes its figures with the machine beside them."""

from __future__ import annotations

import json
import platform
from datetime import date
from pathlib import Path

import torch

from mixdq.core.serialization import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def _cpuinfo(key: str) -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), "")


def cpu_summary(threads: int | None = None) -> dict:
    """The machine as data, for a bench's JSON output."""
    flags = set(_cpuinfo("flags").split())
    return dict(model=_cpuinfo("model name") or platform.machine(), threads=threads or torch.get_num_threads(),
                flags=[f for f in FLAGS if f in flags], torch=torch.__version__)


def describe() -> str:
    cpu = cpu_summary()
    return (f"machine: {cpu['model']}, {cpu['threads']} torch threads, "
            f"CPU flags: {' '.join(cpu['flags']) or 'none of ' + ', '.join(FLAGS)}, torch {cpu['torch']}")


def start(threads: int) -> None:
    """Every bench begins here: a fixed thread count, and the machine printed beside the figures."""
    torch.set_num_threads(threads)
    print(describe())


def _plain(value):
    """JSON for what benches measure: tensors and numpy scalars/arrays as numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def save(name: str, payload: dict, tag: str = "") -> Path:
    """Writes `bench/results/{name}[-{tag}]-{YYYY-MM-DD}.json` atomically (temp file + replace):
    the bench's figures with its name, today's date and the machine (`cpu_summary`).
    `bench/render.py` puts the newest file of each name-and-tag into the docs."""
    today = date.today().isoformat()
    out = RESULTS / f"{name}{'-' + tag if tag else ''}-{today}.json"
    data = dict(bench=name, tag=tag, date=today, machine=cpu_summary(), **payload)
    atomic_write_text(out, json.dumps(data, indent=1, default=_plain) + "\n")  # temp file + os.replace
    print(f"wrote {out}")
    return out
