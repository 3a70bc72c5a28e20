"""Full-size SD-Turbo and SDXL-Turbo pipelines with random weights, for benchmarks and tests.

Built offline from the configs in `assets/architectures/<name>/` (the published diffusers configs,
`<component>_config.json` and `model_index.json`) and CLIP's tokenizer in
`assets/architectures/clip-tokenizer/`: the real classes, shapes and sizes, nothing downloaded.
The weights are the classes' own random initialisations, so outputs are finite but meaningless.

Each model is built directly on its device and in its dtype (the default dtype is switched while
it is built), so building needs about the final pipeline's bytes, not twice that. Not part of
the public API (`mixdq/__init__` does not export it): import `mixdq.models.random_weights`.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import diffusers
import torch
import transformers
from tqdm.auto import tqdm
from transformers import CLIPTokenizer

from mixdq.core.assets import ASSETS
from mixdq.core.serialization import _umask
from mixdq.models.architectures import ARCHITECTURES

ARCHITECTURES_DIR = ASSETS / "architectures"
CLIP_TOKENIZER_DIR = ARCHITECTURES_DIR / "clip-tokenizer"
NAMES = ("sd-turbo", "sdxl-turbo")
_TEXT_MODELS = ("CLIPTextModel", "CLIPTextModelWithProjection")

Overrides = Mapping[str, Mapping[str, object]]


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"no random pipeline for {name!r}; choose one of {', '.join(NAMES)}")


def _model_index(name: str) -> dict:
    _check_name(name)
    return json.loads((ARCHITECTURES_DIR / name / "model_index.json").read_text())


def components(name: str) -> dict[str, str]:
    """The pipeline's components and their classes, from its `model_index.json` (the ones it
    does not ship, such as SD-Turbo's safety checker, left out)."""
    return {k: v[1] for k, v in _model_index(name).items() if isinstance(v, list) and v[0] is not None}


def component_config(name: str, component: str, overrides: Overrides | None = None) -> dict:
    """The shipped config of one component, with `overrides[component]` merged in."""
    _check_name(name)
    path = (ARCHITECTURES[name].unet_config_path if component == "unet"
            else ARCHITECTURES_DIR / name / f"{component}_config.json")
    return {**json.loads(path.read_text()), **dict((overrides or {}).get(component, {}))}


def _build(cls_name: str, config: dict):
    """One component from its config, with the class's own random initialisation."""
    if cls_name in _TEXT_MODELS:

        return getattr(transformers, cls_name)(transformers.CLIPTextConfig(**config))
    if cls_name == "CLIPTokenizer":

        settings = {k: v for k, v in config.items() if k != "tokenizer_class"}
        return CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR, **settings)

    return getattr(diffusers, cls_name).from_config(config)


def _is_model(cls_name: str) -> bool:
    return cls_name in _TEXT_MODELS or cls_name in ("UNet2DConditionModel", "AutoencoderKL")


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def component_params(name: str, config_overrides: Overrides | None = None) -> dict[str, int]:
    """Parameters per model component (unet, vae, text encoders), counted on the `meta` device:
    no memory, a few seconds."""
    counts = {}
    for component, cls_name in components(name).items():
        if _is_model(cls_name):
            with torch.device("meta"):
                model = _build(cls_name, component_config(name, component, config_overrides))
            counts[component] = sum(p.numel() for p in model.parameters())
    return counts


def random_pipeline(name: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                    seed: int = 0, config_overrides: Overrides | None = None, progress: bool = True):
    """A full-size `StableDiffusionPipeline` (`name="sd-turbo"`) or `StableDiffusionXLPipeline`
    (`"sdxl-turbo"`) with random weights, built on `device` in `dtype`.

    `seed` fixes the weights (the global RNG is left as it was). `config_overrides` maps a
    component to config keys that replace the shipped ones (tests shrink a model this way).
    There is no safety checker, and the pipeline says so (`requires_safety_checker=False`).
    On one CPU thread SD-Turbo takes ~25 s (random initialisation), SDXL-Turbo about a minute.
    """

    _check_name(name)
    device = torch.device(device)
    built = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for component, cls_name in tqdm(components(name).items(), desc=f"building {name}", disable=not progress):
            config = component_config(name, component, config_overrides)
            if _is_model(cls_name):
                with device, _default_dtype(dtype):
                    built[component] = _build(cls_name, config).eval()
            else:  # schedulers and tokenizers hold no weights; built in the usual way
                built[component] = _build(cls_name, config)
    pipeline_cls = getattr(diffusers, ARCHITECTURES[name].pipeline)
    index = _model_index(name)
    accepted = inspect.signature(pipeline_cls.__init__).parameters
    settings = {k: v for k, v in index.items() if k in accepted and not isinstance(v, list)}
    absent = {k: None for k, v in index.items() if isinstance(v, list) and v[0] is None and k in accepted}
    if "requires_safety_checker" in accepted:
        settings["requires_safety_checker"] = False
    return pipeline_cls(**built, **absent, **settings)


def random_pipeline_folder(name: str, folder: str | os.PathLike, **kw) -> Path:
    """Write `random_pipeline(name, **kw)` as a diffusers folder (safetensors) that
    `mixdq.load_pipeline(str(folder))` loads like a downloaded model.

    Written to a temporary sibling and renamed, so `folder` is complete or absent, never half
    written. `folder` must not exist yet.
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} exists; remove it or choose another folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; keep the usual permissions
        pipe = random_pipeline(name, **kw)
        pipe.save_pretrained(tmp, safe_serialization=True)
        del pipe
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
