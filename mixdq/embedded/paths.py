"""Where the embedded model and its attribute classifier are stored (`python -m mixdq.embedded`
writes them)."""

from mixdq.core.assets import ASSETS

EMBEDDED_DIR = ASSETS / "embedded"
EMBEDDED_CLASSIFIER_DIR = ASSETS / "embedded-classifier"
