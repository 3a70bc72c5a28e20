"""Deployed models, measured: UNet bytes held, peak resident memory and latency against FP32.

    .venv/bin/python bench/deploy.py [--models embedded,sd-turbo,sdxl-turbo] [--settings fp32,w8a8,w4a8,mixed]
                                     [--threads 2] [--cache-mb MB] [--compile] [--json FILE]
                                     [--device cuda --dtype float16]

Each (model, setting) runs in a fresh process, so one measurement's memory cannot leak into the
next. Peak RSS depends on glibc's allocator state too: its mmap threshold rises after large frees,
so the same call can peak ~100 MB higher after a different deployment history (README). Settings: FP32; uniform W8A8 (int8 kernels); uniform W4A8 (4-bit packed weights); a mixed
~4-bit allocation (embedded: the planner on the shipped profile at 4 average bits, A8; SD-Turbo,
which has no profile here: 3-bit `ff.net.2`, 8-bit conv_in/conv_out/time embedding, 4-bit the
rest, A8). Embedded: one 64x64 image, 4 steps. SD-Turbo: the full-size UNet (865 M parameters,
random weights, built from the shipped config) for one call at 512x512 (64x64 latents), batch 1.
Deployment chooses each layer's kernel by timing (`mixdq.deploy.kernels`); `--cache-mb` sets the
memory it may hold beyond the codes (shared scratch weights, pre-packed int8 weights; default:
deploy's own, 1/8 of the code bytes), counted in the UNet bytes.
Targets: SD-Turbo W4A8 and mixed ~4-bit A8 latency <= 0.6x FP32 at <= 0.15x bytes, W8A8 <= 0.5x;
embedded model every setting <= 1.15x FP32; peak RSS of a call not above earlier releases'.
`--compile` also runs every setting under torch.compile (`deploy(..., compile=True)`, and FP32
compiled the same way), with latency against FP32 eager (the target's baseline, what a user runs
without a compiler) and against FP32 compiled (the compiler's own gain taken out).
Every run writes per model and setting: bits, UNet bytes, peak RSS, latency (each with its
ratio to FP32), layers per kernel, and the CPU, to bench/results/deploy-MODELS[-compile][-aot]
[-DEVICE-DTYPE]-DATE.json (`--json FILE`: there too).
`--aot` (embedded model) also measures each quantized setting as a user who saved it after
`deploy(compile=True)` runs it: from the AOTInductor package, loaded in a process that never
compiled (no compiler resident); its UNet bytes are the package's size on disk.
`--device cuda --dtype float16` measures on a GPU as its users run it: the float baseline is the
model in `--dtype` (the "fp32" setting then means that dtype), each deployed layer computes with
`dequant` or `int-mm` (torch._int_mm on int8 tensor cores), whichever its timing on the GPU
favours (oneDNN's int8 kernels are CPU-only), and the peak of CUDA memory allocated is printed
beside peak RSS. `sdxl-turbo` (its full-size UNet, random weights, 512 px) is meant for a GPU:
on 2 CPU cores its deployment times every kernel of 794 layers for a long while.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from machine import cpu_summary, save, start

import mixdq
from mixdq.core.assets import ASSETS
from mixdq.deploy import deploy, load_deployed_pipeline, read_manifest, report, save_deployed
from mixdq.deploy.compiling import compile_unet
from mixdq.embedded import dataset

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = ("fp32", "w8a8", "w4a8", "mixed", "w8", "w4")  # w8, w4: weights only
DEFAULT_SETTINGS = ("fp32", "w8a8", "w4a8", "mixed")
COMPILE_SUFFIX = "+compile"  # a setting's suffix: the UNet runs under torch.compile
AOT_SUFFIX = "+aot"  # ... or from its saved AOTInductor package, loaded in a fresh process



def sd_turbo_mixed(names: list[str]) -> mixdq.Allocation:
    def bits(n):
        if n.endswith("ff.net.2"):
            return 3
        if n in ("conv_in", "conv_out") or n.startswith("time_embedding"):
            return 8
        return 4

    return mixdq.Allocation({n: bits(n) for n in names}, {n: 8 for n in names})


def embedded_mixed(act_bits: int | None = 8) -> mixdq.Allocation:
    """The planner's weights at 4 average bits on the shipped profile, with `act_bits` activations
    everywhere (the planner's plan is weight-only unless asked for activations)."""

    weights = mixdq.Planner(mixdq.Profile.load(ASSETS / "profiles" / "embedded.json")).plan(avg_bits=4.0).allocation.weights
    return mixdq.Allocation(weights, dict.fromkeys(weights, act_bits))


def _one_image(pipe):
    """What the embedded model's figures time: one held-out caption, seed 0, its default sampling."""

    caption, kwargs = dataset.evaluation_captions(1)[0], mixdq.generation_defaults().as_kwargs()
    return lambda: pipe(caption, generator=torch.Generator().manual_seed(0), **kwargs)


def embedded(setting: str, cache_bytes: int | None, compile: bool, device: str, dtype: torch.dtype) -> dict:
    pipe = mixdq.load_pipeline(dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    defaults = mixdq.generation_defaults()
    inventory = mixdq.build_inventory(pipe.unet)
    allocation = _allocation(setting, inventory.names, embedded_mixed)
    call = _one_image(pipe)
    if allocation is not None:
        calibration = defaults.calibration(batch_size=32)
        mixdq.quantize_(pipe, allocation, calibration=calibration)
        deploy(pipe, cache_bytes=cache_bytes, compile=compile)
    elif compile:
        compile_unet(pipe.unet, call)
    return _report(pipe, call, inventory, allocation, repeats=10, dtype=dtype)


def embedded_aot(setting: str, folder: str, prepare: bool) -> dict:
    """`prepare`: deploy with compile=True and save to `folder` (AOTInductor package included);
    else, in a process that never compiled, load the package and measure it. UNet bytes: the
    package on disk (codes, scales and machine code)."""

    if prepare:
        pipe = mixdq.load_pipeline()
        pipe.set_progress_bar_config(disable=True)
        allocation = _allocation(setting, mixdq.load_inventory(None).names, embedded_mixed)
        mixdq.quantize_(pipe, allocation, calibration=mixdq.generation_defaults().calibration(batch_size=32))
        deploy(pipe, compile=True)
        save_deployed(pipe, folder)
        return {}
    pipe = load_deployed_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    call = _one_image(pipe)
    manifest = read_manifest(folder)
    r = report(pipe, mixdq.load_inventory(None), mixdq.Allocation.from_dict(manifest["allocation"]), call,
               repeats=10).to_dict()
    package = Path(folder) / manifest["aot"]["file"]
    return r | dict(unet_bytes=package.stat().st_size, measured_weight_bytes=package.stat().st_size,
                    kernels={"aot package": len(manifest["layers"])}, layers=len(manifest["layers"]))


def full_size(arch: str, setting: str, cache_bytes: int | None, compile: bool, device: str,
              dtype: torch.dtype) -> dict:
    """A full-size UNet of `arch` (SD-Turbo, SDXL-Turbo) with random weights, one call at 512 px, batch 1."""
    config = mixdq.load_unet_config(arch)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config).eval()
    inventory = mixdq.build_inventory(unet)
    unet.to(device, dtype)
    allocation = _allocation(setting, inventory.names, lambda: sd_turbo_mixed(inventory.names))
    g = torch.Generator().manual_seed(0)
    text = torch.randn(1, 77, config["cross_attention_dim"], generator=g).to(device, dtype)
    latents = torch.randn(1, 4, 64, 64, generator=g).to(device, dtype)
    extra = {}
    if config.get("addition_embed_type") == "text_time":  # SDXL: pooled text and the size/crop ids
        pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
        extra = dict(added_cond_kwargs=dict(text_embeds=torch.randn(1, pooled, generator=g).to(device, dtype),
                                            time_ids=torch.tensor([[512, 512, 0, 0, 512, 512]]).to(device, dtype)))
    call = lambda: unet(latents, 999, encoder_hidden_states=text, **extra)  # noqa: E731
    if allocation is not None:
        mixdq.prepare(unet)
        with mixdq.calibrating(unet), torch.no_grad():
            call()
        mixdq.apply_allocation(unet, allocation)
        deploy(unet, bos=text[0, 0], sample=call, cache_bytes=cache_bytes, compile=compile)
    elif compile:
        compile_unet(unet, call)
    return _report(unet, call, inventory, allocation, repeats=2, dtype=dtype)


def _allocation(setting: str, names: list[str], mixed) -> mixdq.Allocation | None:
    if setting == "fp32":
        return None
    if setting == "mixed":
        return mixed()
    return mixdq.Allocation.uniform(names, int(setting[1]), int(setting[3]) if len(setting) > 2 else None)  # "w8a8"


def _report(model, call, inventory, allocation, repeats, dtype) -> dict:
    r = report(model, inventory, allocation, call, repeats=repeats, fp_bits=torch.finfo(dtype).bits).to_dict()
    if allocation is None:
        r["kernels"] = dict.fromkeys(r["kernels"], 0) | {"float": len(inventory)}
    return r | dict(layers=len(inventory))


def child(model: str, setting: str, threads: int, cache_bytes: int | None, device: str, dtype: str,
          aot_folder: str | None, prepare: bool) -> None:
    torch.set_num_threads(threads)
    with torch.no_grad():
        if setting.endswith(AOT_SUFFIX):
            return print(json.dumps(embedded_aot(setting.removesuffix(AOT_SUFFIX), aot_folder, prepare)))
        base, compiled, _ = setting.partition(COMPILE_SUFFIX)
        measure = embedded if model == "embedded" else functools.partial(full_size, model)
        print(json.dumps(measure(base, cache_bytes, bool(compiled), device, getattr(torch, dtype))))


def _with_ratios(results: dict) -> dict:
    fp = results["fp32"]
    fp_compiled = results.get("fp32" + COMPILE_SUFFIX)
    out = {}
    for setting, r in results.items():
        ratio = lambda key: None if r[key] is None or fp[key] is None else r[key] / fp[key]  # noqa: E731, B023
        out[setting] = dict(bits=r["avg_weight_bits"], unet_bytes=r["unet_bytes"], unet_bytes_x_fp32=ratio("unet_bytes"),
                            peak_rss_bytes=r["peak_rss_bytes"], peak_rss_x_fp32=ratio("peak_rss_bytes"),
                            latency_s=r["latency_s"], latency_x_fp32=ratio("latency_s"), kernels=r["kernels"],
                            peak_gpu_bytes=r["peak_gpu_bytes"], peak_gpu_x_fp32=ratio("peak_gpu_bytes"),
                            simulated_weight_bytes=r["simulated_weight_bytes"],
                            measured_weight_bytes=r["measured_weight_bytes"])
        if fp_compiled is not None:  # the compiler's own gains, apart: compiled against compiled
            out[setting]["latency_x_fp32_compiled"] = r["latency_s"] / fp_compiled["latency_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="embedded,sd-turbo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-mb", type=float, default=None,
                        help="memory allowance beyond the codes, MB (default: deploy's, 1/8 of the code bytes)")
    parser.add_argument("--settings", default=",".join(DEFAULT_SETTINGS),
                        help=f"which of {','.join(SETTINGS)} (fp32 is always run)")
    parser.add_argument("--device", default="cpu", help="torch device (cuda: dequant or int-mm per layer, timed)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="the model's float dtype (the baseline; GPUs: float16)")
    parser.add_argument("--compile", action="store_true",
                        help="also run every setting under torch.compile (deploy(compile=True); FP32 compiled alike)")
    parser.add_argument("--aot", action="store_true",
                        help="embedded: also each quantized setting from its saved AOTInductor package (save_deployed "
                             "after compile=True), loaded and measured in a process that never compiled")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "SETTING"), help=argparse.SUPPRESS)
    parser.add_argument("--aot-folder", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cache_bytes = None if args.cache_mb is None else int(args.cache_mb * 1e6)
    if args.aot and (args.device != "cpu" or args.dtype != "float32"):
        parser.error("--aot measures CPU float32 packages (what save_deployed makes): drop --device/--dtype")
    if args.child:
        return child(*args.child, args.threads, cache_bytes, args.device, args.dtype, args.aot_folder, args.prepare)
    start(args.threads)
    everything = dict(cpu=cpu_summary(args.threads), cache_mb=args.cache_mb, models={}, device=args.device,
                      dtype=args.dtype, gpu=torch.cuda.get_device_name() if args.device.startswith("cuda") else None)
    if everything["gpu"]:
        print(f"GPU: {everything['gpu']}, float baseline in {args.dtype}")
    for model in args.models.split(","):
        results = {}
        chosen = ("fp32", *[s for s in SETTINGS if s != "fp32" and s in args.settings.split(",")])
        aot = tuple(s + AOT_SUFFIX for s in chosen if s != "fp32") if args.aot and model == "embedded" else ()
        for setting in chosen + (tuple(s + COMPILE_SUFFIX for s in chosen) if args.compile else ()) + aot:
            cache = [] if args.cache_mb is None else ["--cache-mb", str(args.cache_mb)]
            command = [sys.executable, __file__, "--child", model, setting, "--threads", str(args.threads),
                       "--device", args.device, "--dtype", args.dtype, *cache]
            with tempfile.TemporaryDirectory() as folder:
                steps = [[*command, "--aot-folder", folder, "--prepare"], [*command, "--aot-folder", folder]]
                for step in steps if setting in aot else [command]:
                    out = subprocess.run(step, capture_output=True, text=True, cwd=ROOT)
                    if out.returncode != 0:
                        break
            if out.returncode != 0:
                print(f"{model} {setting}: failed\n{out.stderr[-2000:]}")
                continue
            results[setting] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{model} {setting}: {results[setting]['latency_s'] * 1e3:.0f} ms", flush=True)  # long runs
        fp = results["fp32"]
        everything["models"][model] = _with_ratios(results)
        print(f"\n{model} ({args.threads} threads; ratios against FP32 in the same run"
              + (", and against FP32 compiled)" if args.compile else ")"))
        print(f"{'setting':<14} {'bits':>5} {'UNet MB':>8} {'x FP32':>7} {'weights: simulated':>19} {'measured':>9} "
              f"{'RSS before':>10} {'peak RSS MB':>11} {'x FP32':>7} {'latency':>9} {'x FP32':>7} {'x compiled':>10}"
              f"{' peak GPU MB  x FP32' if everything['gpu'] else ''}  layers per kernel")
        mb = lambda b: float("nan") if b is None else b / 1e6  # noqa: E731
        for setting, r in results.items():
            x = everything["models"][model][setting]
            print(f"{setting:<14} {r['avg_weight_bits']:5.2f} {r['unet_bytes'] / 1e6:8.1f} {x['unet_bytes_x_fp32']:7.3f} "
                  f"{r['simulated_weight_bytes'] / 1e6:16.1f} MB {r['measured_weight_bytes'] / 1e6:6.1f} MB "
                  f"{mb(r['resident_before_bytes']):10.0f} {mb(r['peak_rss_bytes']):11.0f} "
                  f"{mb(r['peak_rss_bytes']) / mb(fp['peak_rss_bytes']):7.3f} "
                  f"{r['latency_s'] * 1e3:7.0f}ms {x['latency_x_fp32']:7.2f} {x.get('latency_x_fp32_compiled', math.nan):10.2f}"
                  + (f" {mb(r['peak_gpu_bytes']):11.0f} {x['peak_gpu_x_fp32'] or math.nan:7.3f}" if everything["gpu"] else "")
                  + "  "
                  + ", ".join(f"{k} {n}" for k, n in r["kernels"].items() if n))
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    modes = [m for m, on in (("compile", args.compile), ("aot", args.aot)) if on]
    where = [] if args.device == "cpu" and args.dtype == "float32" else [args.device, args.dtype]
    save("deploy", {k: v for k, v in everything.items() if k != "cpu"} | dict(settings=args.settings),
         tag="-".join([*args.models.split(","), *modes, *where]))


if __name__ == "__main__":
    main()
