"""Start MixDQ Studio: `python app.py` (or `./run.sh studio`), then open the printed URL."""

import argparse

from app.studio import build_demo

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="MixDQ Studio")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()
    build_demo().launch(server_name=args.host, server_port=args.port)
