"""What tests share besides fixtures: the repository root, the tiny pipelines' calibration, and
a fixed-seed run. (A module of its own: every folder's conftest.py is importable as `conftest`,
so tests never import from one.)"""

from pathlib import Path

import torch

import mixdq

from tiny_models import PROMPTS

ROOT = Path(__file__).resolve().parent.parent

CALIBRATION = mixdq.CalibrationConfig(prompts=tuple(PROMPTS), num_inference_steps=2, height=32, width=32)


def generate(pipe, prompts=PROMPTS, steps=2, seed=0):
    """Final latents of a fixed-seed run: what every quantized-vs-float comparison looks at."""
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        list(prompts), num_inference_steps=steps, guidance_scale=0.0, height=32, width=32,
        generator=torch.Generator().manual_seed(seed), output_type="latent",
    ).images
