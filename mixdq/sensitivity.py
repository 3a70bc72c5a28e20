"""Metric-decoupled sensitivity: quantize one layer at a time, at each candidate bit-width, and
measure the damage against the floating-point run with *both* metrics.

A probe is one batched pipeline call over all sweep prompts (fixed seed per prompt); it yields the
SSIM of the decoded images (content metric) and the SQNR of the UNet outputs over every step
(quality metric). Probes are journaled to `<profile>.partial.jsonl` as they finish, so a run killed
at any moment (even `kill -9`) resumes where it stopped and ends with the same profile. Probes
are independent: `mixdq.distributed` measures them on Ray workers, into the same journal.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from .bits import ACT_BITS, KINDS, WEIGHT_BITS, Kind, check_bits
from .calibration import calibrate
from .config import CalibrationConfig, JsonConfig, QuantConfig
from .errors import ConfigError
from .generation import generate_images, quiet_progress
from .inventory import MIXDQ_RULE, GroupRule, build_inventory, strip_prefix
from .layers import quant_layers, unet_of
from .metrics import sqnr_db, ssim
from .profile import LayerProfile, Profile
from .quantize import prepare, set_layer_bits
from .serialization import to_jsonable

if TYPE_CHECKING:
    from .distributed import Workers

SQNR_CAP_DB = 300.0  # identical outputs: float64 cannot resolve more, and JSON has no infinity


@dataclass(frozen=True)
class SweepConfig(JsonConfig):
    """What a sensitivity sweep measures. Calibration uses the same prompts, steps and seeds."""

    prompts: tuple[str, ...]
    first_seed: int = 0  # prompt i is sampled with seed first_seed + i
    num_inference_steps: int = 1
    guidance_scale: float = 0.0
    height: int | None = None
    width: int | None = None
    batch_size: int = 32  # prompts per pipeline call; one probe = ceil(len(prompts)/batch_size) calls
    weight_bits: tuple[int, ...] = WEIGHT_BITS
    act_bits: tuple[int, ...] = ACT_BITS
    layers: str | None = None  # regex: only probe matching layers (all are still reported)
    quant: QuantConfig = field(default_factory=QuantConfig)
    content_pattern: str = MIXDQ_RULE.content_pattern

    def __post_init__(self):
        if not self.prompts:
            raise ConfigError("a sweep needs at least one prompt")
        for kind, bits in (("weight", self.weight_bits), ("activation", self.act_bits)):
            for b in bits:
                if check_bits(kind, b) is None:
                    raise ConfigError(f"{kind} bits must be integers; floating point is the reference")
        if self.layers is not None:
            try:
                re.compile(self.layers)
            except re.error as e:
                raise ConfigError(f"--layers is not a valid regular expression: {e}") from None

    @property
    def calibration(self) -> CalibrationConfig:
        return CalibrationConfig(
            prompts=self.prompts, num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale, seed=self.first_seed, batch_size=self.batch_size,
            height=self.height, width=self.width,
        )

    def generation_kwargs(self) -> dict:
        kw = dict(num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale)
        if self.height is not None:
            kw.update(height=self.height, width=self.width or self.height)
        return kw

    def probes(self, names: list[str]) -> list[tuple[Kind, str, int]]:
        """(kind, layer, bits) in a fixed order: layer-major, so each layer's cached quantized
        weights can be dropped once its probes are done."""
        chosen = [n for n in names if self.layers is None or re.search(self.layers, n)]
        return [
            (kind, name, bits)
            for kind in KINDS
            for name in chosen
            for bits in (self.weight_bits if kind == "weight" else self.act_bits)
        ]


def weights_sha256(model) -> str:
    """Hash of the UNet's tensors (names, dtypes, shapes, bytes): which weights were measured."""
    h = hashlib.sha256()
    for name, t in sorted(unet_of(model).state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _versions() -> dict:
    import diffusers
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__}


@contextmanager
def _capture_unet_outputs(model) -> Iterator[list[torch.Tensor]]:
    outputs: list[torch.Tensor] = []

    def hook(_module, _args, out):
        sample = out[0] if isinstance(out, tuple) else out.sample
        outputs.append(sample.detach().float().cpu())

    handle = unet_of(model).register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def _run(pipe, config: SweepConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] and the UNet's outputs at every step, flattened."""
    with _capture_unet_outputs(pipe) as outs, torch.no_grad():
        # calibration has checked these prompts already; a probe runs them again a thousand times
        images = generate_images(pipe, list(config.prompts), config.first_seed, config.batch_size,
                                 check_prompts=False, **config.generation_kwargs())
    return (images + 1) / 2, torch.cat([o.flatten() for o in outs])


