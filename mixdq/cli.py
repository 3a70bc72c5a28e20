"""`python -m mixdq`: the engine from the command line, for headless work."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from mixdq.core.bits import ACT_BITS, FP, WEIGHT_BITS, bits_choices, format_bits, parse_bits
from mixdq.core.device import Placement
from mixdq.core.errors import ConfigError, MixDQError
from mixdq.deploy import (
    deploy,
    deployed_layers,
    kernel_counts,
    kernel_table,
    module_bytes,
    read_manifest,
    save_deployed,
)
from mixdq.deploy.compiling import require_compiler
from mixdq.deploy.manifest import KERNELS
from mixdq.deploy.openvino import export_openvino, read_openvino_manifest
from mixdq.models.architectures import ARCHITECTURES, generation_defaults
from mixdq.models.loading import load_inventory, load_pipeline
from mixdq.planning.config import PlanConfig
from mixdq.planning.planner import Planner
from mixdq.planning.recipe import plan_mixdq
from mixdq.quant.allocation import Allocation
from mixdq.quant.config import QuantConfig, WeightQuantConfig
from mixdq.quant.memory import memory_report
from mixdq.quant.quantize import needs_calibration, quantize_
from mixdq.sensitivity.config import SweepConfig
from mixdq.sensitivity.distributed import Workers
from mixdq.sensitivity.driver import sweep
from mixdq.sensitivity.importers import import_mixdq
from mixdq.sensitivity.profile import Profile

MODEL_HELP = (
    "a Hugging Face hub id, a local diffusers folder, or an architecture name "
    f"({', '.join(ARCHITECTURES)}: its shipped config, where no weights are needed, else its hub id); "
    "default: the embedded model"
)


def _weight_config(args) -> WeightQuantConfig:
    return WeightQuantConfig(symmetric=not args.asymmetric)


def _inventory_for(args):
    return load_inventory(args.model, latent_size=args.latent_size)


def cmd_inventory(args) -> int:
    inv = _inventory_for(args)
    if args.json:
        print(inv.to_json(), end="")
        return 0
    df = inv.to_dataframe()[["name", "kind", "params", "act_elements", "macs", "group", "layer_type"]]
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(df.to_string(index=False))
    counts = df.groupby("kind").size().to_dict()
    print(
        f"\n{len(inv)} layers ({', '.join(f'{v} {k}' for k, v in counts.items())}), "
        f"{inv.total_params / 1e6:,.1f} M weight parameters, "
        f"{len(inv.group('content'))} content / {len(inv.group('quality'))} quality"
    )
    return 0


def cmd_memory(args) -> int:
    inv = _inventory_for(args)
    if args.allocation:
        allocation = Allocation.load(args.allocation)
    else:
        allocation = Allocation.uniform(inv.names, parse_bits(args.weight_bits), parse_bits(args.act_bits))
    report = memory_report(inv, allocation, _weight_config(args))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def _int_list(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 2,4,8, got {value!r}") from None


def _prompts(args) -> tuple[str, ...]:
    """--prompts FILE, else the model's default prompts; the first --num-prompts of them."""
    if args.prompts:
        path = Path(args.prompts)
        if not path.is_file():
            raise ConfigError(f"no prompts file {path}; give a text file with one prompt per line")
        prompts = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    else:
        prompts = generation_defaults(args.model).prompts
    return prompts[: args.num_prompts] if args.num_prompts else prompts


def _sampling(args):
    """The model's generation defaults, with what the command line overrides."""
    d = generation_defaults(args.model)
    return replace(
        d,
        prompts=_prompts(args),
        num_inference_steps=args.steps or d.num_inference_steps,
        guidance_scale=d.guidance_scale if getattr(args, "guidance", None) is None else args.guidance,
        height=getattr(args, "resolution", None) or d.height,
        width=getattr(args, "resolution", None) or d.width,
    )


