"""A deployed UNet on disk: `unet.safetensors` plus `manifest.json` (allocation, per-layer specs
and activation scales, UNet config, versions, and the SHA-256 of the weights file).

Loading reads safetensors only (no pickle), checks the hash first, and rebuilds the UNet on the
`meta` device, so nothing is allocated twice. A UNet deployed with compile=True is also saved
ahead of time as `unet.pt2` (`ahead`): machine code, which loading runs. The hash in the manifest
beside it proves only that the two match, not who made them: load compiled folders you made or
trust, or pass compile=False to read the safetensors alone.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from pathlib import Path

import diffusers
import torch
from diffusers import UNet2DConditionModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mixdq.core.errors import ConfigError
from mixdq.core.serialization import atomic_write_text
from mixdq.deploy.ahead import PACKAGE, AOTUNet, dequant_for_export, export_package
from mixdq.deploy.blocked import POSITIONS
from mixdq.deploy.compiling import EXAMPLE, compile_unet, is_compiled
from mixdq.deploy.convert import deployed_layers
from mixdq.deploy.layers import DEPLOYED_CLASSES
from mixdq.deploy.manifest import (
    FORMAT,
    MANIFEST,
    VERSION,
    VERSION_OUTPUT_GRIDS,
    WEIGHTS,
    LayerSpec,
    read_manifest,
    sha256_file,
)
from mixdq.deploy.signature import add_embedding_in_features
from mixdq.models.loading import load_pipeline
from mixdq.quant.allocation import Allocation
from mixdq.quant.layers import unet_of


def save_deployed(model, folder: str | Path, base_model: str | None = None) -> Path:
    """Write the deployed UNet of `model` to `folder`. `base_model` (hub id, folder, or None for
    the embedded model) is where `load_deployed_pipeline` takes the other components from."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet = unet_of(model)
    layers = deployed_layers(unet)
    if not layers:
        raise ConfigError("this model is not deployed; call mixdq.deploy.deploy(pipe) first (a UNet loaded from "
                          "its compiled package cannot be saved again: copy its folder instead)")
    tensors = {}
    for name, t in unet.state_dict().items():
        owner = name.rpartition(".")[0]
        if owner not in layers:
            tensors[name] = t
    for name, layer in layers.items():
        tensors.update({f"{name}.{k}": v for k, v in layer.tensors().items()})
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    tmp = folder / f".{WEIGHTS}.tmp"
    save_file(tensors, str(tmp))
    os.chmod(tmp, 0o644)
    tmp.replace(folder / WEIGHTS)
    allocation = Allocation({n: m.weight_bits for n, m in layers.items()}, {n: m.act_bits for n, m in layers.items()})
    manifest = dict(
        format=FORMAT, base_model=base_model,
        version=VERSION_OUTPUT_GRIDS if any(m.spec.output_bits for m in layers.values()) else VERSION,
        unet_config=json.loads(json.dumps(dict(unet.config), default=list)),
        allocation=allocation.to_dict(), layers={n: m.spec.to_dict() for n, m in layers.items()},
        weights={"file": WEIGHTS, "sha256": sha256_file(folder / WEIGHTS)}, compile=is_compiled(unet),
        aot=_save_package(unet, layers, folder) if is_compiled(unet) else None,
        versions={"python": platform.python_version(), "torch": torch.__version__,
                  "diffusers": diffusers.__version__},
    )
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return folder


def _save_package(unet, layers, folder: Path) -> dict:
    """The compiled UNet saved ahead of time (`ahead`), as the manifest's `aot` entry: the file
    and what it takes, or why there is none."""

    example = getattr(unet, EXAMPLE, None)
    if example is None:
        return dict(skipped="no example call was recorded (deploy with a sample, or a pipeline)")
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in example.values()):
        return dict(skipped="packages are made for CPU float32 models (what AOTUNet feeds them)")
    tmp = folder / f".tmp-{os.getpid()}-{PACKAGE}"  # AOTInductor wants the .pt2 ending
    try:
        with dequant_for_export(layers) as on_dequant:
            export_package(unet, example, tmp)
    except Exception as e:  # noqa: BLE001 - the package is an extra: the folder stays loadable without it
        tmp.unlink(missing_ok=True)
        warnings.warn(f"the compiled UNet could not be saved ahead of time ({type(e).__name__}: "
                      f"{str(e).splitlines()[0][:200]}); loading {folder} will compile it again", stacklevel=3)
        return dict(skipped=f"export failed: {type(e).__name__}")
    os.chmod(tmp, 0o644)
    tmp.replace(folder / PACKAGE)
    return dict(file=PACKAGE, sha256=sha256_file(folder / PACKAGE), inputs=list(example), torch=torch.__version__,
                shapes={k: list(v.shape[1:]) for k, v in example.items() if k != "timestep"},
                add_embedding_in_features=add_embedding_in_features(unet), dequant_in_package=on_dequant)


