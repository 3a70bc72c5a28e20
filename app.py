"""Start MixDQ Studio: `python app.py` (or `./run.sh studio`), then open the printed URL.

    python app.py                                   # the embedded model (and SDXL-Turbo's profile)
    python app.py --model sdxl-turbo                # its images too (weights from the HF cache or hub)
    python app.py --model ./my-sd-turbo --profile my-sd-turbo.json
    python app.py --model sdxl-turbo --device cpu   # where models run (default: the GPU, in fp16)

On a Hugging Face Space the environment says the same (`app.settings`: MIXDQ_STUDIO_MODELS,
MIXDQ_DEVICE, ...), and GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (0.0.0.0:7860) are honoured;
an explicit flag wins.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

import mixdq
from app import settings
from app.registry import ModelEntry, default_models
from app.settings import EMBEDDED
from app.startup import SHIPPED_PROFILES, load_served
from app.studio import THEME, build_demo


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MixDQ Studio")
    parser.add_argument("--model", help="also serve this model: a hub id, a local diffusers folder, or an "
                        f"architecture ({', '.join(mixdq.ARCHITECTURES)}); default: the embedded model")
    parser.add_argument("--profile", help="its sensitivity profile (JSON from `mixdq sensitivity` or "
                        "`mixdq import-mixdq`); SDXL-Turbo's ships with the studio")
    parser.add_argument("--device", help="where models run: cuda, cuda:N or cpu (default $MIXDQ_DEVICE, else the "
                        "GPU where there is one)")
    parser.add_argument("--dtype", help="float16, bfloat16 or float32 (default $MIXDQ_DTYPE, else float16 on a "
                        "GPU, float32 on a CPU)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 for all; default $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="default $GRADIO_SERVER_PORT or 7860")
    return parser.parse_args(argv)


def models_for(args: argparse.Namespace) -> tuple[dict[str, ModelEntry], str]:
    """The models the picker offers, and the one it opens on."""
    models = default_models()
    model = SHIPPED_PROFILES.get(args.model, args.model)
    if model is None or (model in models and args.profile is None):
        return models, model or EMBEDDED
    if args.profile is None:
        raise mixdq.ConfigError(
            f"the studio needs a sensitivity profile of {args.model}: measure one with "
            f"`mixdq sensitivity {args.model} -o profile.json` (hours on a GPU for a full-size model), "
            "then pass --profile profile.json"
        )
    mixdq.Profile.load(args.profile)  # a missing or damaged file fails here, with what to do
    models[model] = ModelEntry(model, model, Path(args.profile))
    return models, model


def studio_settings(args: argparse.Namespace, model: str) -> settings.StudioSettings:
    """The environment's settings; `--model` adds its model to those that make images."""
    env = settings.StudioSettings.from_env(device=args.device, dtype=args.dtype)
    models = env.models if args.model is None else tuple(dict.fromkeys((*env.models, model)))
    return settings.use(settings.StudioSettings(models, env.device, env.dtype, env.sweeps))


# Module scope on purpose: a ZeroGPU Space wants its models on `cuda` before any GPU call.
if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args()
    try:
        models, default = models_for(args)
        load_served(models, studio_settings(args, default))
    except mixdq.MixDQError as e:
        sys.exit(f"error: {e}")
    build_demo(models, default).launch(server_name=args.host, server_port=args.port, theme=THEME)
