"""Profiles from MixDQ's own sensitivity files (github.com/thu-nics/MixDQ).

MixDQ writes one YAML per (kind, metric): `<layer>: [score@2bit, score@4bit, score@8bit]`, and
size files `<layer>: ratio` (weight parameters / conv_in's, activation elements / 320). File names
vary between its scripts, so files are recognised by the words in their names: `weight` or `act`,
and `sqnr`, `ssim` or `ratio`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

import yaml

from mixdq.core.errors import ConfigError
from mixdq.models.architectures import ARCHITECTURES
from mixdq.models.inventory import MIXDQ_RULE, GroupRule, strip_prefix
from mixdq.models.loading import load_inventory
from mixdq.sensitivity.profile import LayerProfile, Profile

MIXDQ_BITS = (2, 4, 8)
WEIGHT_UNIT = 11_520  # conv_in's weight parameters in SD/SDXL UNets: MixDQ's weight_ratio unit
ACT_UNIT = 320  # MixDQ's act_ratio unit (elements per sample)


def _role(path: Path) -> tuple[str, str] | None:
    words = set(re.split(r"[^a-z0-9]+", path.stem.lower()))
    kind = "weight" if "weight" in words else "activation" if words & {"act", "activation"} else None
    what = next((w for w in ("sqnr", "ssim", "ratio") if w in words), None)
    return (kind, what) if kind and what else None


def find_mixdq_files(folder: str | Path) -> dict[tuple[str, str], Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"no folder {folder}; give the folder that holds MixDQ's *.yaml files")
    found: dict[tuple[str, str], Path] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        role = _role(path)
        if role is None:
            continue
        if role in found:
            raise ConfigError(f"both {found[role].name} and {path.name} look like the {role[0]} {role[1]} file; "
                              "keep one of them in the folder")
        found[role] = path
    if not any(what != "ratio" for _, what in found):
        raise ConfigError(
            f"{folder} has no MixDQ sensitivity files (names with weight|act and sqnr|ssim, e.g. "
            "weight_sqnr.yaml)"
        )
    return found


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} should map layer names to values")
    return {strip_prefix(str(k)): v for k, v in data.items()}


def _scores(path: Path, bits: tuple[int, ...]) -> dict[str, dict[int, float]]:
    out = {}
    for name, values in _read(path).items():
        if not isinstance(values, list) or len(values) != len(bits):
            raise ConfigError(
                f"{path.name}: layer '{name}' has {values!r}; expected a list of {len(bits)} scores, one "
                f"per bit-width {list(bits)} (pass --bits to name them)"
            )
        out[name] = {b: float(v) for b, v in zip(bits, values)}
    return out


def import_mixdq(
    folder: str | Path,
    bits: tuple[int, ...] = MIXDQ_BITS,
    architecture: str | None = "auto",
    group_rule: GroupRule = MIXDQ_RULE,
    weight_unit: float = WEIGHT_UNIT,
    act_unit: float = ACT_UNIT,
) -> Profile:
    """A profile from a folder of MixDQ YAML files.

    Layer sizes come from a shipped architecture's inventory when its layer names match
    (`architecture="auto"` tries each; exact parameter counts and channel counts), else from the
    ratio files times `weight_unit` / `act_unit`.
    """
    files = find_mixdq_files(folder)
    scores = {role: _scores(path, bits) for role, path in files.items() if role[1] != "ratio"}
    names = sorted({n for by in scores.values() for n in by})
    ratios = {kind: _read(files[(kind, "ratio")]) for kind in ("weight", "activation") if (kind, "ratio") in files}

    inventory = _matching_inventory(names, architecture)
    layers = []
    for name in names:
        if inventory is not None:
            info = inventory[name]
            params, channels, acts = info.params, info.out_channels, info.act_elements
        else:
            missing = [k for k in ("weight", "activation") if name not in ratios.get(k, {})]
            if missing:
                raise ConfigError(
                    f"layer '{name}' has no size: add MixDQ's {missing[0]}_ratio.yaml to the folder, "
                    "or name the architecture (--architecture)"
                )
            params = round(float(ratios["weight"][name]) * weight_unit)
            acts = round(float(ratios["activation"][name]) * act_unit)
            channels = 0
        per_kind = {
            kind: {metric: by[name] for (k, metric), by in scores.items() if k == kind and name in by}
            for kind in ("weight", "activation")
        }
        layers.append(LayerProfile(name, group_rule.group_of(name), params, channels, acts,
                                   per_kind["weight"], per_kind["activation"]))
    order = {n: i for i, n in enumerate(inventory.names)} if inventory is not None else {}
    layers.sort(key=lambda layer: order.get(layer.name, 0))
    return Profile(tuple(layers), meta=dict(
        source="imported from MixDQ YAML", model=inventory.model if inventory is not None else "unknown",
        files={f"{k}_{w}": {"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
               for (k, w), p in files.items()},
        bits=list(bits), sizes="architecture inventory" if inventory is not None else "ratio files",
        weight_bits=list(bits), act_bits=list(bits),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    ))


def _matching_inventory(names: list[str], architecture: str | None):
    if architecture is None:
        return None
    candidates = list(ARCHITECTURES) if architecture == "auto" else [architecture]
    for arch in candidates:
        if arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture '{arch}'; known: {', '.join(ARCHITECTURES)}")
        size = ARCHITECTURES[arch].defaults.height // 8
        inventory = load_inventory(arch, latent_size=size)
        if set(names) <= set(inventory.names):
            return inventory
        if architecture != "auto":
            extra = sorted(set(names) - set(inventory.names))
            raise ConfigError(f"{len(extra)} layers of the files are not in {arch}, e.g. '{extra[0]}'")
    return None
