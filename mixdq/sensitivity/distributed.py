"""Sensitivity sweeps (and evaluation images) on a Ray cluster: the same work, spread over workers.

Each worker is a Ray actor that loads the pipeline once (from the same hub id or folder as the
driver), proves it holds the same weights (the SHA-256 a profile records), calibrates, and takes
the floating-point reference once; then it measures the probes the driver hands it, one at a
time. The driver keeps every worker busy, journals each result as it arrives (exactly as the
serial sweep does, so a killed driver resumes from the journal, with or without workers), and
re-queues the probe of a worker that dies: Ray restarts that worker, which loads the model again.

    python -m mixdq sensitivity MODEL -o profile.json --workers 4           # local Ray runtime
    python -m mixdq sensitivity MODEL -o profile.json --ray-address auto    # an existing cluster
"""

from __future__ import annotations

import os
import platform
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mixdq.core.device import parse_dtype
from mixdq.core.errors import ConfigError
from mixdq.core.serialization import JsonConfig
from mixdq.models.generation import generate_images, quiet_progress
from mixdq.models.loading import load_pipeline
from mixdq.quant.allocation import Allocation
from mixdq.quant.quantize import apply_allocation
from mixdq.sensitivity.config import SweepConfig
from mixdq.sensitivity.probes import Probe, ProbeSession

_MAX_TRIES = 3  # a probe whose worker died this often is not tried again: something is wrong with it
_RESTART_WAIT_S = 300  # how long a restarting worker (loading the model again) may take


