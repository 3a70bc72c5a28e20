"""The GPU boundary: the prepared pipelines, built once at start-up, and the functions that use
them, which take and return plain data only (strings, numbers, dicts, lists, CPU tensors).

Why so strict: on a ZeroGPU Space `spaces.GPU` runs each decorated function in a forked worker
that holds a GPU for that one call; arguments and results are pickled, and whatever the worker
builds dies with it. So pipelines are loaded and moved to their device here, at start-up, before
any fork (ZeroGPU streams them to the worker); calibration ranges come back from the worker as
data, and the main process keeps them (and saves them per model, so a restart does not calibrate
again); and each call asks for a duration that fits its work. Everywhere else the decorator is
not applied, and the same functions run in this process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

import mixdq
from mixdq.core.device import release_freed_memory
from mixdq.core.serialization import atomic_write_text
from mixdq.deploy import module_bytes

from . import exports
from .settings import cache_root, zero_gpu

if zero_gpu():  # the Spaces runtime's package (every Space has it); only ZeroGPU needs it
    import spaces

log = logging.getLogger("mixdq.studio")


@dataclass
class Loaded:
    """A model's prepared pipeline on its device, and how it is sampled."""

    key: str
    spec: str | None
    pipe: object
    placement: mixdq.Placement
    defaults: mixdq.GenerationDefaults

    def pipeline_bytes(self) -> int:
        return sum(module_bytes(m) for m in self.pipe.components.values() if isinstance(m, torch.nn.Module))


PIPELINES: dict[str, Loaded] = {}  # model key -> its pipeline (main process; forked workers inherit it)
RANGES: dict[str, dict] = {}  # model key -> calibration ranges (plain data, handed to each GPU call)
_LOCKS: dict[tuple[int, str], threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def lock_for(key: str) -> threading.Lock:
    """The lock that serialises work on one pipeline, per process: a forked worker gets fresh
    ones, never a copy of a lock some thread of the parent held at the fork."""
    with _LOCKS_LOCK:
        return _LOCKS.setdefault((os.getpid(), key), threading.Lock())


def ranges_path(loaded: Loaded) -> Path:
    """Calibration ranges are kept per model and calibration setting."""
    config = loaded.defaults.calibration()
    digest = hashlib.sha256(config.to_json().encode()).hexdigest()[:10]
    name = (loaded.spec or "embedded").strip("/").replace("/", "_")
    return cache_root() / "calibration" / f"{name}-{digest}.json"


def load(key: str, spec: str | None, placement: mixdq.Placement) -> Loaded:
    """Load `spec` onto its device, prepare it for switchable quantization, and install saved
    calibration ranges (start-up work: on ZeroGPU this runs at module scope, before any fork)."""
    log.info("loading %s on %s", spec or "the embedded model", placement.describe())
    pipe = mixdq.load_pipeline(spec, device=placement.device, dtype=placement.dtype)
    pipe.set_progress_bar_config(disable=True)
    mixdq.prepare(pipe)
    loaded = PIPELINES[key] = Loaded(key, spec, pipe, placement, mixdq.generation_defaults(spec))
    path = ranges_path(loaded)
    if path.exists():
        try:
            _install(loaded, json.loads(path.read_text()))
            log.info("calibration ranges of %s read from %s", key, path)
        except (ValueError, mixdq.MixDQError) as e:  # damaged, or of other weights: calibrate again
            log.warning("ignoring %s (%s); %s is calibrated on its first image", path, e, key)
    return loaded


def _install(loaded: Loaded, ranges: dict) -> None:
    with lock_for(loaded.key):
        mixdq.set_calibration_ranges(loaded.pipe, ranges)
    RANGES[loaded.key] = ranges


def keep_ranges(key: str, ranges: dict | None) -> None:
    """Ranges a GPU call measured: installed here (later workers inherit them) and saved."""
    if ranges is None or key not in PIPELINES:
        return
    loaded = PIPELINES[key]
    _install(loaded, ranges)
    path = ranges_path(loaded)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(ranges))


def pipeline(key: str) -> Loaded:
    try:
        return PIPELINES[key]
    except KeyError:
        raise mixdq.ConfigError(f"{key} is not loaded in this studio") from None


# --- work done on the GPU ----------------------------------------------------------------------

# Seconds of GPU time per image, generous: SDXL-Turbo at 512 px, one step, is well under a second
# on the GPUs ZeroGPU lends; calibration runs the pipeline once per prompt.
SECONDS_PER_IMAGE = {"embedded": 0.2}
FULL_SIZE_SECONDS_PER_IMAGE = 1.5


