"""An attribute classifier for the shapes world, and the metrics built on it:

- alignment score: the fraction of a prompt's five attributes that the image shows (our CLIP
  score), and
- Fréchet distance between two image sets on the classifier's features (our FID).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mixdq.core.metrics import frechet_distance, psnr_db, ssim
from mixdq.core.serialization import atomic_write_text
from mixdq.embedded.dataset import ATTRIBUTES, Scene, parse_caption

FEATURES = 128


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(), nn.MaxPool2d(2),
    )


class AttributeClassifier(nn.Module):
    """64x64 RGB in [-1, 1] -> one logit vector per attribute. Keeps a 4x4 map before its
    features, so where the shape is survives."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(_block(3, 32, stride=2), _block(32, 64), _block(64, 64))
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, FEATURES), nn.SiLU())
        self.heads = nn.ModuleDict({k: nn.Linear(FEATURES, len(v)) for k, v in ATTRIBUTES.items()})

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(self.body(images))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.embed(images)
        return {k: head(f) for k, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.argmax(1) for k, v in self(images).items()}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), folder / "model.safetensors")
        atomic_write_text(folder / "config.json", json.dumps({"attributes": ATTRIBUTES}, indent=2))

    @classmethod
    def load(cls, folder: Path) -> AttributeClassifier:
        config = json.loads((folder / "config.json").read_text())
        if {k: tuple(v) for k, v in config["attributes"].items()} != ATTRIBUTES:
            raise ValueError(f"{folder}: classifier was trained on other attributes")
        model = cls()
        model.load_state_dict(load_file(folder / "model.safetensors"))
        return model.eval()


def labels(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor([s.labels()[k] for s in scenes]) for k in ATTRIBUTES}


def alignment(classifier: AttributeClassifier, images: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Per image, the fraction of its caption's attributes the classifier sees in it."""
    pred = classifier.predict(images)
    truth = labels([parse_caption(c) for c in captions])
    return torch.stack([(pred[k] == truth[k]).float() for k in ATTRIBUTES]).mean(0)


@torch.no_grad()
def image_frechet_distance(classifier: AttributeClassifier, a: torch.Tensor, b: torch.Tensor) -> float:
    return frechet_distance(classifier.embed(a), classifier.embed(b))


SCORE_HEADER = f"{'alignment':>9} {'Frechet':>8} {'PSNR dB':>8} {'SSIM':>6}"


@torch.no_grad()
def scores_against(classifier: AttributeClassifier, reference: torch.Tensor, images: torch.Tensor,
                   captions: list[str]) -> dict[str, float]:
    """How a set of images (in [-1, 1]) compares with the float model's images of the same
    captions and seeds: alignment with the captions, and Fréchet distance, PSNR and SSIM
    against the reference."""
    ref01, img01 = (reference + 1) / 2, (images + 1) / 2
    return dict(
        alignment=alignment(classifier, images, captions).mean().item(),
        frechet=image_frechet_distance(classifier, reference, images),
        psnr=psnr_db(ref01, img01),
        ssim=ssim(ref01, img01).mean().item(),
    )


def format_scores(s: dict[str, float]) -> str:
    return f"{s['alignment']:9.3f} {s['frechet']:8.3f} {s['psnr']:8.2f} {s['ssim']:6.3f}"
