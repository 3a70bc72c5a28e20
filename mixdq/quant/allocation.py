"""Per-layer bit allocation: which weight and activation bit-width each layer gets.

JSON form (also what `python -m mixdq allocate --json` prints):

    {"weights": {"conv_in": 8, "down_blocks.0.resnets.0.conv1": "fp", ...},
     "activations": {"conv_in": 8, ...}}

A layer missing from a map stays in floating point. MixDQ's YAML form is one file per kind,
`model.<layer>: <bits>`, floating-point layers left out; `model.` prefixes are optional.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType

import yaml

from mixdq.core.bits import Bits, Kind, check_bits, format_bits
from mixdq.core.errors import ConfigError, UnknownLayerError
from mixdq.core.serialization import FrozenMap, atomic_write_text
from mixdq.models.inventory import MIXDQ_PREFIX, strip_prefix


def _bits_map(kind: Kind, bits: Mapping[str, object]) -> FrozenMap[str, int]:
    out = {}
    for name, b in bits.items():
        b = check_bits(kind, b, layer=name)
        if b is not None:  # floating point is the default: keep the maps minimal
            out[strip_prefix(name)] = b
    return FrozenMap(dict(sorted(out.items())))


@dataclass(frozen=True)
class Allocation:
    """Weight and activation bits per layer name; absent or None means floating point.
    Immutable and hashable (a cache key); `with_layer` makes a changed copy."""

    weights: Mapping[str, int] = field(default_factory=dict)
    acts: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "weights", _bits_map("weight", self.weights))
        object.__setattr__(self, "acts", _bits_map("activation", self.acts))

    @classmethod
    def uniform(cls, names: Iterable[str], weight: Bits = None, act: Bits = None) -> Allocation:
        names = list(names)
        return cls({n: weight for n in names}, {n: act for n in names})

    def weight_bits(self, name: str) -> Bits:
        return self.weights.get(name)

    def act_bits(self, name: str) -> Bits:
        return self.acts.get(name)

    @property
    def names(self) -> set[str]:
        return set(self.weights) | set(self.acts)

    def with_layer(self, name: str, *, weight: Bits | EllipsisType = ..., act: Bits | EllipsisType = ...) -> Allocation:
        """A copy with one layer changed; `...` leaves that kind as it is."""
        weights, acts = dict(self.weights), dict(self.acts)
        if weight is not ...:
            weights[name] = weight
        if act is not ...:
            acts[name] = act
        return Allocation(weights, acts)

    def check_names(self, known: Iterable[str]) -> None:
        known = list(known)
        unknown = self.names - set(known)
        if unknown:
            raise UnknownLayerError(unknown, known)

    # --- JSON -------------------------------------------------------------------------------

    def to_dict(self, names: Iterable[str] | None = None) -> dict:
        """The JSON form; with `names`, every one of those layers is listed, "fp" included."""
        if names is None:
            return {"weights": dict(self.weights), "activations": dict(self.acts)}
        names = list(names)
        as_json = lambda b: format_bits(b) if b is None else b  # noqa: E731
        return {"weights": {n: as_json(self.weight_bits(n)) for n in names},
                "activations": {n: as_json(self.act_bits(n)) for n in names}}

    @classmethod
    def from_dict(cls, data: Mapping) -> Allocation:
        if not isinstance(data, Mapping) or not set(data) <= {"weights", "activations"}:
            raise ConfigError(
                "an allocation is a JSON object with 'weights' and/or 'activations' maps "
                "(layer name -> bits or \"fp\")"
            )
        return cls(data.get("weights", {}), data.get("activations", {}))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Allocation:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"allocation is not valid JSON: {e}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Allocation:
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            return cls.from_mixdq_yaml(weight=path.read_text())
        return cls.from_json(path.read_text())

    # --- MixDQ YAML -------------------------------------------------------------------------

    def to_mixdq_yaml(self, kind: Kind = "weight", prefix: bool = True) -> str:
        bits = self.weights if kind == "weight" else self.acts
        lines = [f"{MIXDQ_PREFIX if prefix else ''}{name}: {b}" for name, b in bits.items()]
        return "\n".join(lines) + ("\n" if lines else "")

    @classmethod
    def from_mixdq_yaml(cls, weight: str | None = None, act: str | None = None) -> Allocation:
        """Read MixDQ's bit config files (the text of a weight file, an activation file, or both)."""
        return cls(_read_yaml_bits(weight, "weight"), _read_yaml_bits(act, "activation"))


def _read_yaml_bits(text: str | None, kind: Kind) -> dict:
    if text is None:
        return {}
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{kind} bit config is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} bit config must map layer names to bits, e.g. 'model.conv_in: 8'")
    # MixDQ writes floating-point layers as 16 or 32 where it lists them at all.
    return {str(k): (None if v in (16, 32) else v) for k, v in data.items()}
