"""A procedural, deterministic data set of captioned shape images.

Every image shows one shape with five attributes, each named in its caption:
"a small red circle on the left, blue background". The caption space has 2,600+ distinct
captions; a fixed tenth of them (by hash) is held out of training for evaluation.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.72, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.96, 0.86, 0.10),
    "purple": (0.58, 0.20, 0.80),
    "orange": (1.00, 0.55, 0.05),
    "white": (0.97, 0.97, 0.97),
    "black": (0.05, 0.05, 0.05),
}
BACKGROUNDS = ("white", "black", "gray", "blue", "green", "yellow")
BACKGROUND_RGB = {**COLOURS, "gray": (0.50, 0.50, 0.50)}
POSITIONS = {  # phrase -> centre (x, y) as fractions of the image
    "on the left": (0.27, 0.5),
    "on the right": (0.73, 0.5),
    "at the top": (0.5, 0.27),
    "at the bottom": (0.5, 0.73),
    "in the middle": (0.5, 0.5),
}
SIZES = {"small": 0.12, "large": 0.21}  # radius as a fraction of the image
ATTRIBUTES = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "background": BACKGROUNDS,
    "position": tuple(POSITIONS),
    "size": tuple(SIZES),
}
HELD_OUT_FRACTION = 0.1


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    background: str
    position: str
    size: str

    @property
    def caption(self) -> str:
        return f"a {self.size} {self.colour} {self.shape} {self.position}, {self.background} background"

    @property
    def held_out(self) -> bool:
        digest = hashlib.sha256(self.caption.encode()).digest()
        return int.from_bytes(digest[:4], "little") / 2**32 < HELD_OUT_FRACTION

    def labels(self) -> dict[str, int]:
        return {name: ATTRIBUTES[name].index(getattr(self, name)) for name in ATTRIBUTES}


@lru_cache(maxsize=1)
def all_scenes() -> tuple[Scene, ...]:
    """Every valid scene (a shape never has its background's colour), in a fixed order."""
    return tuple(
        Scene(shape, colour, bg, pos, size)
        for shape, colour, bg, pos, size in itertools.product(*ATTRIBUTES.values())
        if colour != bg
    )


@lru_cache(maxsize=2)
def split(held_out: bool) -> tuple[Scene, ...]:
    return tuple(s for s in all_scenes() if s.held_out == held_out)


@lru_cache(maxsize=1)
def _by_caption() -> dict[str, Scene]:
    return {scene.caption: scene for scene in all_scenes()}


def parse_caption(caption: str) -> Scene:
    try:
        return _by_caption()[caption]
    except KeyError:
        raise ValueError(f"not a caption of the shapes data set: {caption!r}") from None


def _mask(shape: str, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    ax, ay = np.abs(x), np.abs(y)
    if shape == "circle":
        return x * x + y * y <= r * r
    if shape == "square":
        return (ax <= 0.82 * r) & (ay <= 0.82 * r)
    if shape == "diamond":
        return ax + ay <= 1.1 * r
    if shape == "cross":
        arm = 0.34 * r
        return ((ax <= arm) & (ay <= r)) | ((ay <= arm) & (ax <= r))
    if shape == "triangle":  # pointing up, centred on its bounding box
        h = 1.8 * r
        top, bottom = -h / 2, h / 2
        half_width = (y - top) / h * r * 1.05
        return (y >= top) & (y <= bottom) & (ax <= half_width)
    raise ValueError(shape)


def render(scene: Scene, rng: np.random.Generator, size: int = 64, supersample: int = 4) -> np.ndarray:
    """An RGB float image in [0, 1], HxWx3, with a little jitter of place and size."""
    n = size * supersample
    cx, cy = POSITIONS[scene.position]
    cx, cy = cx + rng.uniform(-0.04, 0.04), cy + rng.uniform(-0.04, 0.04)
    r = SIZES[scene.size] * rng.uniform(0.9, 1.1)
    coords = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(coords - cx, coords - cy)
    mask = _mask(scene.shape, x, y, r).astype(np.float32)
    mask = mask.reshape(size, supersample, size, supersample).mean(axis=(1, 3))[..., None]
    fg = np.asarray(COLOURS[scene.colour], np.float32)
    bg = np.asarray(BACKGROUND_RGB[scene.background], np.float32)
    return mask * fg + (1 - mask) * bg


def sample(n: int, seed: int, held_out: bool = False, size: int = 64) -> tuple[torch.Tensor, list[Scene]]:
    """`n` images (N x 3 x H x W in [-1, 1]) and their scenes, drawn with replacement."""
    rng = np.random.default_rng(seed)
    scenes = split(held_out)
    picked = [scenes[i] for i in rng.integers(0, len(scenes), n)]
    images = np.stack([render(s, rng, size) for s in picked])
    return torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1, picked


def calibration_captions(n: int = 32) -> tuple[str, ...]:
    """`n` training captions spread over the caption space: the embedded model's calibration set."""
    scenes = split(held_out=False)
    return tuple(scenes[i * len(scenes) // n].caption for i in range(n))


def evaluation_captions(n: int = 128) -> list[str]:
    """`n` held-out captions spread over the held-out set (caption i is sampled with seed i)."""
    scenes = split(held_out=True)
    return [scenes[i * len(scenes) // n].caption for i in range(n)]