def cmd_sensitivity(args) -> int:
    if args.threads and not (args.workers or args.ray_address):
        torch.set_num_threads(args.threads)
    sampling = _sampling(args)
    config = SweepConfig(
        prompts=sampling.prompts,
        first_seed=args.seed,
        num_inference_steps=sampling.num_inference_steps,
        guidance_scale=sampling.guidance_scale,
        height=sampling.height,
        width=sampling.width,
        batch_size=args.batch_size,
        weight_bits=args.weight_bits,
        act_bits=args.act_bits,
        layers=args.layers,
        quant=QuantConfig(weight=_weight_config(args)),
    )
    placement = Placement.resolve(args.device, args.dtype)
    workers = None
    if args.workers or args.ray_address:

        workers = Workers(count=args.workers or 1, address=args.ray_address, model=args.model,
                          device=placement.device, dtype=placement.dtype_name, threads=args.threads)
        # the driver only hashes the weights and lists layers
        pipe = load_pipeline(args.model, device="cpu", dtype=placement.dtype)
    else:
        pipe = load_pipeline(args.model, device=placement.device, dtype=placement.dtype)
    profile = sweep(pipe, config, args.output, model_id=args.model or "embedded", restart=args.restart,
                    workers=workers)
    print(f"wrote {args.output}: {len(profile)} layers, {profile.meta['probes']} probes, "
          f"{profile.meta['elapsed_s']:.0f} s of probing")
    return 0


def cmd_import_mixdq(args) -> int:
    profile = import_mixdq(args.folder, bits=args.bits, architecture=args.architecture)
    profile.save(args.output)
    groups = pd.Series([layer.group for layer in profile]).value_counts().to_dict()
    print(f"wrote {args.output}: {len(profile)} layers ({groups.get('content', 0)} content, "
          f"{groups.get('quality', 0)} quality) of {profile.meta['model']}, sizes from "
          f"{profile.meta['sizes']}")
    return 0


def _locks(pairs: list[str], kind) -> dict:
    locks = {}
    for pair in pairs or []:
        name, sep, bits = pair.rpartition("=")
        if not sep or not name:
            raise ConfigError(f"--lock takes LAYER=BITS (BITS an integer or fp), got {pair!r}")
        locks[name] = FP if bits == FP else parse_bits(bits, kind)
    return locks


def _candidates(values: list[str]) -> dict:
    out = {}
    for value in values or []:
        group, sep, bits = value.partition("=")
        if not sep:
            raise ConfigError(f"--candidates takes GROUP=B,B,... (content or quality), got {value!r}")
        out[group] = _int_list(bits)
    return out


def cmd_allocate(args) -> int:
    profile = Profile.load(args.profile)
    config = PlanConfig(
        metric={"content": args.content_metric, "quality": args.quality_metric},
        content_weight=args.content_weight,
        weight_candidates=_candidates(args.candidates),
        act_candidates=_candidates(args.act_candidates),
        allow_fp=args.allow_fp,
        weight_locks=_locks(args.lock, "weight"),
        act_locks=_locks(args.act_lock, "activation"),
        weight=_weight_config(args),
    )
    planner = Planner(profile, config)
    budget = dict(budget_mb=args.budget_mb, avg_bits=args.avg_bits)
    if args.mode == "mixdq":
        result = plan_mixdq(planner, **budget, k=args.k, act_avg_bits=args.act_avg_bits, act_k=args.act_k)
    else:
        result = planner.plan(**budget, act_avg_bits=args.act_avg_bits, exact=args.exact)
    if args.output:
        result.allocation.save(args.output)
    if args.json:
        out = result.to_dict()
        if args.act_avg_bits is None:
            out.pop("activations", None)
        print(json.dumps(out, indent=2))
    else:
        counts = pd.Series([format_bits(b) for b in
                            (result.allocation.weight_bits(n) for n in profile.names)]).value_counts()
        print(f"{args.mode} allocation, {'exact ILP' if result.exact else 'live frontier'} "
              f"({result.solve_ms:.1f} ms): {result.weight_mb:,.1f} MB weights, "
              f"avg {result.avg_bits:.3f} bits, damage {result.damage:.5f}")
        print("weight bits: " + ", ".join(f"{b}: {n} layers" for b, n in counts.sort_index().items()))
        if result.act_avg_bits is not None:
            print(f"activations: avg {result.act_avg_bits:.3f} bits")
    return 0


