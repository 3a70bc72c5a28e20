"""Start MixDQ Studio: `python app.py` (or `./run.sh studio`), then open the printed URL.

    python app.py                                   # the embedded model (and SDXL-Turbo's profile)
    python app.py --model sdxl-turbo                # images too, once its weights are cached
    python app.py --model ./my-sd-turbo --profile my-sd-turbo.json

On a Hugging Face Space, GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (0.0.0.0:7860) are honoured;
an explicit --host / --port wins.
"""

import argparse
import os
import sys
from pathlib import Path

import mixdq
from app.session import EMBEDDED, ModelEntry, default_models
from app.studio import THEME, build_demo

# names the picker already serves with a shipped profile
SHIPPED_PROFILES = {"embedded": EMBEDDED, "sdxl-turbo": "sdxl-turbo", "stabilityai/sdxl-turbo": "sdxl-turbo"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MixDQ Studio")
    parser.add_argument("--model", help="also serve this model: a hub id, a local diffusers folder, or an "
                        f"architecture ({', '.join(mixdq.ARCHITECTURES)}); default: the embedded model")
    parser.add_argument("--profile", help="its sensitivity profile (JSON from `mixdq sensitivity` or "
                        "`mixdq import-mixdq`); SDXL-Turbo's ships with the studio")
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


if __name__ == "__main__":
    args = parse_args()
    try:
        models, default = models_for(args)
    except mixdq.MixDQError as e:
        sys.exit(f"error: {e}")
    build_demo(models, default).launch(server_name=args.host, server_port=args.port, theme=THEME)
