"""A sensitivity sweep on one thread against the same sweep on Ray workers, on the embedded model.

    .venv/bin/python bench/sweep_scaling.py [--layers 24] [--prompts 32] [--workers 2]

A fixed subset: the first `--layers` layers x every weight and activation bit-width, `--prompts`
captions, 4 steps. Serial: one thread in this process. Distributed: `--workers` local Ray
workers with one thread each (each loads the model, calibrates and takes the reference itself).
Printed: wall time of both (the distributed one with and without Ray's start-up: runtime, worker
processes, model loading, calibration, reference), the ratio, per-probe time, the driver's
overhead per probe, and whether the two profiles agree score for score. Target on a 2-core
machine: >= 1.6x over serial one-thread. Figures: bench/results/sweep_scaling-DATE.json.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import torch
from machine import save, start

import mixdq
from mixdq.embedded import dataset
from mixdq.sensitivity.distributed import Workers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    start(1)
    import ray  # noqa: PLC0415 - optional package (the distributed extra)

    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    names = mixdq.load_inventory(None).names[: args.layers]
    config = mixdq.SweepConfig(prompts=dataset.calibration_captions(args.prompts), num_inference_steps=4,
                               batch_size=args.prompts, layers="^(" + "|".join(map(re.escape, names)) + ")$")
    probes = len(config.probes(names))
    out = Path(tempfile.mkdtemp())
    print(f"{len(names)} layers x {len(config.weight_bits)} weight + {len(config.act_bits)} activation bit-widths "
          f"= {probes} probes, {args.prompts} prompts, 4 steps")

    t = time.perf_counter()
    serial = mixdq.sweep(pipe, config, out / "serial.json", progress=False)
    serial_s = time.perf_counter() - t
    print(f"serial, 1 thread:        {serial_s:7.1f} s  ({serial.meta['elapsed_s'] / probes:.3f} s per probe)")

    torch.set_num_threads(args.workers)  # the driver's share: workers get threads // count each
    t = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - t
    t = time.perf_counter()
    spread = mixdq.sweep(pipe, config, out / "ray.json", progress=False, workers=Workers(count=args.workers, threads=1))
    ray_s = time.perf_counter() - t
    ray.shutdown()
    run = spread.meta["workers"]
    busy = max(run["probe_s_per_worker"])
    probing_s = ray_s - run["startup_s"]
    print(f"Ray runtime start:       {ray_start_s:7.1f} s")
    print(f"{args.workers} workers x 1 thread:   {ray_s:7.1f} s  incl. {run['startup_s']:.1f} s worker start-up "
          f"(processes, model, calibration, reference)")
    print(f"speed-up over serial:    {serial_s / (ray_s + ray_start_s):7.2f}x with all start-up, "
          f"{serial_s / ray_s:.2f}x on a running cluster, {serial_s / probing_s:.2f}x probing alone")
    print(f"driver overhead:         {(probing_s - busy) / probes * 1e3:7.1f} ms per probe "
          f"(wall time of probing beyond the busiest worker's probe time)")
    scores = lambda p: {x.name: (x.weight, x.activation) for x in p}  # noqa: E731
    print(f"profiles agree score for score: {scores(serial) == scores(spread)}")
    save("sweep_scaling", dict(
        layers=len(names), probes=probes, prompts=args.prompts, workers=args.workers, serial_s=serial_s,
        serial_probe_s=serial.meta["elapsed_s"] / probes, ray_start_s=ray_start_s, ray_s=ray_s,
        worker_startup_s=run["startup_s"], speedup_all=serial_s / (ray_s + ray_start_s), speedup_running=serial_s / ray_s,
        speedup_probing=serial_s / probing_s, driver_ms_per_probe=(probing_s - busy) / probes * 1e3,
        profiles_agree=scores(serial) == scores(spread)))


if __name__ == "__main__":
    main()
