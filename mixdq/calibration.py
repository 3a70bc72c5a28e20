"""Activation ranges, recorded by running the floating-point model on calibration prompts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from .config import CalibrationConfig
from .generation import quiet_progress
from .layers import Model, require_layers
from .logs import quiet_prompt_noise
from .prompts import warn_about_prompts


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
