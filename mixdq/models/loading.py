"""Where pipelines and UNet architectures come from: the embedded model, a hub id, a local
diffusers folder, or a shipped full-size architecture (config only, for meta-device work).

Loading never runs code from the model (no `trust_remote_code`) and reads safetensors only.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import socket
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel
from huggingface_hub import constants

from mixdq.core.device import Placement
from mixdq.core.errors import ModelNotFoundError, UnsupportedModelError
from mixdq.embedded.paths import EMBEDDED_DIR
from mixdq.models.architectures import ARCHITECTURES
from mixdq.models.inventory import MIXDQ_RULE, GroupRule, Inventory, build_inventory

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
SUPPORTED_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")


@contextmanager
def _quiet_hub():
    """diffusers passes huggingface_hub a deprecated argument on every lookup; hide that noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
        yield


def _hub_offline() -> bool:
    """True when the hub cannot be asked: offline mode, or its host does not even resolve.

    Then we load from the local cache only, at once, instead of sitting through
    huggingface_hub's retries before the same error.
    """

    if constants.HF_HUB_OFFLINE:
        return True
    host = re.sub(r"^https?://", "", constants.ENDPOINT).split("/")[0].split(":")[0]
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return True
    return False


def _choices() -> str:
    return ", ".join(ARCHITECTURES) + ", a Hugging Face hub id, or a local diffusers folder"


def _embedded_or_explain() -> Path:
    if (EMBEDDED_DIR / "model_index.json").exists():
        return EMBEDDED_DIR
    raise ModelNotFoundError(
        "no model named, and the embedded default model is not in assets/embedded yet "
        f"(it is being built in its own issue). Name a model instead: {_choices()}."
    )


def _hub_error(spec: str, err: Exception) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"could not load '{spec}': it is not in the local Hugging Face cache and the hub could not "
        f"be reached ({type(err).__name__}). On a machine with network run "
        f"`hf download {spec}` (it fills the cache), or pass the path of a local diffusers folder."
    )


def _local_or_hub(spec: str) -> Path | str:
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"'{spec}' is a file; a model is a diffusers folder or a hub id")
        return path
    if _HUB_ID.match(spec) and not spec.startswith("."):
        return spec
    raise ModelNotFoundError(f"no folder '{spec}'; a model is one of {_choices()}")


def load_unet_config(spec: str | None = None) -> dict:
    """The UNet config of a model, without loading any weights."""
    if spec in ARCHITECTURES:
        return json.loads(ARCHITECTURES[spec].unet_config_path.read_text())
    source = _embedded_or_explain() if spec is None else _local_or_hub(spec)
    if isinstance(source, Path):
        for candidate in (source / "unet" / "config.json", source / "config.json"):
            if candidate.exists():
                config = json.loads(candidate.read_text())
                if config.get("_class_name") == "UNet2DConditionModel":
                    return config
        raise UnsupportedModelError(
            f"'{source}' has no UNet2DConditionModel config (expected unet/config.json, as in a "
            "folder written by pipe.save_pretrained)"
        )

    try:
        with _quiet_hub():
            return dict(
                UNet2DConditionModel.load_config(
                    source, subfolder="unet", local_files_only=_hub_offline()
                )
            )
    except OSError as e:
        raise _hub_error(source, e) from None


def text_tokens(spec: str | None = None) -> int:
    """Text-embedding length a model's UNet sees: its tokenizer's `model_max_length` when the
    folder says, else CLIP's 77 (every SD/SDXL checkpoint)."""
    folder = None
    if spec is None:
        folder = _embedded_or_explain()
    elif spec not in ARCHITECTURES and Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser()
    config = folder / "tokenizer" / "tokenizer_config.json" if folder else None
    if config is not None and config.exists():
        length = json.loads(config.read_text()).get("model_max_length", 77)
        if isinstance(length, int) and 0 < length <= 4096:
            return length
    return 77


def load_inventory(spec: str | None = None, latent_size=None, group_rule: GroupRule = MIXDQ_RULE) -> Inventory:
    """The layer inventory of a model, from its configs alone (no weights are loaded)."""
    return build_inventory(
        load_unet_config(spec), latent_size=latent_size, group_rule=group_rule,
        model=spec or "embedded", text_tokens=text_tokens(spec),
    )


