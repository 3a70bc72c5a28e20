"""The embedded model against its bar, and what uniform quantization does to it.

    .venv/bin/python bench/embedded_model.py [--captions 128]

Prints, from one run on one CPU thread: the attribute classifier's accuracy on data-set images;
the float model's alignment score on held-out captions (fixed seeds) at 1, 2 and 4 steps; the
time per 64x64 image; and alignment, Fréchet distance (classifier features) and PSNR/SSIM
against the float images under uniform W8A8, W4A8, W3A8, W2A8 and W8A4, BOS-aware off and on.
Figures: bench/results/embedded_model-DATE.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from machine import save, start

import mixdq
from mixdq.embedded import dataset
from mixdq.embedded.classifier import (
    SCORE_HEADER,
    AttributeClassifier,
    alignment,
    format_scores,
    labels,
    scores_against,
)
from mixdq.embedded.paths import EMBEDDED_CLASSIFIER_DIR
from mixdq.models.generation import generate_images

DEFAULTS = mixdq.generation_defaults()  # the embedded model: 4 steps, 64 px, 32 captions

def generate(pipe, captions, steps=DEFAULTS.num_inference_steps) -> torch.Tensor:
    return generate_images(pipe, captions, **(DEFAULTS.as_kwargs() | {"num_inference_steps": steps}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--captions", type=int, default=128)
    args = parser.parse_args()
    start(1)
    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    clf = AttributeClassifier.load(EMBEDDED_CLASSIFIER_DIR)

    x, scenes = dataset.sample(1024, seed=12345)
    with torch.no_grad():
        pred, truth = clf.predict(x), labels(scenes)
    acc = {k: (pred[k] == truth[k]).float().mean().item() for k in pred}
    exact = torch.stack([pred[k] == truth[k] for k in pred]).all(0).float().mean().item()
    print(f"classifier on 1024 data-set images: all five right {exact:.3f}; "
          + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))

    captions = dataset.evaluation_captions(args.captions)
    fp, float_alignment = {}, {}
    for steps in (1, 2, 4):
        fp[steps] = generate(pipe, captions, steps)
        float_alignment[steps] = alignment(clf, fp[steps], captions).mean().item()
        print(f"float, {steps} step(s): alignment {float_alignment[steps]:.3f} "
              f"on {len(captions)} held-out captions")
    ref = fp[DEFAULTS.num_inference_steps]

    times = []
    for i in range(10):
        t = time.perf_counter()
        pipe(captions[i], generator=torch.Generator().manual_seed(i), **DEFAULTS.as_kwargs())
        times.append(time.perf_counter() - t)
    print(f"one 64x64 image, {DEFAULTS.num_inference_steps} steps, 1 thread: "
          f"median {statistics.median(times) * 1e3:.0f} ms (bar: 300 ms)")

    inv = mixdq.build_inventory(pipe.unet)
    calibration = DEFAULTS.calibration(batch_size=32)
    mixdq.prepare(pipe)
    mixdq.calibrate(pipe, calibration)
    rows = []
    print(f"\n{'setting':<22} {SCORE_HEADER}")
    for w, a in ((8, 8), (4, 8), (3, 8), (2, 8), (8, 4)):
        for bos in (False, True):
            mixdq.set_bos_aware(pipe, bos)
            mixdq.apply_allocation(pipe, mixdq.Allocation.uniform(inv.names, w, a))
            scores = scores_against(clf, ref, generate(pipe, captions), captions)
            rows.append(dict(setting=f"W{w}A{a}", bos_aware=bos, **scores))
            print(f"W{w}A{a} BOS-aware {'on ' if bos else 'off'}    {format_scores(scores)}")
    mixdq.restore(pipe)
    save("embedded_model", dict(
        captions=len(captions), classifier_images=len(x), classifier_all_right=exact, classifier_accuracy=acc,
        float_alignment={f"{s} steps": v for s, v in float_alignment.items()},
        image_ms_median=statistics.median(times) * 1e3, steps=DEFAULTS.num_inference_steps, quantized=rows))


if __name__ == "__main__":
    main()
