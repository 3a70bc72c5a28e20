"""python -m mixdq.embedded: train the embedded model, stage by stage (rerun a stage to resume).

    python -m mixdq.embedded train vae          # ~16 min on 2 cores
    python -m mixdq.embedded train classifier
    python -m mixdq.embedded train text2image   # encodes a latent pool first
    python -m mixdq.embedded export             # into assets/embedded and assets/embedded-classifier
"""

import argparse
from pathlib import Path

import torch

from mixdq.embedded import stages
from mixdq.embedded.paths import EMBEDDED_CLASSIFIER_DIR, EMBEDDED_DIR

parser = argparse.ArgumentParser(prog="python -m mixdq.embedded", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--work", type=Path, default=Path("out/embedded"), help="checkpoints and outputs")
sub = parser.add_subparsers(dest="command", required=True)
p = sub.add_parser("train", help="train one stage; rerun the same command to resume")
p.add_argument("stage", choices=["vae", "classifier", "text2image"])
p.add_argument("--steps", type=int, default=None)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=2)
sub.add_parser("export", help="copy the trained pipeline and classifier into assets/")
args = parser.parse_args()
args.work.mkdir(parents=True, exist_ok=True)
if args.command == "export":
    stages.export(args.work, EMBEDDED_DIR, EMBEDDED_CLASSIFIER_DIR)
else:
    torch.set_num_threads(args.threads)
    kwargs = {"seed": args.seed} | ({"steps": args.steps} if args.steps else {})
    getattr(stages, f"train_{args.stage}")(args.work, **kwargs)