@dataclass(frozen=True)
class Workers(JsonConfig):
    """Where the work runs. `address` None starts a local Ray runtime with `count` workers;
    otherwise the driver joins that cluster ("auto", or "HOST:6379") and starts `count` workers
    on it. Every worker loads `model` (hub id or folder; None: the embedded model) itself."""

    count: int = 2
    address: str | None = None
    model: str | None = None
    device: str = "cpu"  # "cuda": one GPU per worker
    dtype: str = "fp32"
    threads: int | None = None  # CPU threads per worker; default: the driver's threads / count

    def __post_init__(self):
        if self.count < 1:
            raise ConfigError("--workers must be at least 1")
        parse_dtype(self.dtype)  # a clear error here, not in every worker

    def threads_per_worker(self) -> int:
        return self.threads or max(1, torch.get_num_threads() // self.count)


def _ray():
    try:
        import ray  # noqa: PLC0415 - optional package (the distributed extra)
    except ImportError:
        raise ConfigError("distributed sweeps need Ray: pip install 'mixdq-studio[distributed]'") from None
    return ray


class ProbeWorker:
    """One worker: a pipeline of its own, ready to measure probes (a Ray actor)."""

    def __init__(self, model: str | None, device: str, dtype: str, threads: int, config_json: str):
        torch.set_num_threads(threads)
        pipe = load_pipeline(model, device=device, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        self.session = ProbeSession(pipe, SweepConfig.from_json(config_json))

    def ready(self) -> dict:
        return dict(pid=os.getpid(), node=platform.node(), weights_sha256=self.session.weights_sha256,
                    resolution=list(self.session.resolution))

    def probe(self, kind: str, name: str, bits: int) -> dict:
        return self.session.probe(kind, name, bits)

    def images(self, allocation_json: str | None, prompts: list[str], first_seed: int) -> torch.Tensor:
        """Images of `prompts` under `allocation` (None: floating point), seeds from `first_seed`."""

        session = self.session
        apply_allocation(session.pipe, Allocation.from_json(allocation_json) if allocation_json else Allocation())
        try:
            with quiet_progress(session.pipe), torch.no_grad():
                return generate_images(session.pipe, prompts, first_seed, session.config.batch_size,
                                       check_prompts=False, **session.config.generation_kwargs())
        finally:
            apply_allocation(session.pipe, Allocation())


class _Pool:
    """Ray started (or joined), `count` workers up and checked against the driver's weights."""

    def __init__(self, workers: Workers, config: SweepConfig, sha: str):
        ray = self.ray = _ray()
        t0 = time.perf_counter()
        self.threads = workers.threads_per_worker()
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            local = {} if workers.address else {"num_cpus": workers.count * self.threads}
            ray.init(address=workers.address, include_dashboard=False, log_to_driver=False, **local)
        gpus = 1 if workers.device.startswith("cuda") else 0
        actor = ray.remote(ProbeWorker).options(num_cpus=self.threads, num_gpus=gpus, max_restarts=_MAX_TRIES)
        self.actors = [actor.remote(workers.model, workers.device, workers.dtype, self.threads, config.to_json())
                       for _ in range(workers.count)]
        try:
            self.infos = ray.get([a.ready.remote() for a in self.actors])
        except ray.exceptions.RayError as e:
            self.close()
            raise ConfigError(f"a worker could not load {workers.model or 'the embedded model'}: {e}") from None
        for info in self.infos:
            if info["weights_sha256"] != sha:
                self.close()
                raise ConfigError(
                    f"the worker on {info['node']} loaded other weights than the driver (SHA-256 "
                    f"{info['weights_sha256'][:12]} vs {sha[:12]}): give every machine the same MODEL "
                    "(hub id or folder) and the same dtype")
        self.startup_s = time.perf_counter() - t0

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        if self.started_ray:
            self.ray.shutdown()


def run_probes(workers: Workers, config: SweepConfig, sha: str, todo: list[Probe],
               record: Callable[[dict], None]) -> dict:
    """Measure `todo` on Ray workers, handing each result to `record` as it arrives; returns what
    the profile's metadata says of the run (worker count, per-worker probe seconds, restarts)."""
    pool = _Pool(workers, config, sha)
    ray = pool.ray
    queue, tries = deque(todo), dict.fromkeys(todo, 0)
    busy = [0.0] * len(pool.actors)
    in_flight: dict = {}  # ref -> (worker, probe), or (worker, None) for "is it back?"
    waits = [0] * len(pool.actors)
    requeued = 0

    def submit(i: int) -> None:
        if queue:
            probe = queue.popleft()
            tries[probe] += 1
            in_flight[pool.actors[i].probe.remote(*probe)] = (i, probe)

    try:
        for i in range(len(pool.actors)):
            submit(i)
        while in_flight:
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            i, probe = in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as e:  # the worker died, or is being restarted by Ray
                if probe is not None:
                    if tries[probe] >= _MAX_TRIES:
                        raise ConfigError(f"probe {probe} failed {tries[probe]} times (its worker died): {e}") from None
                    queue.appendleft(probe)
                    requeued += 1
                waits[i] += 1
                if waits[i] > _RESTART_WAIT_S / 0.2:
                    raise ConfigError(f"worker {i} did not come back after {_RESTART_WAIT_S} s: {e}") from None
                time.sleep(0.2)
                in_flight[pool.actors[i].ready.remote()] = (i, None)  # take probes again once it is back
                continue
            waits[i] = 0
            if probe is not None:
                busy[i] += result["elapsed_s"]
                record(result)
            submit(i)
    finally:
        pool.close()
    return dict(resolution=pool.infos[0]["resolution"],
                workers=dict(count=len(pool.actors), threads_each=pool.threads, address=workers.address,
                             startup_s=round(pool.startup_s, 3), probe_s_per_worker=[round(b, 3) for b in busy],
                             requeued_probes=requeued))


def generate(workers: Workers, config: SweepConfig, sha: str, prompts: list[str],
             allocation: Allocation | None = None, first_seed: int = 0) -> torch.Tensor:
    """Evaluation images of many `prompts` under `allocation`, spread over workers in contiguous
    shares of whole batches (`config.batch_size`): prompt i keeps seed `first_seed + i` and its
    batch, so the images equal one machine's bit for bit."""
    pool = _Pool(workers, config, sha)
    try:
        n, size = len(pool.actors), config.batch_size
        batches = -(-len(prompts) // size)
        bounds = [min(len(prompts), batches * k // n * size) for k in range(n + 1)]
        payload = allocation.to_json() if allocation is not None else None
        refs = [a.images.remote(payload, prompts[lo:hi], first_seed + lo)
                for a, lo, hi in zip(pool.actors, bounds, bounds[1:], strict=False) if hi > lo]
        return torch.cat(pool.ray.get(refs))
    finally:
        pool.close()
