"""A model's pipeline as the pages see it: loaded on first use (the embedded model) or at start-up
(`app.startup`), used through the GPU boundary (`app.gpu`), which takes the allocation of each
image as data under one lock per pipeline, so an image is always made under the allocation it was
asked for; and its FP images, cached. Every profile of one model shares one `ModelPipeline`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import torch

import mixdq
from mixdq.embedded.classifier import AttributeClassifier
from mixdq.embedded.paths import EMBEDDED_CLASSIFIER_DIR

from . import gpu, settings
from .settings import EMBEDDED, MODELS_ENV, on_space

refused: dict[str, str] = {}  # pipeline key -> why start-up did not load it (memory)
_FP_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()
FP_IMAGES_KEPT = 64


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


class Rendered(NamedTuple):
    """What one job gives: images in [-1, 1] (N x 3 x H x W) and the UNet's outputs at every
    step, flattened (what the SQNR of a sensitivity probe compares)."""

    images: torch.Tensor
    unet: torch.Tensor


@dataclass(eq=False)
class ModelPipeline:
    """One model's pipeline (`spec`: what mixdq.load_pipeline takes, None: the embedded model) and
    its FP images, most recent last. `name` in the methods is the model as the user picked it
    (a profile's key), for the messages."""

    spec: str | None
    fp_images: OrderedDict = field(default_factory=OrderedDict, repr=False)
    seconds_per_image: float | None = None  # as the last images took here (calibration included)

    @property
    def key(self) -> str:
        """Which loaded pipeline makes the images (`app.gpu.PIPELINES`)."""
        return EMBEDDED if self.spec is None else self.spec

    def refused(self, name: str) -> str | None:
        """None when this studio makes images of the model, else the message that says why not
        and what to do."""
        if self.key in gpu.PIPELINES or self.spec is None:
            return None
        if self.key in refused:
            return refused[self.key]
        if on_space():
            return (f"This Space serves {name} from its profile only (heatmaps, budget, layers). Its owner can "
                    f"add it to {MODELS_ENV} on a GPU Space (fp16 weights downloaded at build time).")
        return (f"Images of {name} need its weights loaded when the studio starts: "
                f"`python app.py --model {name}` (or {MODELS_ENV}=embedded,{name}); the first start "
                "downloads them unless they are in the Hugging Face cache. Heatmaps and the budget work without.")

    def model_bytes(self, placement: mixdq.Placement) -> tuple[int, int]:
        """(the whole pipeline, its UNet) in bytes: measured where the pipeline is loaded, else
        estimated from the UNet's parameter count, with text encoders and VAE at half the UNet's
        (SDXL-Turbo 0.90 B beside a 2.57 B UNet, SD-Turbo 0.42 B beside 0.87 B: the larger share)."""
        if self.key in gpu.PIPELINES:
            loaded = gpu.PIPELINES[self.key]
            return loaded.pipeline_bytes(), mixdq.deploy.module_bytes(loaded.pipe.unet)
        element = torch.empty((), dtype=placement.dtype).element_size()
        unet = mixdq.load_inventory(self.spec).total_params * element
        return int(unet * 1.5), unet

    def loaded(self, name: str) -> gpu.Loaded:
        """The pipeline; the embedded model loads on first use (a second), other models only at
        start-up (`app.startup`)."""
        if (why := self.refused(name)) is not None:
            raise mixdq.ModelNotFoundError(why)
        with _LOAD_LOCK:
            if self.key not in gpu.PIPELINES:
                gpu.load(self.key, self.spec, settings.current().placement)
        return gpu.PIPELINES[self.key]

    def images(self, name: str, jobs: list[Job]) -> list[torch.Tensor]:
        """Images in [-1, 1] of each job (`rendered`'s images)."""
        return [r.images for r in self.rendered(name, jobs)]

    def rendered(self, name: str, jobs: list[Job]) -> list[Rendered]:
        """Each job's images and UNet outputs, from one GPU call (none when every one is a cached
        FP image): so Compare, Measure and the grid each ask for the GPU once."""
        loaded = self.loaded(name)
        steps = loaded.defaults.num_inference_steps
        with _FP_LOCK:
            cached = {i: self.fp_images[job.fp_key(steps)] for i, job in enumerate(jobs)
                      if job.allocation is None and job.fp_key(steps) in self.fp_images}
        todo = [i for i in range(len(jobs)) if i not in cached]
        made = {}
        if todo:
            started = time.perf_counter()
            result = gpu.render(loaded.key, [jobs[i].plain() for i in todo], gpu.RANGES.get(loaded.key))
            self.seconds_per_image = (time.perf_counter() - started) / sum(len(jobs[i].prompts) for i in todo)
            gpu.keep_ranges(loaded.key, result["ranges"])
            made = {i: Rendered(images, unet) for i, images, unet in zip(todo, result["images"], result["unet"])}
        with _FP_LOCK:
            for i, rendered in made.items():
                if jobs[i].allocation is None:
                    self.fp_images[jobs[i].fp_key(steps)] = rendered
                    while len(self.fp_images) > FP_IMAGES_KEPT:
                        self.fp_images.popitem(last=False)
        return [cached[i] if i in cached else made[i] for i in range(len(jobs))]

    def on_gpu(self) -> bool:
        """Whether this model's images are made on a GPU (seconds) rather than the CPU."""
        return self.key in gpu.PIPELINES and gpu.PIPELINES[self.key].placement.device.startswith("cuda")

    def expected_seconds(self, images: int) -> str:
        """How long `images` images should take here, in words, from the last ones made."""
        if self.seconds_per_image is None:
            return ("the first images of a full-size model on a CPU take a minute or more (activation ranges "
                    "are calibrated first)")
        each = self.seconds_per_image
        return f"about {images * each:.0f} s here ({each:.1f} s per image last time)"

    def export(self, name: str, kind: str, allocation: mixdq.Allocation, self_attention_bits: int | None) -> dict:
        """The allocation made runnable ("deployed" or "openvino"), zipped: one GPU call; refused,
        saying what it needs, where memory is short. Returns `app.gpu.export`'s dict."""
        loaded = self.loaded(name)
        result = gpu.export(loaded.key, kind, allocation.to_dict(), self_attention_bits, gpu.RANGES.get(loaded.key))
        gpu.keep_ranges(loaded.key, result.pop("ranges"))
        return result

    @cached_property
    def classifier(self):
        """The embedded model's attribute classifier (alignment of an image with its caption)."""
        if self.spec is not None:
            return None
        return AttributeClassifier.load(EMBEDDED_CLASSIFIER_DIR)