def _per_image(key: str) -> float:
    return SECONDS_PER_IMAGE.get(key, FULL_SIZE_SECONDS_PER_IMAGE)


def render_seconds(key: str, jobs: list[dict], ranges: dict | None) -> int:
    """The duration a `render` call asks ZeroGPU for."""
    n = sum(len(job["prompts"]) for job in jobs)
    calibration = 0 if ranges is not None else len(PIPELINES[key].defaults.prompts) if key in PIPELINES else 32
    return int(10 + (n + calibration) * _per_image(key))


def export_seconds(key: str, kind: str, allocation: dict, self_attention_bits: int | None,
                   ranges: dict | None) -> int:
    full = key not in SECONDS_PER_IMAGE
    return (240 if full else 60) + (0 if ranges is not None else render_seconds(key, [], None))


def on_gpu(duration):
    """`spaces.GPU(duration=...)` on ZeroGPU; elsewhere the function itself."""

    def wrap(fn):
        if zero_gpu():
            return spaces.GPU(duration=duration)(fn)
        return fn

    return wrap


def _calibrated(loaded: Loaded, ranges: dict | None) -> dict | None:
    """Make sure the pipeline has ranges; the ranges when this call had to measure them."""
    if mixdq.is_calibrated(loaded.pipe):
        return None
    if ranges is not None:
        mixdq.set_calibration_ranges(loaded.pipe, ranges)
        return None
    mixdq.calibrate(loaded.pipe, loaded.defaults.calibration())  # a tqdm bar the page shows
    return mixdq.calibration_ranges(loaded.pipe)


@on_gpu(render_seconds)
def render(key: str, jobs: list[dict], ranges: dict | None) -> dict:
    """Images for each job, in [-1, 1], as CPU float tensors.

    A job: {"prompts": [...], "seed": int, "allocation": Allocation.to_dict() or None for
    floating point, "bos_aware": bool}. Returns {"images": [tensor per job], "unet": [the UNet's
    outputs at every step, flattened, per job], "ranges": the calibration ranges if this call
    measured them, else None}.
    """
    model = pipeline(key)
    with lock_for(key):
        new_ranges = _calibrated(model, ranges)
        pipe, out, unet = model.pipe, [], []
        for job in jobs:
            allocation = job["allocation"]
            mixdq.apply_allocation(pipe, mixdq.Allocation.from_dict(allocation or {}))
            bos = bool(job.get("bos_aware", True))
            if allocation is not None and mixdq.quant_config(pipe).bos_aware != bos:
                mixdq.set_bos_aware(pipe, bos)
            with torch.no_grad(), mixdq.unet_outputs(pipe) as outputs:
                images = mixdq.generate_images(pipe, list(job["prompts"]), first_seed=int(job["seed"]),
                                               **model.defaults.as_kwargs())
            out.append(images.float().cpu())
            unet.append(torch.cat([o.flatten() for o in outputs]))
        return {"images": out, "unet": unet, "ranges": new_ranges}


@on_gpu(export_seconds)
def export(key: str, kind: str, allocation: dict, self_attention_bits: int | None, ranges: dict | None) -> dict:
    """The allocation deployed ("deployed") or exported for OpenVINO ("openvino"), zipped in a
    fresh temporary folder: {"archive": path, ..., "ranges": as for `render`}."""
    model = pipeline(key)
    with lock_for(key):
        new_ranges = _calibrated(model, ranges)
        # the export packs its own quantized copy: the studio's is dropped so that one copy is held,
        # not two (the next image quantizes again: seconds on a CPU at full size, far less on a GPU)
        mixdq.clear_weight_cache(model.pipe)
        release_freed_memory()
        exports.require_fork_memory(model.pipe, kind)
        fork = exports.allocated_fork(model.pipe, mixdq.Allocation.from_dict(allocation), self_attention_bits)
    try:
        if kind == "deployed":
            result = exports.deployed_zip(fork, model.spec)
        elif kind == "openvino":
            result = exports.openvino_zip(fork, model.spec, self_attention_bits)
        else:
            raise mixdq.ConfigError(f"unknown export {kind!r}: deployed or openvino")
    finally:
        del fork
        release_freed_memory()  # the packed copy is gone: the studio's memory goes back to what it was
    return result | {"ranges": new_ranges}
