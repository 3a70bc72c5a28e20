"""Activation ranges, recorded by running the floating-point model on calibration prompts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from mixdq.core.errors import ConfigError
from mixdq.core.logs import quiet_prompt_noise
from mixdq.models.generation import CalibrationConfig, quiet_progress
from mixdq.models.prompts import warn_about_prompts
from mixdq.quant.layers import Model, require_layers


@contextmanager
def calibrating(model: Model) -> Iterator[None]:
    """Within this block every forward pass of the UNet runs in floating point and records the
    input range of each layer. Ranges start afresh; they are averaged over calls."""
    layers = require_layers(model, "calibrate").values()
    for layer in layers:
        layer.reset_observers()
        layer.observing = True
    try:
        yield
    finally:
        for layer in layers:
            layer.observing = False


def calibrate(pipe, calibration: CalibrationConfig = CalibrationConfig(), progress: bool = True) -> None:
    """Run `pipe` on the calibration prompts, over every timestep its sampler uses."""
    prompts = list(calibration.prompts)
    batches = [prompts[i : i + calibration.batch_size] for i in range(0, len(prompts), calibration.batch_size)]
    with quiet_progress(pipe), quiet_prompt_noise(pipe), calibrating(pipe), torch.no_grad():  # one bar over batches
        warn_about_prompts(pipe, prompts)  # once the model is known to be calibratable
        for i, batch in enumerate(tqdm(batches, desc="calibrating", disable=not progress)):
            pipe(
                prompt=batch,
                num_inference_steps=calibration.num_inference_steps,
                guidance_scale=calibration.guidance_scale,
                height=calibration.height,
                width=calibration.width,
                generator=torch.Generator("cpu").manual_seed(calibration.seed + i),
                output_type="latent",
            )


OBSERVERS = ("observer", "observer_no_bos", "output_observer")  # a layer's input, input without BOS, output


def calibration_ranges(model: Model) -> dict:
    """Every layer's recorded ranges as plain data (JSON, picklable): small enough to keep per
    model on disk and to hand to another process, which then needs no calibration run."""
    layers = require_layers(model, "calibration_ranges")
    return {
        "version": 1,
        "layers": {
            name: {kind: [obs.lo, obs.hi, obs.calls] for kind in OBSERVERS
                   if (obs := getattr(layer, kind)) is not None and obs.calls}
            for name, layer in layers.items()
        },
    }


def set_calibration_ranges(model: Model, ranges: dict) -> None:
    """Install ranges from `calibration_ranges` (of the same model and activation config)."""
    layers = require_layers(model, "set_calibration_ranges")
    saved = ranges.get("layers") if isinstance(ranges, dict) and ranges.get("version") == 1 else None
    if not isinstance(saved, dict) or set(saved) != set(layers):
        raise ConfigError("these calibration ranges are not of this model (its layers differ): calibrate it "
                          "with mixdq.calibrate(pipe, CalibrationConfig(...)) instead")
    for name, layer in layers.items():
        for kind in OBSERVERS:
            obs = getattr(layer, kind)
            if obs is None:
                continue
            obs.reset()
            if kind in saved[name]:
                lo, hi, calls = saved[name][kind]
                obs.lo, obs.hi, obs.calls = float(lo), float(hi), int(calls)
        layer.configure(layer.config)  # drops parameters derived from the old ranges