def load_deployed(folder: str | Path, compile: bool | None = None):
    """The deployed UNet saved in `folder`: a `UNet2DConditionModel` of deployed layers, compiled
    (torch.compile, on its first call) if `compile`, or by default if it was deployed with
    compile=True (its kernels were chosen for that). A compiled one comes from its package saved
    ahead of time when there is one this torch can run: then it is an `ahead.AOTUNet` (no
    compiler, loaded in about a second, no deployed layers to inspect: `kernel_table(folder)`
    reads them from the manifest). `compile=False`: the eager deployment, from safetensors only."""

    folder = Path(folder)
    manifest = read_manifest(folder)
    if (manifest.get("compile", False) if compile is None else compile) and (aot := _package(folder, manifest)):

        return AOTUNet(folder, manifest | {"aot": aot})
    weights = folder / manifest["weights"]["file"]
    if not weights.is_file():
        raise ConfigError(f"{weights} is missing; copy the whole folder, or save the model again")
    if sha256_file(weights) != manifest["weights"]["sha256"]:
        raise ConfigError(
            f"{weights} does not match its manifest (SHA-256 differs): the file was truncated or "
            "changed after saving; save the model again or restore the original file"
        )
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{weights} cannot be read as safetensors ({e}); save the model again") from None
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(manifest["unet_config"])
    for name, entry in manifest["layers"].items():
        spec = LayerSpec.from_dict(entry)
        prefix = name + "."
        own = {k[len(prefix):]: tensors.pop(k) for k in [k for k in tensors if k.startswith(prefix)]}
        unet.set_submodule(name, DEPLOYED_CLASSES[spec.kind](spec, own))
    POSITIONS.clear()
    missing, unexpected = unet.load_state_dict(tensors, strict=False, assign=True)
    left = [n for n, t in [*unet.named_parameters(), *unet.named_buffers()] if t.is_meta]
    if unexpected or left:
        raise ConfigError(f"{weights} does not fit its manifest (missing {left[:3]}, unexpected "
                          f"{unexpected[:3]}); save the model again")
    unet.eval()
    if manifest.get("compile", False) if compile is None else compile:
        compile_unet(unet)
    return unet


def _package(folder: Path, manifest: dict) -> dict | None:
    """The manifest's `aot` entry if its package can be run here; None to compile instead."""
    aot = manifest.get("aot") or {}
    if "file" not in aot:
        return None
    if aot["torch"] != torch.__version__:
        warnings.warn(f"{folder}'s compiled UNet was built by torch {aot['torch']}, this is {torch.__version__}: "
                      "compiling it again instead (save it again to keep the package)", stacklevel=3)
        return None
    path = folder / aot["file"]
    if not path.is_file() or sha256_file(path) != aot["sha256"]:  # never run it then: compile from the weights
        warnings.warn(f"{path} is missing or does not match its manifest (SHA-256 differs): compiling the UNet "
                      "again from the weights instead (save the model again to restore the package)", stacklevel=3)
        return None
    return aot


def load_deployed_pipeline(folder: str | Path, base_model: str | None = ..., compile: bool | None = None):
    """The base pipeline (from the manifest, or `base_model`) with the deployed UNet in it
    (`compile` as for `load_deployed`)."""

    manifest = read_manifest(folder)
    pipe = load_pipeline(manifest["base_model"] if base_model is ... else base_model)
    pipe.unet = load_deployed(folder, compile)
    return pipe
