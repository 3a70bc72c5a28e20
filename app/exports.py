"""The models a user takes home: a deployed checkpoint and an OpenVINO IR (each zipped), built on a
fork of the studio's pipeline and written to a fresh temporary folder per request. (The GPU
boundary calls this; the allocation files and command lines are `downloads`.)"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

import mixdq
from mixdq.core.device import format_gb
from mixdq.deploy import Kernel, export_openvino, read_openvino_manifest


def temp_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="mixdq-export-"))


def fork_bytes(pipe, kind: str) -> int:
    """What an export needs beyond what the studio holds. The copy of the UNet shares the float
    weights (`fork_pipeline(share_weights=True)`), so what is new is the packed weights (at most a
    byte per weight) and each layer's work while it is packed; OpenVINO's converter also holds
    its own float constants while it builds the IR."""
    params = sum(p.numel() for p in pipe.unet.parameters())
    return params * (4 + 1 if kind == "openvino" else 2)


def require_fork_memory(pipe, kind: str) -> None:
    """Refuse, saying what it needs, an export the machine cannot do or has no memory for."""
    if kind == "openvino" and (pipe.device.type != "cpu" or pipe.unet.dtype != torch.float32):
        raise mixdq.ConfigError(
            "OpenVINO runs on CPUs, and this studio's model is on "
            f"{pipe.device} in {str(pipe.unet.dtype).removeprefix('torch.')}: export it on a CPU machine with "
            "`mixdq export-openvino MODEL --allocation allocation.json` (allocation from the files button)")
    need, device = fork_bytes(pipe, kind), str(pipe.device)
    have = mixdq.available_bytes(device)
    if need > have:
        raise mixdq.InsufficientMemoryError(
            f"this export packs the UNet's weights: it needs about {format_gb(need)} more on {device}, and "
            f"{format_gb(have)} are free. Export on a bigger machine with the command line (`mixdq deploy` / "
            "`mixdq export-openvino`, with the allocation file from the files button).")


def allocated_fork(pipe, allocation: mixdq.Allocation, self_attention_bits: int | None = None):
    """A copy of the calibrated pipeline's UNet, over the same weights, with `allocation` applied
    (BOS-aware), and self-attention's query and key at `self_attention_bits` (None: float, as
    MixDQ); call with the pipeline's lock held (the copy is taken of the shared UNet)."""
    fork = mixdq.fork_pipeline(pipe, share_weights=True)
    config = replace(mixdq.quant_config(fork), bos_aware=True, self_attention_bits=self_attention_bits)
    mixdq.prepare(fork, config)  # calibration kept: the query/key ranges were recorded with the rest
    mixdq.apply_allocation(fork, allocation)
    return fork


def _zipped(folder: Path, name: str) -> Path:
    """`folder` as `name`.zip beside it; the folder itself is removed (the zip is downloaded)."""
    archive = Path(shutil.make_archive(str(folder.parent / name), "zip", folder))
    shutil.rmtree(folder)
    return archive


def deployed_zip(fork, base_model: str | None) -> dict:
    """The allocated fork deployed for real (packed weights, each layer's kernel timed on its own
    input) and saved with the engine's `save_deployed`, zipped: {archive, zip_bytes,
    weights_bytes, kernels (layers per kernel)}."""
    mixdq.deploy.deploy(fork)
    kernels = {k: n for k, n in mixdq.deploy.kernel_counts(mixdq.deploy.deployed_layers(fork)).items() if n}
    folder = mixdq.deploy.save_deployed(fork, temp_folder() / "deployed", base_model=base_model)
    weights = (folder / "unet.safetensors").stat().st_size
    archive = _zipped(folder, "mixdq-deployed")
    return dict(archive=str(archive), zip_bytes=archive.stat().st_size, weights_bytes=weights, kernels=kernels)


def openvino_zip(fork, base_model: str | None, self_attention_bits: int | None = None) -> dict:
    """The allocated fork exported for OpenVINO (`export_openvino`: each layer's weights at its
    bits, activations on the calibrated grid; self-attention's query and key at
    `self_attention_bits`), zipped: {archive, zip_bytes, files (bytes of each IR file), stored
    (layers per element type the weights are stored as)}."""

    folder = export_openvino(fork, temp_folder() / "openvino", base_model=base_model)
    manifest = read_openvino_manifest(folder)
    ir_bytes = {name: f["bytes"] for name, f in manifest["files"].items()}
    stored = Counter(layer["stored"] for layer in manifest["layers"].values())
    archive = _zipped(folder, "mixdq-openvino")
    return dict(archive=str(archive), zip_bytes=archive.stat().st_size, files=ir_bytes,
                stored=dict(sorted(stored.items())), self_attention_bits=self_attention_bits)


KERNEL_WORDS = {
    Kernel.INT8: "on integer (int8) kernels",
    Kernel.INT8_UNPACK: "on int8 kernels, unpacking their low-bit weights each call",
    Kernel.INT8_REPACK: "on int8 kernels, re-packing their weights each call",
    Kernel.DEQUANT: "in float, from weights unpacked each call",
    Kernel.INT_MM: "on integer matrix multiplies (torch._int_mm; int8 tensor cores on a GPU)",
    "float": "in float, unquantized",
}


def describe_kernels(kernels: dict[str, int]) -> str:
    """Layers per kernel, in words a reader who never met oneDNN can follow."""
    return "; ".join(f"{n} layers {KERNEL_WORDS[k]}" for k, n in kernels.items())


STORAGE_WORDS = {"u2": "2-bit", "u3": "3-bit", "u4": "4-bit", "u6": "6-bit (5- and 6-bit codes)",
                 "u8": "8-bit", "i8": "8-bit", "f32": "32-bit float (unquantized)"}


def describe_storage(stored: dict[str, int]) -> str:
    """Layers per stored element type, in words."""
    return "; ".join(f"{n} layers {STORAGE_WORDS[t]} ({t})" for t, n in stored.items())