def cmd_deploy(args) -> int:
    if args.compile:
        require_compiler()  # before calibrating, not after
    pipe = _quantized_pipeline(args)
    float_bytes = module_bytes(pipe)
    cache = None if args.cache_mb is None else int(args.cache_mb * 1e6)
    deploy(pipe, kernel=args.kernel, cache_bytes=cache, compile=args.compile)
    save_deployed(pipe, args.output, base_model=args.model)
    counts = kernel_counts(deployed_layers(pipe))
    print(f"wrote {args.output}: UNet {module_bytes(pipe) / 1e6:,.1f} MB held vs {float_bytes / 1e6:,.1f} MB "
          f"float ({module_bytes(pipe) / float_bytes:.3f}x); layers per kernel: "
          + ", ".join(f"{k} {n}" for k, n in counts.items() if n))
    return 0


def _quantized_pipeline(args, device: str | None = None, dtype: str | None = None):
    """The pipeline of MODEL, where it runs (--device/--dtype, or as given), with the allocation of
    --allocation applied (calibrated if needed)."""

    allocation = Allocation.load(args.allocation)
    pipe = load_pipeline(args.model, device=device or getattr(args, "device", None),
                         dtype=dtype or getattr(args, "dtype", None))
    config = QuantConfig(weight=_weight_config(args), self_attention_bits=args.self_attention_bits)
    calibration = _sampling(args).calibration() if needs_calibration(allocation, config) else None
    quantize_(pipe, allocation, config, calibration=calibration)
    return pipe


def cmd_export_openvino(args) -> int:
    pipe = _quantized_pipeline(args, device="cpu", dtype="float32")  # OpenVINO's runtime is the CPU's
    float_bytes = module_bytes(pipe)
    export_openvino(pipe, args.output, base_model=args.model)
    manifest = read_openvino_manifest(args.output)
    files = {name: f["bytes"] for name, f in manifest["files"].items()}
    unet = files.pop("unet.xml") + files.pop("unet.bin")  # like with like: the UNet's IR against the float UNet
    stored = Counter(entry["stored"] for entry in manifest["layers"].values())
    others = f"; also {sum(files.values()) / 1e6:,.1f} MB of float VAE decoder" if files else ""
    print(f"wrote {args.output}: UNet IR {unet / 1e6:,.1f} MB vs {float_bytes / 1e6:,.1f} MB float UNet "
          f"({unet / float_bytes:.3f}x){others}; weights stored as: "
          + ", ".join(f"{t} {n}" for t, n in sorted(stored.items())))
    return 0


def cmd_report(args) -> int:
    table = kernel_table(args.folder)
    if args.json:
        print(table.to_json(orient="records", indent=1, double_precision=15))
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 70):
            print(table.to_string(index=False))
        print("\nlayers per kernel: " + ", ".join(f"{k} {n}" for k, n in table["kernel"].value_counts().items()))
        manifest = read_manifest(args.folder)
        if manifest.get("compile"):
            aot = manifest.get("aot") or {}
            print(f"kernels chosen for torch.compile; saved ahead of time in {aot['file']} (torch {aot['torch']}), "
                  "which loading runs without a compiler" if "file" in aot else
                  "kernels chosen for torch.compile: loading the folder compiles the UNet")
    return 0


