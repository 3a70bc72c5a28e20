"""How fast is an allocation, and what does a full sensitivity profile cost?

    .venv/bin/python bench/allocation_speed.py [--budgets 60] [--no-sweep]

Prints, from one run:
1. On the shipped 794-layer SDXL-Turbo profile (MixDQ's measurements): time per budget of the
   live path (precomputed frontier + core DP + fill) against PuLP/CBC's exact solve, as a ratio,
   with the optimality gap, over budgets spread across the whole range; for MixDQ's default
   objective and with floating point allowed. Target: live <= 50 ms, gap <= 0.1 %.
2. The wall time of a full sensitivity profile of the embedded model on this machine (all 132
   layers x weight 2,3,4,5,6,8 x activation 4,6,8 bits, 32 prompts, 4 steps), run afresh into a
   temporary folder; `--no-sweep` prints the time recorded in the shipped profile instead.
Figures: bench/results/allocation_speed-DATE.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import save, start

import mixdq
from mixdq import PlanConfig, Planner
from mixdq.core.assets import ASSETS
from mixdq.sensitivity.config import SweepConfig
from mixdq.sensitivity.driver import sweep


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def solver_speed(budgets: int) -> dict:
    profile = mixdq.Profile.load(ASSETS / "profiles" / "sdxl-turbo-mixdq.json")
    print(f"SDXL-Turbo profile: {len(profile)} layers; {budgets} budgets spread over each frontier")
    rows = []
    for label, config in (("MixDQ default", PlanConfig()), ("FP allowed", PlanConfig(allow_fp=True))):
        planner, build = timed(lambda: Planner(profile, config))
        _, build_frontier = timed(lambda: planner.frontier())
        points = planner.pareto()
        live_t, exact_t, gaps = [], [], []
        for mb in np.linspace(points.weight_mb.min(), points.weight_mb.max(), budgets + 2)[1:-1]:
            live, t_live = timed(lambda: planner.plan(budget_mb=mb))
            exact, t_exact = timed(lambda: planner.plan(budget_mb=mb, exact=True))
            assert live.weight_mb <= mb + 1e-6 and exact.weight_mb <= mb + 1e-6
            live_t.append(t_live)
            exact_t.append(t_exact)
            gaps.append((live.damage - exact.damage) / exact.damage)
        ratio = statistics.median(exact_t) / statistics.median(live_t)
        rows.append(dict(objective=label, setup_ms=(build + build_frontier) * 1e3,
                         live_median_ms=statistics.median(live_t) * 1e3, live_max_ms=max(live_t) * 1e3,
                         exact_median_ms=statistics.median(exact_t) * 1e3, exact_max_ms=max(exact_t) * 1e3,
                         speedup=ratio, gap_median_pct=statistics.median(gaps) * 100, gap_max_pct=max(gaps) * 100,
                         optimum_matched=f"{sum(g <= 1e-9 for g in gaps)}/{len(gaps)}"))
        print(f"  {label:<14} set-up {(build + build_frontier) * 1e3:.0f} ms once; live median "
              f"{statistics.median(live_t) * 1e3:.1f} ms, max {max(live_t) * 1e3:.1f} ms; exact CBC "
              f"median {statistics.median(exact_t) * 1e3:.0f} ms, max {max(exact_t) * 1e3:.0f} ms; "
              f"live is {ratio:.0f}x faster; gap vs exact: median {statistics.median(gaps) * 100:.4f} %, "
              f"max {max(gaps) * 100:.4f} %, exact optimum matched at {sum(g <= 1e-9 for g in gaps)}/{len(gaps)} budgets")
    planner = Planner(profile)
    frontier, t = timed(lambda: planner.pareto())
    print(f"  Pareto frontier (damage vs MB, {len(frontier)} points), set-up included: {t * 1e3:.2f} ms")
    return dict(layers=len(profile), budgets=budgets, solver=rows, pareto_ms=t * 1e3, pareto_points=len(frontier))


def sweep_time() -> dict:
    defaults = mixdq.generation_defaults()
    config = SweepConfig(prompts=defaults.prompts, **defaults.as_kwargs())
    pipe = mixdq.load_pipeline()
    with tempfile.TemporaryDirectory() as tmp:
        profile, wall = timed(lambda: sweep(pipe, config, Path(tmp) / "embedded.json", model_id="embedded"))
    print(f"embedded model, full sensitivity profile ({profile.meta['probes']} probes, "
          f"{torch.get_num_threads()} threads): {wall / 60:.1f} min wall, "
          f"{wall / profile.meta['probes'] * 1e3:.0f} ms per probe")
    return dict(minutes=wall / 60, probes=profile.meta["probes"], threads=torch.get_num_threads(),
                source="measured in this run")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", type=int, default=60)
    parser.add_argument("--no-sweep", action="store_true")
    args = parser.parse_args()
    start(2)  # the machine's cores; the solvers are single-threaded anyway
    figures = solver_speed(args.budgets)
    if args.no_sweep:
        meta = mixdq.Profile.load(ASSETS / "profiles" / "embedded.json").meta
        print(f"embedded model, full sensitivity profile: {meta['elapsed_s'] / 60:.1f} min of probing "
              f"({meta['probes']} probes, {meta['threads']} threads), recorded when the shipped profile was made")
        sweep = dict(minutes=meta["elapsed_s"] / 60, probes=meta["probes"], threads=meta["threads"],
                     source="recorded in assets/profiles/embedded.json (--no-sweep)")
    else:
        sweep = sweep_time()
    save("allocation_speed", figures | dict(sweep=sweep))


if __name__ == "__main__":
    main()
