"""Does the decoupled allocation pay off? Uniform bits vs a single-metric allocation vs MixDQ's
decoupled allocation, at equal weight memory, on the embedded model.

    .venv/bin/python bench/allocation_payoff.py [--captions 128] [--bits 2.5,3,4,8]

For each average weight bit-width B, every method gets the packed weight memory of uniform W{B}
(scales included); for a B that is no uniform choice, the same MB budget at B bits:
  uniform      every layer at B bits
  SQNR only    the planner with SQNR (UNet output) judging every layer
  decoupled    the planner with MixDQ's mapping: SSIM for content layers, SQNR for quality layers
  MixDQ mode   the paper's two programs (content {2,4,8}, quality {4,8}, K = content/quality bits)
The planners may also keep layers in floating point (16-bit). Activations stay in floating point
so the comparison isolates the weight allocation. Images: held-out captions, caption i with seed
i, one CPU thread; scores against the float model's images of the same captions and seeds.
Figures: bench/results/allocation_payoff-DATE.json.
"""

from __future__ import annotations

import argparse

from machine import save, start

import mixdq
from mixdq import PlanConfig, Planner, plan_mixdq
from mixdq.core.assets import ASSETS
from mixdq.embedded import dataset
from mixdq.embedded.classifier import SCORE_HEADER, AttributeClassifier, format_scores, scores_against
from mixdq.embedded.paths import EMBEDDED_CLASSIFIER_DIR
from mixdq.models.generation import generate_images

PROFILE = ASSETS / "profiles" / "embedded.json"


def mixdq_k(planner: Planner, avg_bits: float) -> float | None:
    """K = 1 where the paper's candidates (content {2,4,8}, quality {4,8}) allow it, else the
    nearest K that does; None when no K reaches `avg_bits`."""
    sizes = {g: sum(layer.params for layer in planner.profile if layer.group == g) for g in ("content", "quality")}
    r = sizes["content"] / sizes["quality"]
    lowest = (2 * sizes["content"] + 4 * sizes["quality"]) / sum(sizes.values())
    if avg_bits < lowest - 0.02:
        return None
    k_max = (avg_bits * (1 + r) / 3.98 - 1) / r  # quality target >= 4 - band
    k_min = (avg_bits * (1 + r) / 8.02 - 1) / r  # quality target <= 8 + band
    return min(max(1.0, k_min), k_max)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--captions", type=int, default=128)
    parser.add_argument("--bits", default="2.5,3,4,8")
    args = parser.parse_args()
    start(1)

    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    clf = AttributeClassifier.load(EMBEDDED_CLASSIFIER_DIR)
    profile = mixdq.Profile.load(PROFILE)
    captions = dataset.evaluation_captions(args.captions)
    inventory = mixdq.build_inventory(pipe.unet)
    ref = generate_images(pipe, captions, **mixdq.generation_defaults().as_kwargs())
    mixdq.prepare(pipe)

    planners = {
        "SQNR only": Planner(profile, PlanConfig(metric={"content": "sqnr", "quality": "sqnr"}, allow_fp=True)),
        "decoupled": Planner(profile, PlanConfig(allow_fp=True)),
    }
    float_alignment = scores_against(clf, ref, ref, captions)["alignment"]
    results = []
    print(f"{len(captions)} held-out captions, weights only (activations float); "
          f"float alignment {float_alignment:.3f}\n")
    print(f"{'avg bits':>8} {'method':<12} {'weight MB':>9} {'bits':>5} {SCORE_HEADER}")
    for bits in (float(b) for b in args.bits.split(",")):
        uniform = mixdq.Allocation.uniform(inventory.names, weight=int(bits)) if bits.is_integer() else None
        if uniform is not None:
            budget_mb = mixdq.memory_report(inventory, uniform).weight_mb
        else:
            budget_mb = planners["decoupled"].plan(avg_bits=bits).weight_mb
        rows = [("uniform", uniform)] if uniform is not None else []
        rows += [(name, p.plan(budget_mb=budget_mb).allocation) for name, p in planners.items()]
        k = mixdq_k(planners["decoupled"], bits)
        if k is None:
            print(f"{bits:8.2f} MixDQ mode   cannot go this low: its candidates (content 2, quality 4 at least) "
                  "average more bits on this model")
        else:
            rows.append((f"MixDQ K={k:.2f}", plan_mixdq(planners["decoupled"], budget_mb=budget_mb, k=k).allocation))
        for name, allocation in rows:
            report = mixdq.memory_report(inventory, allocation)
            mixdq.apply_allocation(pipe, allocation)
            images = generate_images(pipe, captions, **mixdq.generation_defaults().as_kwargs())
            scores = scores_against(clf, ref, images, captions)
            results.append(dict(bits=bits, method=name, weight_mb=report.weight_mb,
                                avg_bits=report.avg_weight_bits, **scores))
            print(f"{bits:8.2f} {name:<12} {report.weight_mb:9.3f} {report.avg_weight_bits:5.2f} {format_scores(scores)}")
        print()
    mixdq.restore(pipe)
    save("allocation_payoff", dict(captions=len(captions), float_alignment=float_alignment, results=results))


if __name__ == "__main__":
    main()
