"""`python -m mixdq`: the engine from the command line, for headless work."""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from .allocation import Allocation
from .config import ACT_BITS, WEIGHT_BITS, WeightQuantConfig
from .errors import MixDQError
from .memory import memory_report
from .models import ARCHITECTURES, load_inventory

MODEL_HELP = (
    f"{', '.join(ARCHITECTURES)} (full-size architecture from its shipped config, no weights), "
    "a Hugging Face hub id, or a local diffusers folder; default: the embedded model"
)


def _bits(value: str):
    return None if value == "fp" else int(value)


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
        allocation = Allocation.uniform(inv.names, _bits(args.weight_bits), _bits(args.act_bits))
    report = memory_report(inv, allocation, WeightQuantConfig(symmetric=not args.asymmetric))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mixdq",
        description="MixDQ engine: mixed-precision quantization of few-step diffusion UNets.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_model(p):
        p.add_argument("model", nargs="?", default=None, metavar="MODEL", help=MODEL_HELP)
        p.add_argument("--latent-size", type=int, default=None,
                       help="latent height/width (default: the UNet's sample_size)")
        p.add_argument("--json", action="store_true", help="print JSON")
        return p

    p = with_model(sub.add_parser("inventory", help="list every quantizable layer of a UNet"))
    p.set_defaults(func=cmd_inventory)

    p = with_model(sub.add_parser("memory", help="weight and activation memory of an allocation"))
    bits = "|".join(map(str, WEIGHT_BITS))
    p.add_argument("--weight-bits", default="8", choices=[*map(str, WEIGHT_BITS), "fp"],
                   help=f"uniform weight bits ({bits}|fp; default 8)")
    p.add_argument("--act-bits", default="8", choices=[*map(str, ACT_BITS), "fp"],
                   help="uniform activation bits (4|6|8|fp; default 8)")
    p.add_argument("--allocation", metavar="FILE",
                   help="an allocation JSON file, or a MixDQ weight-bits YAML file")
    p.add_argument("--asymmetric", action="store_true", help="count a zero-point per channel")
    p.set_defaults(func=cmd_memory)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MixDQError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
