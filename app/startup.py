"""What the studio does before it serves a page: pick the models that make images, load them
onto their device (ZeroGPU wants them there at module scope, before any GPU call forks a worker),
with the logs saying what happens."""

from __future__ import annotations

import logging

import mixdq
from mixdq.core.device import format_gb

from . import gpu
from .pipelines import refused
from .registry import ModelEntry
from .settings import EMBEDDED, MODELS_ENV, StudioSettings

log = logging.getLogger("mixdq.studio")

# names the picker already serves with a shipped profile
SHIPPED_PROFILES = {"embedded": EMBEDDED, "sdxl-turbo": "sdxl-turbo", "stabilityai/sdxl-turbo": "sdxl-turbo"}


def served(models: dict[str, ModelEntry], settings: StudioSettings) -> list[ModelEntry]:
    """The entries whose images this studio makes, or the error that says how to serve one."""
    entries = []
    for name in settings.models:
        key = SHIPPED_PROFILES.get(name, name)
        if key not in models:
            raise mixdq.ConfigError(
                f"{MODELS_ENV} names {name!r}, which this studio has no sensitivity profile of; it serves "
                f"{', '.join(m for m in models if ' · ' not in m)} (others with `python app.py --model M --profile P`)")
        entries.append(models[key])
    return entries


QUANTIZED_COPY = 1.1  # one fake-quantized copy of the UNet, and what images and calibration add (bench)


def serving_bytes(entry: ModelEntry, placement: mixdq.Placement) -> int:
    """What serving the model's images needs: its pipeline and one quantized copy of its UNet."""
    pipeline, unet = entry.model_bytes(placement)
    return int(pipeline + QUANTIZED_COPY * unet)


def load_served(models: dict[str, ModelEntry], settings: StudioSettings) -> list[str]:
    """Load every served model; the keys loaded. A model that would not fit in the memory this
    machine has free (SDXL-Turbo in float32 on a 16 GB CPU Space), or whose weights cannot be
    had, is not loaded: its views stay profile-only, and the log and its Compare tab say why."""
    placement = settings.placement
    loaded = []
    for entry in served(models, settings):
        if entry.pipeline_key not in gpu.PIPELINES:
            if not entry.embedded:
                need, have = serving_bytes(entry, placement), mixdq.available_bytes(placement.device)
                if need > have:
                    refused[entry.pipeline_key] = (
                        f"Serving {entry.key}'s images in {placement.dtype_name} on {placement.device} needs about "
                        f"{format_gb(need)} (the model and one quantized copy of its UNet), and this machine has "
                        f"{format_gb(have)} free: it is served from its profile only. A GPU in float16 needs half.")
                    log.warning("not loading %s: %s", entry.key, refused[entry.pipeline_key])
                    continue
            try:
                gpu.load(entry.pipeline_key, entry.spec, placement)
            except mixdq.MixDQError as e:  # weights not here, or not a model we read: the studio still serves
                refused[entry.pipeline_key] = f"{entry.key} could not be loaded at start-up: {e}"
                log.warning("%s", refused[entry.pipeline_key])
                continue
        loaded.append(entry.key)
    log.info("serving images of %s on %s", ", ".join(loaded) or "no model", placement.describe())
    return loaded
