import os

# Tests never reach the hub: an unknown hub id must fail fast and clearly, as on an offline laptop.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# profiles the studio measures or receives in tests go to a throwaway folder, not ~/.cache
import tempfile  # noqa: E402

os.environ["MIXDQ_STUDIO_CACHE"] = tempfile.mkdtemp(prefix="mixdq-studio-test-")  # never a developer's own

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

torch.set_num_threads(1)

import mixdq  # noqa: E402

from tiny_models import PROMPTS, tiny_sd, tiny_sdxl  # noqa: E402

CALIBRATION = mixdq.CalibrationConfig(prompts=tuple(PROMPTS), num_inference_steps=2, height=32, width=32)


def generate(pipe, prompts=PROMPTS, steps=2, seed=0):
    """Final latents of a fixed-seed run: what every quantized-vs-float comparison looks at."""
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        list(prompts), num_inference_steps=steps, guidance_scale=0.0, height=32, width=32,
        generator=torch.Generator().manual_seed(seed), output_type="latent",
    ).images


@pytest.fixture(params=["sd", "sdxl"])
def pipe(request):
    """A fresh tiny pipeline of each family (tests quantize it in place)."""
    return {"sd": tiny_sd, "sdxl": tiny_sdxl}[request.param]()


@pytest.fixture
def sd_pipe():
    return tiny_sd()
