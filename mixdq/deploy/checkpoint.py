"""A deployed UNet on disk: `unet.safetensors` plus `manifest.json` (allocation, per-layer specs
and activation scales, UNet config, versions, and the SHA-256 of the weights file).

Loading reads safetensors only (no pickle), checks the hash first, and rebuilds the UNet on the
`meta` device, so nothing is allocated twice. A UNet deployed with compile=True is also saved
ahead of time as `unet.pt2` (`ahead`): machine code, which loading runs. The hash in the manifest
beside it proves only that the two match, not who made them: load compiled folders you made or
trust, or pass compile=False to read the safetensors alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from pathlib import Path

import torch

from ..allocation import Allocation
from ..errors import ConfigError
from ..layers import unet_of
from ..serialization import atomic_write_text
from .blocked import POSITIONS
from .compiling import compile_unet, is_compiled
from .convert import deployed_layers
from .modules import DEPLOYED_CLASSES, LayerSpec

FORMAT = "mixdq-deployed"
VERSION = 1
# v2: some layer has an output grid (`QuantConfig.self_attention_bits`), which a reader of v1
# would drop without a word; models without one are still written as v1, for older readers
VERSION_OUTPUT_GRIDS = 2
WEIGHTS = "unet.safetensors"
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def save_deployed(model, folder: str | Path, base_model: str | None = None) -> Path:
    """Write the deployed UNet of `model` to `folder`. `base_model` (hub id, folder, or None for
    the embedded model) is where `load_deployed_pipeline` takes the other components from."""
    import diffusers
    from safetensors.torch import save_file

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
        weights={"file": WEIGHTS, "sha256": _sha256(folder / WEIGHTS)}, compile=is_compiled(unet),
        aot=_save_package(unet, layers, folder) if is_compiled(unet) else None,
        versions={"python": platform.python_version(), "torch": torch.__version__,
                  "diffusers": diffusers.__version__},
    )
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return folder


def _save_package(unet, layers, folder: Path) -> dict:
    """The compiled UNet saved ahead of time (`ahead`), as the manifest's `aot` entry: the file
    and what it takes, or why there is none."""
    from .ahead import PACKAGE, dequant_for_export, export_package
    from .compiling import EXAMPLE
    from .signature import add_embedding_in_features

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
    return dict(file=PACKAGE, sha256=_sha256(folder / PACKAGE), inputs=list(example), torch=torch.__version__,
                shapes={k: list(v.shape[1:]) for k, v in example.items() if k != "timestep"},
                add_embedding_in_features=add_embedding_in_features(unet), dequant_in_package=on_dequant)


def read_json_manifest(folder: str | Path, fmt: str, version: int | tuple[int, ...], what: str,
                       redo: str) -> dict:
    """`folder`'s manifest.json, if it is a `fmt` v`version` one (or any of several); `what` the
    folder should be, and `redo` how to make it again, for the errors."""
    versions = (version,) if isinstance(version, int) else version
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{folder} has no {MANIFEST}: it is not {what} ({redo})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is damaged ({e}); {redo}") from None
    if manifest.get("format") != fmt or manifest.get("version") not in versions:
        raise ConfigError(f"{path} is not a {fmt} manifest of a version this engine reads "
                          f"({', '.join(f'v{v}' for v in versions)}); {redo}")
    return manifest


def read_manifest(folder: str | Path) -> dict:
    return read_json_manifest(folder, FORMAT, (VERSION, VERSION_OUTPUT_GRIDS), "a deployed MixDQ model",
                              "save it again with save_deployed")


def load_deployed(folder: str | Path, compile: bool | None = None):
    """The deployed UNet saved in `folder`: a `UNet2DConditionModel` of deployed layers, compiled
    (torch.compile, on its first call) if `compile`, or by default if it was deployed with
    compile=True (its kernels were chosen for that). A compiled one comes from its package saved
    ahead of time when there is one this torch can run: then it is an `ahead.AOTUNet` (no
    compiler, loaded in about a second, no deployed layers to inspect: `kernel_table(folder)`
    reads them from the manifest). `compile=False`: the eager deployment, from safetensors only."""
    from diffusers import UNet2DConditionModel
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    manifest = read_manifest(folder)
    if (manifest.get("compile", False) if compile is None else compile) and (aot := _package(folder, manifest)):
        from .ahead import AOTUNet

        return AOTUNet(folder, manifest | {"aot": aot})
    weights = folder / manifest["weights"]["file"]
    if not weights.is_file():
        raise ConfigError(f"{weights} is missing; copy the whole folder, or save the model again")
    if _sha256(weights) != manifest["weights"]["sha256"]:
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
    if not path.is_file() or _sha256(path) != aot["sha256"]:  # never run it then: compile from the weights
        warnings.warn(f"{path} is missing or does not match its manifest (SHA-256 differs): compiling the UNet "
                      "again from the weights instead (save the model again to restore the package)", stacklevel=3)
        return None
    return aot


def load_deployed_pipeline(folder: str | Path, base_model: str | None = ..., compile: bool | None = None):
    """The base pipeline (from the manifest, or `base_model`) with the deployed UNet in it
    (`compile` as for `load_deployed`)."""
    from ..models import load_pipeline

    manifest = read_manifest(folder)
    pipe = load_pipeline(manifest["base_model"] if base_model is ... else base_model)
    pipe.unet = load_deployed(folder, compile)
    return pipe
