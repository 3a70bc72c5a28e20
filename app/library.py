"""Profiles made or uploaded in the studio: checked against the model's layers, kept on disk per
model (so a reload or a restart does not recompute them), and served as extra picker entries.

Uploads are parsed as data only: JSON with `json`, MixDQ's YAML with `yaml.safe_load` (through
the engine's importer); nothing from a user's file is executed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
from pathlib import Path

import mixdq
from mixdq.core.device import format_gb
from mixdq.sensitivity.journal import journal_path

from . import settings
from .registry import ModelEntry

ROOT = settings.cache_root() / "profiles"
SEP = " · "  # "embedded · my-sweep": a derived entry's key


class SweepCancelled(mixdq.MixDQError):
    pass


def folder_of(entry: ModelEntry) -> Path:
    return ROOT / entry.key.split(SEP)[0].replace("/", "_")


def expected_layers(entry: ModelEntry) -> list[str]:
    """The model's layer names, from its configs (no weights)."""
    return mixdq.load_inventory(entry.spec).names


def check_against(entry: ModelEntry, profile: mixdq.Profile, source: str) -> None:
    """A profile of another model is refused, naming what does not match."""
    want, have = set(expected_layers(entry)), set(profile.names)
    if want == have:
        return
    missing, extra = sorted(want - have), sorted(have - want)
    parts = []
    if missing:
        parts.append(f"{len(missing)} of its layers are missing (e.g. '{missing[0]}')")
    if extra:
        parts.append(f"it has {len(extra)} layers {entry.key} does not (e.g. '{extra[0]}')")
    raise mixdq.ConfigError(
        f"{source} is not a profile of {entry.key} ({len(want)} layers): {'; '.join(parts)}. "
        f"Pick the model it was measured on, or measure {entry.key} in this view."
    )


def read_upload(paths: list[str]) -> mixdq.Profile:
    """Our profile JSON (one file), or MixDQ's YAML files (weight/act x sqnr/ssim, ratio files)."""
    if not paths:
        raise mixdq.ConfigError("choose a profile file: our JSON, or MixDQ's YAML files")
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].suffix == ".json":
        return mixdq.Profile.load(paths[0])
    if not all(p.suffix in (".yaml", ".yml") for p in paths):
        raise mixdq.ConfigError("upload one .json profile, or MixDQ's .yaml files (e.g. weight_sqnr.yaml, "
                                "act_ssim.yaml, weight_ratio.yaml)")
    with tempfile.TemporaryDirectory() as tmp:
        for p in paths:
            shutil.copy(p, Path(tmp) / p.name.split("/")[-1])
        return mixdq.import_mixdq(tmp)


def accept_upload(models: dict[str, ModelEntry], entry: ModelEntry, paths: list[str]) -> tuple[str, mixdq.Profile]:
    """Read, check against the model, keep and serve an uploaded profile: (its picker key, it)."""
    profile = read_upload(paths)
    check_against(entry, profile, "the upload")
    return add(models, entry, profile, "upload"), profile


def add(models: dict[str, ModelEntry], base: ModelEntry, profile: mixdq.Profile, label: str) -> str:
    """Keep `profile` on disk beside the model's others and serve it as `base.key · label`."""
    folder = folder_of(base)
    # the layers decide the digest: the same measurements uploaded twice are one entry
    digest = hashlib.sha256(json.dumps([layer.to_dict() for layer in profile]).encode()).hexdigest()[:10]
    path = profile.save(folder / f"{label}-{digest}.json")
    root = models[base.key.split(SEP)[0]]
    key = f"{root.key}{SEP}{label}-{digest}"
    models.setdefault(key, ModelEntry(key, root.spec, path).sharing_pipeline_of(root))
    return key


def load_saved(models: dict[str, ModelEntry]) -> None:
    """Entries for the profiles kept by earlier runs."""
    for base in [m for m in list(models.values()) if SEP not in m.key]:
        folder = folder_of(base)
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            key = f"{base.key}{SEP}{path.stem}"
            models.setdefault(key, ModelEntry(key, base.spec, path).sharing_pipeline_of(base))


_SWEEPS: dict[Path, threading.Event] = {}  # a model's profile folder -> its running sweep's cancel flag
_SWEEPS_LOCK = threading.Lock()


def sweep_path(base: ModelEntry, config: mixdq.SweepConfig) -> Path:
    """One file per sweep setting: the same setting started again resumes its journal."""
    digest = hashlib.sha256(config.to_json().encode()).hexdigest()[:10]
    return folder_of(base) / "sweeps" / f"sweep-{digest}.json"


def journaled(path: Path) -> int:
    """Probes already measured in the journal of the sweep that writes `path`."""
    journal = journal_path(path)
    if not journal.exists():
        return 0
    return max(0, sum(1 for line in journal.read_text().splitlines() if line.strip().endswith("}")) - 1)


def check_sweep(base: ModelEntry) -> None:
    """Refuse a sweep this studio does not allow, or has no memory for, saying why."""
    studio = settings.current()
    if not base.embedded and (note := studio.sweeps_note()):
        raise mixdq.ConfigError(note)
    placement = studio.placement
    # a pipeline of its own, so images are not blocked for hours (probes quantize one layer at a time)
    need, have = base.model_bytes(placement)[0], mixdq.available_bytes(placement.device)
    if need > have:
        command = " ".join(filter(None, ("mixdq sensitivity", base.spec, "-o profile.json")))
        raise mixdq.InsufficientMemoryError(
            f"a sweep of {base.key} loads a second copy of the model: about {format_gb(need)} on "
            f"{placement.device}, and {format_gb(have)} are free here. Run it where there is room with "
            f"`{command}` (it resumes if interrupted), then upload the profile here.")


def run_sweep(base: ModelEntry, config: mixdq.SweepConfig) -> tuple[mixdq.Profile, Path]:
    """The engine's resumable sweep on a pipeline of its own (image generation is not blocked),
    on the studio's device; `cancel(base)` stops it after the probe in flight, and the journal
    keeps what was measured."""
    check_sweep(base)
    model = folder_of(base)  # every profile of one model shares its sweeps' journals
    with _SWEEPS_LOCK:
        if model in _SWEEPS:
            raise mixdq.ConfigError("a sweep of this model is already running; cancel it or wait for it")
        flag = _SWEEPS[model] = threading.Event()
    try:
        placement = settings.current().placement
        pipe = mixdq.load_pipeline(base.spec, device=placement.device, dtype=placement.dtype)
        out = sweep_path(base, config)

        def check(_n: int) -> None:
            if flag.is_set():
                raise SweepCancelled(f"cancelled; {journaled(out)} probes are kept in the journal: start the same "
                                     "sweep again to resume")

        profile = mixdq.sweep(pipe, config, out, model_id=base.key, on_probe=check)
        return profile, out
    finally:
        with _SWEEPS_LOCK:
            _SWEEPS.pop(model, None)


def cancel(base: ModelEntry) -> bool:
    with _SWEEPS_LOCK:
        flag = _SWEEPS.get(folder_of(base))
    if flag is not None:
        flag.set()
    return flag is not None
