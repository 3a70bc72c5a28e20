"""The models the studio serves, shared by all users: one `ModelEntry` per profile, with its cached
planners; its pipeline and FP images are its `ModelPipeline` (`app.pipelines`), one per model
however many profiles of it are served.

Per-user choices (budget, locks, metric, ...) never live here: they are `gr.State` and arguments.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel  # noqa: F401  (diffusers' lazy imports race when threads of the server first touch them)

import mixdq
from mixdq.core.assets import ASSETS
from mixdq.models.inventory import Position, position

from . import gpu
from .pipelines import Job, ModelPipeline, Rendered
from .settings import EMBEDDED

PROFILES = ASSETS / "profiles"
MEMO_KEPT = 64
_MEMO_LOCK = threading.Lock()  # never a pipeline's lock: a solve never waits for an image


@dataclass
class ModelEntry:
    key: str  # what the picker and the API call it: "embedded", "sdxl-turbo", a hub id, a folder
    spec: str | None  # what mixdq.load_pipeline takes (None: the embedded model)
    profile_path: Path
    pipeline: ModelPipeline = field(init=False, repr=False, compare=False)
    _memo: OrderedDict = field(init=False, repr=False, compare=False, default_factory=OrderedDict)

    def __post_init__(self):
        self.pipeline = ModelPipeline(self.spec)

    @property
    def embedded(self) -> bool:
        """The embedded model (or a profile of it made in the studio): captions, classifier."""
        return self.spec is None

    def sharing_pipeline_of(self, base: ModelEntry) -> ModelEntry:
        """Another profile of `base`'s model shares its pipeline and FP images: one model in
        memory however many profiles of it are served."""
        self.pipeline = base.pipeline
        return self

    @cached_property
    def profile(self) -> mixdq.Profile:
        return mixdq.Profile.load(self.profile_path)

    @cached_property
    def positions(self) -> dict[str, Position]:
        return {name: position(name) for name in self.profile.names}

    @cached_property
    def defaults(self) -> mixdq.GenerationDefaults:
        return mixdq.generation_defaults(self.spec)

    def memo(self, key, make):
        """`make()` once per key (a config, or a config and what was derived from it), the 64 most
        recent kept: planners, their Pareto frontiers, the uniform reference points."""
        with _MEMO_LOCK:
            value = self._memo.get(key)
        if value is None:  # made outside the lock: a new SDXL frontier must not stall other users
            value = make()  # (two users asking at once may both make it; the results are equal)
        with _MEMO_LOCK:
            self._memo[key] = value
            self._memo.move_to_end(key)
            while len(self._memo) > MEMO_KEPT:
                self._memo.popitem(last=False)
        return value

    def memoized(self, key):
        """What `memo` made for `key`, or None."""
        with _MEMO_LOCK:
            return self._memo.get(key)

    def planner(self, config: mixdq.PlanConfig) -> mixdq.Planner:
        """One planner per config: its frontier is the expensive part."""
        return self.memo(config, lambda: mixdq.Planner(self.profile, config))

    # --- images: the model's pipeline (app.pipelines), named by this entry's key in messages -----

    @property
    def pipeline_key(self) -> str:
        """Which loaded pipeline makes this entry's images (every profile of a model shares one)."""
        return self.pipeline.key

    def images_refused(self) -> str | None:
        """None when this studio makes images of the model, else the message that says why not
        and what to do."""
        return self.pipeline.refused(self.key)

    def model_bytes(self, placement: mixdq.Placement) -> tuple[int, int]:
        """(the whole pipeline, its UNet) in bytes (`ModelPipeline.model_bytes`)."""
        return self.pipeline.model_bytes(placement)

    def loaded(self) -> gpu.Loaded:
        return self.pipeline.loaded(self.key)

    def images(self, jobs: list[Job]) -> list[torch.Tensor]:
        return self.pipeline.images(self.key, jobs)

    def rendered(self, jobs: list[Job]) -> list[Rendered]:
        return self.pipeline.rendered(self.key, jobs)

    def export(self, kind: str, allocation: mixdq.Allocation, self_attention_bits: int | None = None) -> dict:
        return self.pipeline.export(self.key, kind, allocation, self_attention_bits)

    @property
    def classifier(self):
        """The embedded model's attribute classifier, or None."""
        return self.pipeline.classifier


def default_models() -> dict[str, ModelEntry]:
    return {
        EMBEDDED: ModelEntry(EMBEDDED, None, PROFILES / "embedded.json"),
        "sdxl-turbo": ModelEntry("sdxl-turbo", "sdxl-turbo", PROFILES / "sdxl-turbo-mixdq.json"),
    }
