"""What the studio does before it serves a page: pick the models that make images, load them
onto their device (ZeroGPU wants them there at module scope, before any GPU call forks a worker),
with the logs saying what happens."""

from __future__ import annotations

import logging

import mixdq

from . import gpu
from .session import ModelEntry
from .settings import EMBEDDED, MODELS_ENV, StudioSettings, on_space

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


def load_served(models: dict[str, ModelEntry], settings: StudioSettings) -> list[str]:
    """Load every served model; the keys loaded. A full-size model on a Space without a GPU is
    not loaded (its images would take minutes and more memory than CPU basic has): its views
    stay profile-only, and the log says why."""
    placement = settings.placement
    loaded = []
    for entry in served(models, settings):
        if not entry.embedded and on_space() and not placement.on_cuda:
            log.warning("not loading %s: this Space has no GPU (images of a full-size model need one); "
                        "its heatmaps and budget are served from its profile", entry.key)
            continue
        if entry.pipeline_key not in gpu.PIPELINES:
            gpu.load(entry.pipeline_key, entry.spec, placement)
        loaded.append(entry.key)
    log.info("serving images of %s on %s", ", ".join(loaded) or "no model", placement.describe())
    return loaded
