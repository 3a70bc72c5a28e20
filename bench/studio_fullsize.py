"""The studio's own code path on a full-size model with random weights, as a user drives it:
load, calibrate, the FP image, allocations covering every weight bit-width, both baselines, a
Measure-style batch (one GPU call) and an Export; seconds per step and memory against the float
pipeline's.

    .venv/bin/python bench/studio_fullsize.py                       # SD-Turbo, CPU, 256 px images
    .venv/bin/python bench/studio_fullsize.py --model sdxl-turbo --device cuda --size 512

Each part runs in a process of its own, so each peak is its own: the float pipeline alone (load,
one image), then the scripted session. The random-weight model folder is written once (--folder,
default ~/.cache/mixdq-studio/bench/MODEL-DTYPE) and loaded through `mixdq.load_pipeline` like a
download. On a CPU, `--size 256` keeps the run to minutes; the weights, which the memory target is
about, are full size whatever the image size. Results: bench/results/studio_fullsize-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from machine import save, start

import mixdq
from app import gpu, images, settings
from app.pipelines import Job
from app.registry import ModelEntry
from app.startup import load_served
from mixdq.core.device import format_gb, peak_rss_bytes, process_rss_bytes
from mixdq.models.random_weights import random_pipeline_folder
from mixdq.quant.layers import quant_layers

PROMPTS = ("a photograph of an astronaut riding a horse", "a bowl of fruit on a wooden kitchen table")


def memory(device: str) -> dict:
    out = dict(rss=process_rss_bytes(), peak_rss=peak_rss_bytes())
    if device.startswith("cuda"):
        out.update(cuda=torch.cuda.memory_allocated(), peak_cuda=torch.cuda.max_memory_allocated())
    return out


def float_child(folder: str, device: str, dtype: str, size: int) -> dict:
    """The float pipeline alone, running the batches the session runs (a calibration batch of 8
    prompts, a Measure batch of 2, one image): what serving this model in float would hold, so
    the session's excess is what quantization adds."""
    t = time.perf_counter()
    pipe = mixdq.load_pipeline(folder, device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    loaded_s = time.perf_counter() - t
    run = lambda prompts: mixdq.generate_images(pipe, list(prompts), num_inference_steps=1, guidance_scale=0.0,
                                                height=size, width=size)
    with torch.no_grad():
        pipe(list(mixdq.CalibrationConfig().prompts), num_inference_steps=1, guidance_scale=0.0, height=size,
             width=size, output_type="latent")  # as calibration runs it: the UNet only
        run(PROMPTS)
        t = time.perf_counter()
        run(PROMPTS[:1])
    return dict(load_s=loaded_s, image_s=time.perf_counter() - t, unet_bytes=mixdq.deploy.measure.module_bytes(pipe),
                **memory(device))


def session_child(folder: str, device: str, dtype: str, size: int, export: bool) -> dict:
    """The scripted session, through the studio's own objects (settings, start-up, entry, GPU boundary)."""
    studio = settings.use(settings.StudioSettings((folder,), device, dtype))
    entry = ModelEntry(folder, folder, Path("unused: this bench picks its allocations itself"))
    steps = []

    def step(name: str, fn):
        t = time.perf_counter()
        out = fn()
        layers = quant_layers(gpu.PIPELINES[folder].pipe)
        cached = sum(layer._weight_cache.nbytes() for layer in layers.values())
        steps.append(dict(step=name, seconds=round(time.perf_counter() - t, 2), cached_weights=cached, **memory(device)))
        print(f"  {name:<42} {steps[-1]['seconds']:8.1f} s   RSS {format_gb(steps[-1]['rss']):>9}   "
              f"peak {format_gb(steps[-1]['peak_rss']):>9}   quantized weights held {format_gb(cached)}", flush=True)
        return out

    step("load (start-up)", lambda: load_served({folder: entry}, studio))
    loaded = gpu.PIPELINES[folder]
    loaded.defaults = replace(loaded.defaults, height=size, width=size)
    names = list(quant_layers(loaded.pipe))
    prompt = (PROMPTS[0],)

    def compare(allocation, bos=True):
        return entry.images([Job(prompt, 0), Job(prompt, 0, allocation, bos)])

    step("calibrate + FP image + W8A8 image (first Compare)", lambda: compare(mixdq.Allocation.uniform(names, 8, 8)))
    for bits in mixdq.WEIGHT_BITS:
        step(f"Compare: uniform W{bits}A8", lambda bits=bits: compare(mixdq.Allocation.uniform(names, bits, 8)))
    step("Baseline: naive W8A8 (BOS-aware off)", lambda: compare(mixdq.Allocation.uniform(names, 8, 8), bos=False))
    step("Baseline: uniform W4A8, same memory", lambda: compare(mixdq.Allocation.uniform(names, 4, 8)))
    g = torch.Generator().manual_seed(0)
    choice = torch.tensor([2, 4, 8])[torch.randint(0, 3, (len(names),), generator=g)].tolist()
    mixed = mixdq.Allocation(dict(zip(names, choice)), {n: 8 for n in names})
    step("Compare: mixed 2/4/8-bit allocation", lambda: compare(mixed))
    # the sensitivity view's "See it" and the content-vs-quality view: layers alone, FP cached
    content = next(n for n in names if n.endswith("attn2.to_k"))
    quality = next(n for n in names if n.endswith("resnets.0.conv1"))
    step("See it: one layer alone (a click)", lambda: images.compare(entry, list(prompt), 0,
                                                                     mixdq.Allocation({content: 2})))
    step("Content vs quality: two layers alone", lambda: entry.rendered(
        [Job(prompt, 0), Job(prompt, 0, mixdq.Allocation({content: 2})), Job(prompt, 0, mixdq.Allocation({quality: 2}))]))
    measure_jobs = [Job(PROMPTS, 1), *(Job(PROMPTS, 1, a) for a in
                                        (mixdq.Allocation.uniform(names, 4, 8), mixdq.Allocation.uniform(names, 8, 8),
                                         mixed))]
    step("Measure-style batch: FP + 3 allocations x 2 prompts", lambda: entry.images(measure_jobs))

    def flip():  # what changing every layer's width costs: one fake-quantization pass over the weights
        layers = quant_layers(loaded.pipe)
        with torch.no_grad():
            for layer in layers.values():
                layer.quantized_weight(3 if layer.weight_bits != 3 else 5)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step("flip: re-quantize every weight to a new width", flip)
    if export:
        result = step("Export: deployed checkpoint of the mixed allocation", lambda: entry.export("deployed", mixed))
        Path(result["archive"]).unlink(missing_ok=True)
    return dict(steps=steps, unet_params=sum(p.numel() for p in loaded.pipe.unet.parameters()))


def child(args) -> int:
    torch.set_num_threads(args.threads)
    fn = float_child if args.child == "float" else session_child
    extra = () if args.child == "float" else (not args.no_export,)
    print("RESULT " + json.dumps(fn(str(args.folder), args.device, args.dtype, args.size, *extra)), flush=True)
    return 0


def run_child(role: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", role, "--folder", str(args.folder), "--device", args.device,
           "--dtype", args.dtype, "--size", str(args.size), "--threads", str(args.threads)]
    if args.no_export:
        cmd.append("--no-export")
    with tempfile.TemporaryDirectory(prefix="mixdq-bench-") as cache:  # no calibration saved by an earlier run
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True,
                              env={**os.environ, settings.CACHE_ENV: cache})
    lines = proc.stdout.splitlines()
    print("\n".join(line for line in lines if not line.startswith("RESULT ")))
    return json.loads(next(line for line in reversed(lines) if line.startswith("RESULT "))[7:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sd-turbo", choices=["sd-turbo", "sdxl-turbo"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", help="default: float16 on CUDA, float32 on a CPU")
    parser.add_argument("--size", type=int, help="image height and width (default 256 on a CPU, 512 on a GPU)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folder", type=Path, help="the random-weight model folder (written once)")
    parser.add_argument("--no-export", action="store_true", help="skip the Export step")
    parser.add_argument("--child", choices=["float", "session"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    placement = mixdq.Placement.resolve(args.device, args.dtype)
    args.dtype = placement.dtype_name
    args.size = args.size or (512 if placement.on_cuda else 256)
    args.folder = args.folder or settings.cache_root() / "bench" / f"{args.model}-{args.dtype}"
    if args.child:
        return child(args)
    start(args.threads)
    gpu_name = torch.cuda.get_device_name() if placement.on_cuda else None
    if gpu_name:
        print(f"GPU: {gpu_name}")
    if not args.folder.exists():
        print(f"writing {args.model} with random weights to {args.folder} (once)")
        random_pipeline_folder(args.model, args.folder, dtype=placement.dtype)
    print(f"{args.model}, {placement.describe()}, {args.size} px, 1 step")
    print("float pipeline alone (load; batches of 8, 2 and 1 prompts):")
    base = run_child("float", args)
    print(f"  load {base['load_s']:.1f} s, image {base['image_s']:.1f} s, peak RSS {format_gb(base['peak_rss'])}, "
          f"float UNet {format_gb(base['unet_bytes'])}")
    print("the studio's session:")
    session = run_child("session", args)
    peak = max(s["peak_rss"] for s in session["steps"])
    over = (peak - base["peak_rss"]) / base["unet_bytes"]
    summary = dict(peak_rss=peak, float_peak_rss=base["peak_rss"], unet_bytes=base["unet_bytes"],
                   peak_over_float_in_unets=round(over, 3))
    print(f"\npeak RSS over the session {format_gb(peak)} = float pipeline {format_gb(base['peak_rss'])} "
          f"+ {over:.2f}x the float UNet (target <= 1.1x)")
    if placement.on_cuda:
        cuda_peak = max(s["peak_cuda"] for s in session["steps"])
        summary.update(peak_cuda=cuda_peak, float_peak_cuda=base["peak_cuda"])
        print(f"peak GPU memory {format_gb(cuda_peak)} (float pipeline {format_gb(base['peak_cuda'])}; target <= 14 GB)")
    compares = [s["seconds"] for s in session["steps"] if s["step"].startswith("Compare: uniform")]
    print(f"seconds per Compare (one quantized image, FP cached): median {sorted(compares)[len(compares) // 2]:.1f}")
    summary.update(compare_median_s=sorted(compares)[len(compares) // 2])
    save("studio_fullsize", dict(model=args.model, device=placement.device, dtype=args.dtype, size=args.size,
                                 gpu=gpu_name, float=base, **session, summary=summary),
         tag=f"{args.model}-{(gpu_name or 'cpu').replace(' ', '-')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
