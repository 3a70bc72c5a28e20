"""Metric-decoupled sensitivity: quantize one layer at a time, at each candidate bit-width, and
measure the damage against the floating-point run with *both* metrics.

A probe is one batched pipeline call over all sweep prompts (fixed seed per prompt); it yields the
SSIM of the decoded images (content metric) and the SQNR of the UNet outputs over every step
(quality metric). Probes are journaled to `<profile>.partial.jsonl` as they finish, so a run killed
at any moment (even `kill -9`) resumes where it stopped and ends with the same profile. Probes
are independent: `mixdq.sensitivity.distributed` measures them on Ray workers, into the same journal.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import diffusers
import torch
import transformers
from tqdm.auto import tqdm

from mixdq.core.bits import KINDS
from mixdq.core.serialization import to_jsonable
from mixdq.models.inventory import GroupRule, build_inventory, strip_prefix
from mixdq.quant.layers import quant_layers
from mixdq.quant.quantize import prepare
from mixdq.sensitivity.config import SweepConfig
from mixdq.sensitivity.distributed import Workers, run_probes
from mixdq.sensitivity.journal import Journal, journal_lock, journal_path
from mixdq.sensitivity.probes import Probe, ProbeSession, weights_sha256
from mixdq.sensitivity.profile import LayerProfile, Profile

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
    `workers` spreads the probes over Ray workers (`mixdq.sensitivity.distributed.Workers`: N local ones, or
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
            prepare(pipe, config.quant)
            sha = weights_sha256(pipe)
            resolution = None
            run = lambda todo, record: run_probes(workers, config, sha, todo, record)  # noqa: E731
        names = list(quant_layers(pipe))
        probes = config.probes(names)
        header = {"sweep": to_jsonable(config), "weights_sha256": sha, "layers": len(names)}
        journal = Journal(journal_path(out), header)
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


def _versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__}
