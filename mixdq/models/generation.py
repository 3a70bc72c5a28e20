"""Images from a pipeline with one fixed seed per prompt, so float and quantized runs compare
image by image."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from mixdq.core.errors import ConfigError
from mixdq.core.logs import quiet_prompt_noise
from mixdq.core.serialization import JsonConfig
from mixdq.models.prompts import warn_about_prompts

DEFAULT_CALIBRATION_PROMPTS: tuple[str, ...] = (
    "a photograph of an astronaut riding a horse",
    "a red double-decker bus driving down a city street",
    "a bowl of fruit on a wooden kitchen table",
    "a cat sleeping on a sunny windowsill",
    "a lighthouse on a rocky coast at sunset",
    "two people skiing down a snowy mountain",
    "a plate of pasta with tomato sauce and basil",
    "an old steam train crossing a stone bridge",
)


@dataclass(frozen=True)
class CalibrationConfig(JsonConfig):
    """The pipeline runs that record activation ranges: every timestep of every prompt."""

    prompts: tuple[str, ...] = DEFAULT_CALIBRATION_PROMPTS
    num_inference_steps: int = 1
    guidance_scale: float = 0.0
    seed: int = 0
    batch_size: int = 8
    height: int | None = None
    width: int | None = None

    def __post_init__(self):
        if not self.prompts:
            raise ConfigError("calibration needs at least one prompt")
        if self.num_inference_steps < 1 or self.batch_size < 1:
            raise ConfigError("num_inference_steps and batch_size must be at least 1")


@contextmanager
def quiet_progress(pipe) -> Iterator[None]:
    """Silence the pipeline's per-call progress bar, for callers that show one bar over many calls."""
    saved = dict(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(disable=True)
    try:
        yield
    finally:
        pipe._progress_bar_config = saved


def generate_images(pipe, prompts: list[str], first_seed: int = 0, batch_size: int = 32,
                    check_prompts: bool = True, **kwargs) -> torch.Tensor:
    """N x 3 x H x W images in [-1, 1]; prompt i is sampled with seed `first_seed + i`,
    whatever the batching. `kwargs` go to the pipeline call (steps, guidance, size).
    A prompt the model cannot read in full gets one `PromptWarning` saying what is lost
    (`check_prompts=False` for callers that run the same prompts many times and checked them)."""
    if check_prompts:
        warn_about_prompts(pipe, prompts)
    out = []
    with quiet_prompt_noise(pipe):
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            gens = [torch.Generator().manual_seed(first_seed + start + i) for i in range(len(chunk))]
            out.append(pipe(chunk, generator=gens, output_type="pt", **kwargs).images * 2 - 1)
    return torch.cat(out)
