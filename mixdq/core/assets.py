"""Where the project's shipped files live: the embedded model, full-size configs, profiles."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"