def _parents() -> dict[str, argparse.ArgumentParser]:
    """Arguments several commands share, each declared once."""

    def parent() -> argparse.ArgumentParser:
        return argparse.ArgumentParser(add_help=False)

    model = parent()
    model.add_argument("model", nargs="?", default=None, metavar="MODEL", help=MODEL_HELP)

    shape = parent()  # commands that read the UNet's layers from its config alone
    shape.add_argument("--latent-size", type=int, default=None,
                       help="latent height/width (default: the UNet's sample_size)")
    shape.add_argument("--json", action="store_true", help="print JSON")

    prompts = parent()
    prompts.add_argument("--prompts", metavar="FILE", help="text file, one prompt per line (default: "
                         "32 data-set captions for the embedded model, 8 everyday prompts otherwise)")
    prompts.add_argument("--num-prompts", type=int, metavar="N", help="use only the first N prompts")
    prompts.add_argument("--steps", type=int, help="sampling steps (default: the model's, e.g. 4 for "
                         "the embedded model, 1 for SDXL-Turbo)")

    asymmetric = parent()
    asymmetric.add_argument("--asymmetric", action="store_true",
                            help="asymmetric weights: a zero-point per channel (no int8 kernels)")
    placement = parent()
    placement.add_argument("--device", help="where the model runs: cuda, cuda:N or cpu (default $MIXDQ_DEVICE, else "
                           "the GPU where there is one)")
    placement.add_argument("--dtype", help="float16, bfloat16 or float32 (fp16, bf16, fp32; default $MIXDQ_DTYPE, "
                           "else float16 on a GPU, float32 on a CPU)")
    attention = parent()
    attention.add_argument("--self-attention-bits", type=int, choices=ACT_BITS, metavar="BITS",
                           help="also quantize every self-attention's query and key (symmetric, calibrated; "
                           "beyond MixDQ, as NNCF's PTQ does): OpenVINO then runs self-attention on int8")
    return dict(model=model, shape=shape, prompts=prompts, asymmetric=asymmetric, attention=attention,
                placement=placement)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixdq",
        description="MixDQ engine: mixed-precision quantization of few-step diffusion UNets.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    share = _parents()

    def command(name: str, func, help: str, parents=(), **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, parents=[share[x] for x in parents], **kw)
        p.set_defaults(func=func)
        return p

    command("inventory", cmd_inventory, "list every quantizable layer of a UNet", ["model", "shape"])

    p = command("memory", cmd_memory, "weight and activation memory of an allocation", ["model", "shape", "asymmetric"])
    p.add_argument("--weight-bits", default="8", choices=bits_choices("weight"),
                   help="uniform weight bits (default 8)")
    p.add_argument("--act-bits", default="8", choices=bits_choices("activation"),
                   help="uniform activation bits (default 8)")
    p.add_argument("--allocation", metavar="FILE",
                   help="an allocation JSON file, or a MixDQ weight-bits YAML file")

    p = command(
        "sensitivity", cmd_sensitivity,
        "measure every layer at every bit-width (SSIM and SQNR) and write a profile",
        ["model", "prompts", "asymmetric", "placement"],
        description="Quantize one layer at a time and compare with the floating-point run. "
        "Interrupted runs resume from PROFILE.partial.jsonl when started again with the same "
        "arguments.",
    )
    p.add_argument("-o", "--output", required=True, metavar="PROFILE", help="profile JSON to write")
    p.add_argument("--seed", type=int, default=0, help="prompt i uses seed SEED+i (default 0)")
    p.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    p.add_argument("--resolution", type=int, help="image height and width in pixels")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per pipeline call (default 32)")
    p.add_argument("--weight-bits", type=_int_list, default=WEIGHT_BITS, metavar="B,B,...",
                   help=f"weight bit-widths to probe (default {','.join(map(str, WEIGHT_BITS))}; empty: none)")
    p.add_argument("--act-bits", type=_int_list, default=ACT_BITS, metavar="B,B,...",
                   help=f"activation bit-widths to probe (default {','.join(map(str, ACT_BITS))}; empty: none)")
    p.add_argument("--layers", metavar="REGEX", help="probe only layers whose name matches")
    p.add_argument("--threads", type=int, help="CPU threads for torch (with --workers: per worker)")
    p.add_argument("--restart", action="store_true", help="discard a partial run instead of resuming")
    p.add_argument("--workers", type=int, metavar="N",
                   help="spread the probes over N Ray workers (a local Ray runtime; one GPU each with "
                   "--device cuda); needs `pip install 'mixdq-studio[distributed]'`")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="join an existing Ray cluster (e.g. auto, or HEAD:6379) instead of starting one")

    p = command("import-mixdq", cmd_import_mixdq, "make a profile from MixDQ's sensitivity YAML files")
    p.add_argument("folder", metavar="DIR", help="folder with weight_sqnr.yaml, act_ssim.yaml, "
                   "weight_ratio.yaml, ... (names need weight|act and sqnr|ssim|ratio)")
    p.add_argument("-o", "--output", required=True, metavar="PROFILE", help="profile JSON to write")
    p.add_argument("--bits", type=_int_list, default=(2, 4, 8), metavar="B,B,...",
                   help="bit-width of each listed score (default 2,4,8, as MixDQ writes them)")
    p.add_argument("--architecture", default="auto",
                   help=f"take exact layer sizes from {'|'.join(ARCHITECTURES)} (default: the one "
                   "whose layer names match, else the ratio files)")

    p = command("allocate", cmd_allocate, "choose bits per layer within a budget, from a profile", ["asymmetric"])
    p.add_argument("--profile", required=True, metavar="PROFILE")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-mb", type=float, metavar="MB", help="packed UNet weight megabytes")
    budget.add_argument("--avg-bits", type=float, metavar="BITS", help="parameter-weighted average weight bits")
    p.add_argument("--act-avg-bits", type=float, metavar="BITS",
                   help="also allocate activations within this input-size-weighted average")
    p.add_argument("--mode", choices=["decoupled", "mixdq"], default="decoupled",
                   help="decoupled: one program on the normalised damage (default); mixdq: the "
                   "paper's two programs with target bands")
    p.add_argument("--k", type=float, default=1.0, help="mixdq mode: content / quality average weight bits")
    p.add_argument("--act-k", type=float, default=1.0, help="mixdq mode: the same for activations")
    p.add_argument("--exact", action="store_true", help="solve the integer program (PuLP/CBC) "
                   "instead of the live frontier")
    p.add_argument("--content-weight", type=float, default=0.5,
                   help="0..1: how much content damage counts against quality damage (default 0.5)")
    p.add_argument("--content-metric", choices=["ssim", "sqnr"], default="ssim")
    p.add_argument("--quality-metric", choices=["ssim", "sqnr"], default="sqnr")
    p.add_argument("--candidates", action="append", metavar="GROUP=B,B",
                   help="allowed weight bits of a group, e.g. content=2,4,8 (repeatable)")
    p.add_argument("--act-candidates", action="append", metavar="GROUP=B,B")
    p.add_argument("--allow-fp", action="store_true", help="floating point is a choice for every layer")
    p.add_argument("--lock", action="append", metavar="LAYER=BITS", help="pin a layer's weights (BITS or fp)")
    p.add_argument("--act-lock", action="append", metavar="LAYER=BITS")
    p.add_argument("--json", action="store_true", help="print the allocation and totals as JSON")
    p.add_argument("-o", "--output", metavar="FILE", help="also save the allocation (JSON, or .yaml for MixDQ)")

    p = command("deploy", cmd_deploy, "make a really low-bit UNet from an allocation and save it",
                ["model", "prompts", "asymmetric", "attention", "placement"])
    p.add_argument("--allocation", required=True, metavar="FILE", help="allocation JSON (or MixDQ weight YAML)")
    p.add_argument("-o", "--output", required=True, metavar="FOLDER")
    p.add_argument("--kernel", default="auto", choices=("auto", *KERNELS),
                   help="auto (default): each layer takes the fastest kernel timed on its own input shape")
    p.add_argument("--cache-mb", type=float, metavar="MB",
                   help="memory beyond the codes that fast kernels may hold (default: 1/8 of the code bytes)")
    p.add_argument("--compile", action="store_true",
                   help="choose kernels for torch.compile and compile the UNet (needs a C++ compiler; about a "
                   "minute for the embedded model); the folder also holds it compiled ahead of time (unet.pt2), which "
                   "loading runs without a compiler")

    p = command("export-openvino", cmd_export_openvino,
                "write the UNet as an OpenVINO IR with each layer at its allocated bits",
                ["model", "prompts", "asymmetric", "attention"],
                description="Quantize MODEL with the allocation (calibrating activations on the prompts) "
                "and export its UNet for OpenVINO: integer weights at their own bits, activations "
                "quantized with the calibrated ranges. Load it with "
                "mixdq.deploy.load_openvino_pipeline(FOLDER). Needs pip install 'mixdq-studio[openvino]'.")
    p.add_argument("--allocation", required=True, metavar="FILE", help="allocation JSON (or MixDQ weight YAML)")
    p.add_argument("-o", "--output", required=True, metavar="FOLDER", help="folder to write (replaced when complete)")

    p = command("report", cmd_report, "show a deployed model's layers: bits, kernel, and the timings behind it")
    p.add_argument("folder", metavar="FOLDER", help="a folder written by `mixdq deploy`")
    p.add_argument("--json", action="store_true", help="print the table as JSON records")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MixDQError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
