"""What the studio shares between users, one entry per model: its profile, cached planners, and
its FP images. Its pipeline lives behind the GPU boundary (`app.gpu`), which takes the allocation
of each image as data, under one lock per pipeline, so an image is always made under the
allocation it was asked for.

Per-user choices (budget, locks, metric, ...) never live here: they are `gr.State` and arguments.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel  # noqa: F401  (diffusers' lazy imports race when threads of the server first touch them)

import mixdq
from mixdq.deploy.measure import module_bytes
from mixdq.inventory import Position, position
from mixdq.metrics import psnr_db, ssim
from mixdq.models import ASSETS

from . import gpu, settings
from .plots import Grid
from .settings import EMBEDDED, MODELS_ENV, on_space

PROFILES = ASSETS / "profiles"


@dataclass
class ModelEntry:
    key: str  # what the picker and the API call it: "embedded", "sdxl-turbo", a hub id, a folder
    spec: str | None  # what mixdq.load_pipeline takes (None: the embedded model)
    profile_path: Path

    @property
    def embedded(self) -> bool:
        """The embedded model (or a profile of it made in the studio): captions, classifier."""
        return self.spec is None

    def sharing_pipeline_of(self, base: ModelEntry) -> ModelEntry:
        """Another profile of `base`'s model shares its FP image cache (and, by its spec, its
        pipeline: one model in memory however many profiles of it are served)."""
        self.__dict__["_fp"] = base._fp
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
        with _MEMO_LOCK:
            value = self._memo.get(key)
        if value is None:  # made outside the lock: a new SDXL frontier must not stall other users
            value = make()  # (two users asking at once may both make it; the results are equal)
        with _MEMO_LOCK:
            self._memo[key] = value
            self._memo.move_to_end(key)
            while len(self._memo) > 64:
                self._memo.popitem(last=False)
        return value

    def memoized(self, key):
        """What `memo` made for `key`, or None."""
        with _MEMO_LOCK:
            return self._memo.get(key)

    def planner(self, config: mixdq.PlanConfig) -> mixdq.Planner:
        """One planner per config: its frontier is the expensive part."""
        return self.memo(config, lambda: mixdq.Planner(self.profile, config))

    # --- images: made by the GPU boundary (app.gpu), FP images cached here --------------------

    @property
    def pipeline_key(self) -> str:
        """Which loaded pipeline makes this entry's images (every profile of a model shares one)."""
        return EMBEDDED if self.spec is None else self.spec

    @cached_property
    def _fp(self) -> OrderedDict:
        return OrderedDict()

    def images_refused(self) -> str | None:
        """None when this studio makes images of the model, else the message that says why not
        and what to do."""
        if self.pipeline_key in gpu.PIPELINES or self.embedded:
            return None
        if self.pipeline_key in refused:
            return refused[self.pipeline_key]
        if on_space():
            return (f"This Space serves {self.key} from its profile only (heatmaps, budget, layers). Its owner can "
                    f"add it to {MODELS_ENV} on a GPU Space (fp16 weights downloaded at build time).")
        return (f"Images of {self.key} need its weights loaded when the studio starts: "
                f"`python app.py --model {self.key}` (or {MODELS_ENV}=embedded,{self.key}); the first start "
                "downloads them unless they are in the Hugging Face cache. Heatmaps and the budget work without.")

    def model_bytes(self, placement: mixdq.Placement) -> tuple[int, int]:
        """(the whole pipeline, its UNet) in bytes: measured where the pipeline is loaded, else
        estimated from the UNet's parameter count, with text encoders and VAE at half the UNet's
        (SDXL-Turbo 0.90 B beside a 2.57 B UNet, SD-Turbo 0.42 B beside 0.87 B: the larger share)."""
        if self.pipeline_key in gpu.PIPELINES:
            loaded = gpu.PIPELINES[self.pipeline_key]
            return loaded.pipeline_bytes(), module_bytes(loaded.pipe.unet)
        element = torch.empty((), dtype=placement.dtype).element_size()
        unet = mixdq.load_inventory(self.spec).total_params * element
        return int(unet * 1.5), unet

    def loaded(self) -> gpu.Loaded:
        """The model's pipeline; the embedded model loads on first use (a second), other models
        only at start-up (`app.runtime.start`)."""
        if (refused := self.images_refused()) is not None:
            raise mixdq.ModelNotFoundError(refused)
        with _LOAD_LOCK:
            if self.pipeline_key not in gpu.PIPELINES:
                gpu.load(self.pipeline_key, self.spec, settings.current().placement)
        return gpu.PIPELINES[self.pipeline_key]

    def images(self, jobs: list[Job]) -> list[torch.Tensor]:
        """Images in [-1, 1] of each job, from one GPU call (none when every one is a cached FP
        image): so Compare, Measure and the grid each ask for the GPU once."""
        loaded = self.loaded()
        steps = loaded.defaults.num_inference_steps
        with _FP_LOCK:
            cached = {i: self._fp[job.fp_key(steps)] for i, job in enumerate(jobs)
                      if job.allocation is None and job.fp_key(steps) in self._fp}
        todo = [i for i in range(len(jobs)) if i not in cached]
        made = {}
        if todo:
            result = gpu.render(loaded.key, [jobs[i].plain() for i in todo], gpu.RANGES.get(loaded.key))
            gpu.keep_ranges(loaded.key, result["ranges"])
            made = dict(zip(todo, result["images"]))
        with _FP_LOCK:
            for i, images in made.items():
                if jobs[i].allocation is None:
                    self._fp[jobs[i].fp_key(steps)] = images
                    while len(self._fp) > 64:
                        self._fp.popitem(last=False)
        return [cached[i] if i in cached else made[i] for i in range(len(jobs))]

    def export(self, kind: str, allocation: mixdq.Allocation, self_attention_bits: int | None = None) -> dict:
        """The allocation made runnable ("deployed" or "openvino"), zipped: one GPU call; refused,
        saying what it needs, where memory is short. Returns `app.gpu.export`'s dict."""
        loaded = self.loaded()
        result = gpu.export(loaded.key, kind, allocation.to_dict(), self_attention_bits, gpu.RANGES.get(loaded.key))
        gpu.keep_ranges(loaded.key, result.pop("ranges"))
        return result

    @cached_property
    def classifier(self):
        """The embedded model's attribute classifier (alignment of an image with its caption)."""
        if self.spec is not None:
            return None
        from mixdq.models import EMBEDDED_CLASSIFIER_DIR
        from mixdq.shapes.classifier import AttributeClassifier

        return AttributeClassifier.load(EMBEDDED_CLASSIFIER_DIR)


refused: dict[str, str] = {}  # pipeline key -> why start-up did not load it (memory)
_MEMO_LOCK = threading.Lock()  # never a pipeline's lock: a solve never waits for an image
_FP_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Job:
    """Images of `prompts` (prompt i with seed `seed + i`) under `allocation` (None: floating point)."""

    prompts: tuple[str, ...]
    seed: int
    allocation: mixdq.Allocation | None = None
    bos_aware: bool = True

    def fp_key(self, steps: int) -> tuple:
        return (self.prompts, self.seed, steps)

    def plain(self) -> dict:
        """As `app.gpu.render` takes it: plain data, picklable into a ZeroGPU worker."""
        allocation = None if self.allocation is None else self.allocation.to_dict()
        return {"prompts": list(self.prompts), "seed": self.seed, "allocation": allocation, "bos_aware": self.bos_aware}


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