class _Journal:
    """Append-only record of finished probes. The first line names the sweep; a torn last line
    (the process died mid-write) is ignored on reading."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.header = header

    def read(self) -> dict[tuple[str, str, int], dict]:
        if not self.path.exists():
            return {}
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # torn write: everything after it is lost, and re-measured
        if not records:  # empty, or killed while writing its very first line
            return {}
        if records[0].get("header") != self.header:
            raise ConfigError(
                f"{self.path} holds a different sweep (other model, prompts, bits or settings); "
                "delete it to start afresh, or pass --restart, or write to another -o PROFILE"
            )
        return {(r["kind"], r["layer"], r["bits"]): r for r in records[1:]}

    def start(self, done: dict) -> None:
        """(Re)write the journal with the valid records only, then keep it open for appends."""
        lines = [json.dumps({"header": self.header})] + [json.dumps(r) for r in done.values()]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if hasattr(self, "_file"):
            self._file.close()


def journal_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial.jsonl")


@contextmanager
def journal_lock(out: str | Path) -> Iterator[None]:
    """Hold `<out>.lock` for the sweep's lifetime: a second driver on the same journal is refused
    instead of interleaving its records. The OS drops the lock when the holder dies (even by
    SIGKILL), so a resumed run never finds a stale one."""
    import fcntl

    path = Path(out).with_name(Path(out).name + ".lock")
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ConfigError(f"another sweep ({holder}) is writing {journal_path(out)}; wait for it to finish or "
                              "stop it, or write to another -o PROFILE") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {platform.node()}")
        f.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            fcntl.flock(f, fcntl.LOCK_UN)


class ProbeSession:
    """One pipeline ready to measure probes: prepared, every layer in floating point, calibrated,
    and its floating-point reference (images and UNet outputs) taken once. The serial sweep runs
    one; each distributed worker runs its own (`mixdq.distributed`)."""

    def __init__(self, pipe, config: SweepConfig, progress: bool = False):
        prepare(pipe, config.quant)
        self.pipe, self.config = pipe, config
        self.layers = quant_layers(pipe)
        self.weights_sha256 = weights_sha256(pipe)
        for layer in self.layers.values():
            layer.weight_bits = layer.act_bits = None
        with quiet_progress(pipe):
            calibrate(pipe, config.calibration, progress=progress)
            self.ref_images, self.ref_unet = _run(pipe, config)
        self._last: str | None = None

    @property
    def resolution(self) -> tuple[int, int]:
        return tuple(self.ref_images.shape[-2:])

    def probe(self, kind: Kind, name: str, bits: int) -> dict:
        """Quantize `name` alone (its `kind` at `bits`), run every prompt, score against the reference."""
        if self._last not in (None, name):
            self.layers[self._last].clear_cache()  # full-size models cannot hold every layer x bits
        self._last = name
        t0 = time.perf_counter()
        set_layer_bits(self.pipe, name, **({"weight": bits} if kind == "weight" else {"act": bits}))
        try:
            with quiet_progress(self.pipe):
                images, unet_out = _run(self.pipe, self.config)
        finally:
            set_layer_bits(self.pipe, name, weight=None, act=None)
        return dict(kind=kind, layer=name, bits=bits, ssim=float(ssim(self.ref_images, images).mean()),
                    sqnr=min(sqnr_db(self.ref_unet, unet_out), SQNR_CAP_DB), elapsed_s=time.perf_counter() - t0)


Probe = tuple[Kind, str, int]
# Measures `todo` and hands each record to the callback as it comes: the serial loop, or Ray workers.
Runner = Callable[[list[Probe], Callable[[dict], None]], dict]


def sweep(
    pipe,
    config: SweepConfig,
    out: str | Path,
    *,
    model_id: str = "unknown",
    restart: bool = False,
    progress: bool = True,
    on_probe: Callable[[int], None] | None = None,
    workers: Workers | None = None,
) -> Profile:
    """Measure every (layer, bit-width) of `config` on `pipe` and write the profile to `out`.

    Resumes from `<out>.partial.jsonl` when one from the same sweep exists (unless `restart`);
    a second sweep writing the same journal at the same time is refused (`<out>.lock`).
    `workers` spreads the probes over Ray workers (`mixdq.distributed.Workers`: N local ones, or
    an existing cluster); each loads the model itself and must find the same weights.
    `on_probe(n)` is called after the n-th newly measured probe (tests use it to interrupt).
    The pipeline's UNet is prepared for quantization and left so, every layer in floating point.
    """
    started = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)  # the journal beside it is written from the first probe
    with journal_lock(out):
        if workers is None:
            session = ProbeSession(pipe, config, progress=progress)
            sha, resolution = session.weights_sha256, session.resolution
            run: Runner = lambda todo, record: _serial(session, todo, record)  # noqa: E731
        else:
            from .distributed import run_probes

            prepare(pipe, config.quant)
            sha = weights_sha256(pipe)
            resolution = None
            run = lambda todo, record: run_probes(workers, config, sha, todo, record)  # noqa: E731
        names = list(quant_layers(pipe))
        probes = config.probes(names)
        header = {"sweep": to_jsonable(config), "weights_sha256": sha, "layers": len(names)}
        journal = _Journal(journal_path(out), header)
        if restart:
            journal.path.unlink(missing_ok=True)
        done = journal.read()
        todo = [p for p in probes if p not in done]
        journal.start(done)
        bar = tqdm(total=len(probes), initial=len(probes) - len(todo), desc="sensitivity",
                   unit="probe", disable=not progress, smoothing=0.05)
        measured = 0

        def record(r: dict) -> None:
            nonlocal measured
            journal.append(r)
            done[(r["kind"], r["layer"], r["bits"])] = r
            measured += 1
            bar.update(1)
            if on_probe is not None:
                on_probe(measured)

        try:
            extra_meta = run(todo, record)
        finally:
            bar.close()
            journal.close()
        resolution = extra_meta.pop("resolution", None) or resolution or _resolution(pipe, config)

        vae_scale = getattr(pipe, "vae_scale_factor", 8)
        inventory = build_inventory(  # the pipeline's own tokenizer length; sizes at the sweep's resolution
            pipe, latent_size=tuple(s // vae_scale for s in resolution),
            group_rule=GroupRule(config.content_pattern), model=model_id,
        )
        by_layer: dict[str, list[dict]] = {}
        for r in done.values():
            by_layer.setdefault(r["layer"], []).append(r)
        profile = Profile(
            tuple(_layer_profile(info, by_layer.get(info.name, [])) for info in inventory),
            meta=dict(
                model=model_id, weights_sha256=sha, source="measured",
                sweep=to_jsonable(config), prompts=list(config.prompts),
                seeds=[config.first_seed + i for i in range(len(config.prompts))],
                resolution=list(resolution), steps=config.num_inference_steps,
                weight_bits=list(config.weight_bits), act_bits=list(config.act_bits),
                probes=len(probes), versions=_versions(), threads=torch.get_num_threads(),
                # probe time summed over resumed runs: what a full run costs, however often it stopped
                elapsed_s=round(sum(r["elapsed_s"] for r in done.values()), 3),
                wall_s_this_run=round(time.perf_counter() - started, 3),
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                **extra_meta,
            ),
        )
        profile.save(out)
        journal.path.unlink(missing_ok=True)
    return profile


def _serial(session: ProbeSession, todo: list[Probe], record: Callable[[dict], None]) -> dict:
    for probe in todo:
        record(session.probe(*probe))
    return {"resolution": session.resolution}


def _resolution(pipe, config: SweepConfig) -> tuple[int, int]:
    """The images' size when no probe ran here: the config's, else the pipeline's default."""
    default = pipe.unet.config.sample_size * getattr(pipe, "vae_scale_factor", 8)
    return (config.height or default, config.width or config.height or default)


def _layer_profile(info, records: list[dict]) -> LayerProfile:
    scores = {kind: {"ssim": {}, "sqnr": {}} for kind in KINDS}
    for r in records:
        scores[r["kind"]]["ssim"][r["bits"]] = r["ssim"]
        scores[r["kind"]]["sqnr"][r["bits"]] = r["sqnr"]
    tidy = lambda s: {m: v for m, v in s.items() if v}  # noqa: E731
    return LayerProfile(
        name=strip_prefix(info.name), group=info.group, params=info.params,
        out_channels=info.out_channels, act_elements=info.act_elements,
        weight=tidy(scores["weight"]), activation=tidy(scores["activation"]),
    )
