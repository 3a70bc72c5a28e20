"""What the studio shares between users, one entry per model: its profile, cached planners, and
(for models whose weights are here) one pipeline behind a lock.

Per-user choices (budget, locks, metric, ...) never live here: they are `gr.State` and arguments.
Anything that changes the shared pipeline (apply an allocation, toggle BOS, generate) holds the
entry's lock for the whole call, so an image is always made under the allocation it was asked for.
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
from mixdq.inventory import Position, position
from mixdq.metrics import psnr_db, ssim
from mixdq.models import ASSETS

from .plots import Grid

EMBEDDED = "embedded"
PROFILES = ASSETS / "profiles"


@dataclass
class ModelEntry:
    key: str  # what the picker and the API call it: "embedded", "sdxl-turbo", a hub id, a folder
    spec: str | None  # what mixdq.load_pipeline takes (None: the embedded model)
    profile_path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def embedded(self) -> bool:
        """The embedded model (or a profile of it made in the studio): captions, classifier."""
        return self.spec is None

    def sharing_pipeline_of(self, base: ModelEntry) -> ModelEntry:
        """Another profile of `base`'s model uses `base`'s pipeline, lock and FP cache: one model
        in memory however many profiles of it are served."""
        self.lock = base.lock
        self.__dict__["_state"] = base._state
        return self

    @cached_property
    def profile(self) -> mixdq.Profile:
        return mixdq.Profile.load(self.profile_path)

    @cached_property
    def positions(self) -> dict[str, Position]:
        return {name: position(name) for name in self.profile.names}

    @cached_property
    def grid(self) -> Grid:
        return Grid(self.positions)

    @cached_property
    def defaults(self) -> mixdq.GenerationDefaults:
        return mixdq.generation_defaults(self.spec)

    @cached_property
    def _memo(self) -> OrderedDict:
        return OrderedDict()

    def memo(self, key, make):
        """`make()` once per key (a config, or a config and what was derived from it), the 64 most
        recent kept: planners, their Pareto frontiers, the uniform reference points."""
        with _MEMO_LOCK:  # never the pipeline lock: a solve never waits for an image
            value = self._memo.get(key)
        if value is None:  # made outside the lock: a new SDXL frontier must not stall other users
            value = make()  # (two users asking at once may both make it; the results are equal)
        with _MEMO_LOCK:
            self._memo[key] = value
            self._memo.move_to_end(key)
            while len(self._memo) > 64:
                self._memo.popitem(last=False)
        return value

    def planner(self, config: mixdq.PlanConfig) -> mixdq.Planner:
        """One planner per config: its frontier is the expensive part."""
        return self.memo(config, lambda: mixdq.Planner(self.profile, config))

    # --- the pipeline: loaded on first use, calibrated once --------------------------------

    @cached_property
    def _state(self) -> dict:
        return {"pipe": None, "error": None, "bos": True, "fp": OrderedDict()}

    def pipeline(self):
        """The prepared, calibrated pipeline; raises the engine's error (weights missing) as is.
        Call with the lock held."""
        state = self._state
        if state["pipe"] is None:
            pipe = mixdq.load_pipeline(self.spec)
            pipe.set_progress_bar_config(disable=True)
            mixdq.prepare(pipe)
            mixdq.calibrate(pipe, self.defaults.calibration())  # a tqdm bar the page shows
            state["pipe"] = pipe
        return state["pipe"]

    def weights_available(self) -> str | None:
        """None when images can be made, else the message that says what is missing."""
        if self.spec is None:
            return None
        try:
            mixdq.load_unet_config(mixdq.ARCHITECTURES[self.spec].hub_id if self.spec in mixdq.ARCHITECTURES
                                   else self.spec)
        except mixdq.MixDQError as e:
            return str(e)
        return None

    def generate(self, prompts: list[str], seed: int, allocation: mixdq.Allocation | None,
                 bos_aware: bool = True) -> torch.Tensor:
        """Images in [-1, 1] under `allocation` (None: floating point); FP images are cached."""
        key = (tuple(prompts), seed, self.defaults.num_inference_steps)
        with self.lock:
            cache = self._state["fp"]
            if allocation is None and key in cache:
                cache.move_to_end(key)
                return cache[key]
            pipe = self.pipeline()
            mixdq.apply_allocation(pipe, allocation or mixdq.Allocation())
            if allocation is not None and self._state["bos"] != bos_aware:
                mixdq.set_bos_aware(pipe, bos_aware)
                self._state["bos"] = bos_aware
            with torch.no_grad():
                images = mixdq.generate_images(pipe, prompts, first_seed=seed, **self.defaults.as_kwargs()).cpu()
            if allocation is None:
                cache[key] = images
                while len(cache) > 64:
                    cache.popitem(last=False)
            return images

    @cached_property
    def classifier(self):
        """The embedded model's attribute classifier (alignment of an image with its caption)."""
        if self.spec is not None:
            return None
        from mixdq.models import EMBEDDED_CLASSIFIER_DIR
        from mixdq.shapes.classifier import AttributeClassifier

        return AttributeClassifier.load(EMBEDDED_CLASSIFIER_DIR)


_MEMO_LOCK = threading.Lock()


def image_metrics(entry: ModelEntry, fp: torch.Tensor, q: torch.Tensor, prompts: list[str]) -> dict:
    """PSNR and SSIM of quantized against FP images (in [-1, 1]); alignment of both with their
    captions where the model has a classifier and the prompts are data-set captions."""
    fp01, q01 = (fp + 1) / 2, (q + 1) / 2
    out = {"psnr_db": round(psnr_db(fp01, q01), 2), "ssim": round(ssim(fp01, q01).mean().item(), 4)}
    if entry.classifier is not None:
        from mixdq.shapes.classifier import alignment

        try:
            with torch.no_grad():
                out["alignment_fp"] = round(alignment(entry.classifier, fp, prompts).mean().item(), 3)
                out["alignment_quantized"] = round(alignment(entry.classifier, q, prompts).mean().item(), 3)
        except ValueError:  # free text, not a caption of the data set: no ground truth
            pass
    return out


def default_models() -> dict[str, ModelEntry]:
    return {
        EMBEDDED: ModelEntry(EMBEDDED, None, PROFILES / "embedded.json"),
        "sdxl-turbo": ModelEntry("sdxl-turbo", "sdxl-turbo", PROFILES / "sdxl-turbo-mixdq.json"),
    }
