"""A sensitivity profile: how much each layer suffers at each bit-width, plus how it was measured.

One JSON file (open, diffable, written atomically):

    {"format": "mixdq-profile", "version": 1,
     "meta": {"model": ..., "weights_sha256": ..., "prompts": [...], "seeds": [...], ...},
     "layers": [{"name": "conv_in", "group": "quality", "params": 11520, "out_channels": 320,
                 "act_elements": 16384,
                 "weight": {"sqnr": {"2": 9.1, "4": 21.3, "8": 45.0}, "ssim": {...}},
                 "activation": {"sqnr": {...}, "ssim": {...}}}, ...]}

Scores are the raw measurements, higher = less damage: `ssim` of decoded images and `sqnr` (dB)
of the UNet output, each against the floating-point run with only that layer quantized. A score
that was not measured is absent (MixDQ published SSIM for content layers only).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mixdq.core.bits import KINDS, Kind
from mixdq.core.errors import ConfigError
from mixdq.core.metrics import METRICS
from mixdq.core.serialization import atomic_write_text
from mixdq.models.inventory import Group, NamedLayers

FORMAT = "mixdq-profile"
VERSION = 1
Scores = Mapping[str, Mapping[int, float]]  # metric -> bits -> value


def _clean_scores(scores: Mapping | None) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for metric, by_bits in (scores or {}).items():
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; a profile holds {', '.join(METRICS)}")
        out[metric] = {int(b): float(v) for b, v in sorted(by_bits.items(), key=lambda kv: int(kv[0]))}
    return out


@dataclass(frozen=True)
class LayerProfile:
    """One layer's sizes (what the budget counts) and scores (what the objective counts)."""

    name: str
    group: Group
    params: int
    out_channels: int  # for per-channel scale bytes; 0 when unknown (imported sizes only)
    act_elements: int
    weight: Scores = field(default_factory=dict)
    activation: Scores = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "weight", _clean_scores(self.weight))
        object.__setattr__(self, "activation", _clean_scores(self.activation))

    def scores(self, kind: Kind) -> Scores:
        return self.weight if kind == "weight" else self.activation

    def to_dict(self) -> dict:
        jsonable = lambda s: {m: {str(b): v for b, v in by.items()} for m, by in s.items()}  # noqa: E731
        return dict(
            name=self.name, group=self.group, params=self.params, out_channels=self.out_channels,
            act_elements=self.act_elements, weight=jsonable(self.weight),
            activation=jsonable(self.activation),
        )


@dataclass(frozen=True)
class Profile(NamedLayers[LayerProfile]):
    layers: tuple[LayerProfile, ...]
    meta: Mapping = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ConfigError("a profile lists a layer twice")

    def bits(self, kind: Kind) -> tuple[int, ...]:
        """Every bit-width measured for `kind` in any layer."""
        return tuple(sorted({b for layer in self for by in layer.scores(kind).values() for b in by}))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "meta": dict(self.meta),
                "layers": [layer.to_dict() for layer in self]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, data: object, source: str = "profile") -> Profile:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(
                f"{source} is not a MixDQ profile (no \"format\": \"{FORMAT}\"); make one with "
                "`python -m mixdq sensitivity` or `python -m mixdq import-mixdq`"
            )
        if data.get("version") != VERSION:
            raise ConfigError(f"{source} has profile version {data.get('version')}; this engine reads {VERSION}")
        try:
            layers = [
                LayerProfile(
                    name=d["name"], group=d["group"], params=int(d["params"]),
                    out_channels=int(d.get("out_channels", 0)), act_elements=int(d["act_elements"]),
                    weight=d.get("weight", {}), activation=d.get("activation", {}),
                )
                for d in data["layers"]
            ]
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{source} is damaged: a layer record is missing or has a bad field ({e!r})") from None
        bad = [layer.name for layer in layers if layer.group not in ("content", "quality")]
        if bad:
            raise ConfigError(f"{source}: layer '{bad[0]}' has group not in content/quality")
        return cls(tuple(layers), data.get("meta", {}))

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no profile at {path}; make one with `python -m mixdq sensitivity` or "
                              "`python -m mixdq import-mixdq`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(
                f"{path} is not valid JSON ({e}); the file is damaged: re-run the sweep or the import "
                "that made it"
            ) from None
        return cls.from_dict(data, source=str(path))

    def to_dataframe(self) -> pd.DataFrame:
        """Long form: one row per (layer, kind, bits) with both metrics (NaN where unmeasured)."""
        rows = []
        for layer in self:
            for kind in KINDS:
                scores = layer.scores(kind)
                for bits in sorted({b for by in scores.values() for b in by}):
                    rows.append(dict(
                        layer=layer.name, group=layer.group, kind=kind, bits=bits,
                        params=layer.params, act_elements=layer.act_elements,
                        **{m: scores.get(m, {}).get(bits, math.nan) for m in METRICS},
                    ))
        return pd.DataFrame(rows, columns=["layer", "group", "kind", "bits", "params", "act_elements", *METRICS])