def load_pipeline(spec: str | None = None, *, device: str | None = None, dtype: str | torch.dtype | None = None,
                  variant: str | None = ..., **components):
    """A `StableDiffusionPipeline` or `StableDiffusionXLPipeline` where it runs best.

    `spec`: None for the embedded model, an architecture name (loads its hub id from the local
    cache), a hub id, or a local folder. `device`/`dtype`: as `Placement.resolve` (default: CUDA in
    float16 where a GPU is, else the CPU in float32; MIXDQ_DEVICE / MIXDQ_DTYPE override).
    `variant`: the weight files to read (default: "fp16" for a float16 load where the model has
    them, else the full-precision files). `components` replace the pipeline's own (`unet=None`:
    not loaded, for a UNet that comes from elsewhere).
    """
    placement = Placement.resolve(device, dtype)
    if spec in ARCHITECTURES:
        spec = ARCHITECTURES[spec].hub_id
    source = _embedded_or_explain() if spec is None else _local_or_hub(spec)
    if variant is ...:
        variant = placement.variant
    try:
        pipe = _from_pretrained(source, placement.dtype, variant, components)
    except _NoVariant:  # a model without fp16 files: its full-precision ones, cast on load
        pipe = _from_pretrained(source, placement.dtype, None, components)
    if type(pipe).__name__ not in SUPPORTED_PIPELINES:
        raise UnsupportedModelError(
            f"'{spec}' is a {type(pipe).__name__}; mixdq supports {', '.join(SUPPORTED_PIPELINES)}"
        )
    return pipe.to(placement.device)


class _NoVariant(Exception):
    pass


def _from_pretrained(source: Path | str, dtype: torch.dtype, variant: str | None, components: dict):
    if variant is not None and isinstance(source, Path) and not any(source.glob(f"*/*.{variant}.safetensors")):
        raise _NoVariant
    try:
        with _quiet_hub():
            return DiffusionPipeline.from_pretrained(
                source,
                dtype=dtype,
                use_safetensors=True,
                variant=variant,
                local_files_only=isinstance(source, str) and _hub_offline(),
                **components,
            )
    except (OSError, ValueError) as e:
        if variant is not None and variant in str(e):
            raise _NoVariant from None
        if not isinstance(source, Path):
            raise _hub_error(source, e) from None
        if any(source.glob("**/*.bin")) or any(source.glob("**/*.ckpt")):
            raise UnsupportedModelError(
                f"'{source}' holds pickled weights (.bin/.ckpt), and mixdq reads safetensors only, "
                "because unpickling can run code. Convert it where you trust the files: "
                "DiffusionPipeline.from_pretrained(folder).save_pretrained(new_folder)."
            ) from None
        raise ModelNotFoundError(f"could not load the pipeline in '{source}': {e}") from None


def fork_pipeline(pipe, share_weights: bool = False):
    """A second pipeline with its own copy of the UNet (and of the scheduler, whose state changes
    each call) that shares the text encoders, tokenizers and VAE, which mixdq's verbs never touch:
    so two allocations of one model can be held, and run, at once.

    `share_weights`: the copy's UNet is new modules over the *same* parameter and buffer tensors,
    so it costs no memory for weights; for work that replaces layers and never changes a weight in
    place or moves the model (`deploy.deploy`, `export_openvino`), as the studio's exports do.
    """
    memo = {id(t): t for t in (*pipe.unet.parameters(), *pipe.unet.buffers())} if share_weights else {}
    kwargs = {**pipe.components, "unet": copy.deepcopy(pipe.unet, memo),
              "scheduler": type(pipe.scheduler).from_config(pipe.scheduler.config)}
    # settings that live in the config only (SD's requires_safety_checker, SDXL's
    # force_zeros_for_empty_prompt, ...): the constructor's defaults would differ, and warn
    for name in inspect.signature(type(pipe).__init__).parameters:
        if name not in kwargs and name in pipe.config:
            kwargs[name] = pipe.config[name]
    fork = type(pipe)(**kwargs)
    fork.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return fork
