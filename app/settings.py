"""How this studio is run, from the environment (a Space's variables) and the command line:
which models serve images, on which device, whether full-size sweeps are open to visitors.

    MIXDQ_STUDIO_MODELS=embedded,sdxl-turbo   models that make images, loaded at start-up
    MIXDQ_STUDIO_SWEEPS=1                     full-size sweeps from the page (off on a Space)
    MIXDQ_DEVICE=cuda MIXDQ_DTYPE=float16     override where models run (default: the GPU in fp16)
    MIXDQ_STUDIO_CACHE=/data/mixdq            profiles, sweeps and calibration ranges
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mixdq

MODELS_ENV, SWEEPS_ENV, CACHE_ENV = "MIXDQ_STUDIO_MODELS", "MIXDQ_STUDIO_SWEEPS", "MIXDQ_STUDIO_CACHE"
EMBEDDED = "embedded"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mixdq-studio")


def on_space() -> bool:
    """Running as a Hugging Face Space (the runtime sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def zero_gpu() -> bool:
    """On ZeroGPU: a GPU exists only inside `spaces.GPU` calls, in a forked worker."""
    return _flag(os.environ.get("SPACES_ZERO_GPU"))


@dataclass(frozen=True)
class StudioSettings:
    models: tuple[str, ...] = (EMBEDDED,)  # served with images; the rest offer profile views only
    device: str | None = None  # None: mixdq.Placement's default (the GPU where there is one)
    dtype: str | None = None
    sweeps: bool = True  # full-size sensitivity sweeps from the Analyse tab

    @classmethod
    def from_env(cls, models: str | None = None, device: str | None = None, dtype: str | None = None) -> StudioSettings:
        """Arguments win over the environment. Models are checked later, against the registry."""
        names = models if models is not None else os.environ.get(MODELS_ENV, EMBEDDED)
        served = tuple(dict.fromkeys(n.strip() for n in names.split(",") if n.strip())) or (EMBEDDED,)
        sweeps = _flag(os.environ.get(SWEEPS_ENV)) if on_space() or SWEEPS_ENV in os.environ else True
        return cls(served, device, dtype, sweeps)

    @property
    def placement(self) -> mixdq.Placement:
        return mixdq.Placement.resolve(self.device, self.dtype)

    def sweeps_note(self) -> str | None:
        """Why full-size sweeps are off, or None when they are on (the embedded model's take
        minutes on a CPU and are always on)."""
        if self.sweeps:
            return None
        return (f"Sweeps are off on this Space: a full-size sweep holds the GPU for hours. The Space's owner "
                f"can set {SWEEPS_ENV}=1; anyone can run `mixdq sensitivity MODEL -o profile.json` on their own "
                "machine and upload the profile here.")


_CURRENT: list[StudioSettings] = []  # the running studio's settings (app.py sets them at start-up)


def current() -> StudioSettings:
    if not _CURRENT:
        _CURRENT.append(StudioSettings.from_env())
    return _CURRENT[0]


def use(settings: StudioSettings) -> StudioSettings:
    _CURRENT[:] = [settings]
    return settings
