import os
import tempfile

# Tests never reach the hub: an unknown hub id must fail fast and clearly, as on an offline laptop.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# profiles the studio measures or receives in tests go to a throwaway folder, never a developer's own
os.environ["MIXDQ_STUDIO_CACHE"] = tempfile.mkdtemp(prefix="mixdq-studio-test-")

import pytest  # noqa: E402
import torch  # noqa: E402

from tiny_models import tiny_sd, tiny_sdxl  # noqa: E402

torch.set_num_threads(1)

# markers that mean minutes: such a test is also `slow`, so `-m "not slow"` leaves it out
SLOW_KINDS = ("browser", "compile", "openvino", "ray", "gpu")


def pytest_collection_modifyitems(items):
    for item in items:
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(params=["sd", "sdxl"])
def pipe(request):
    """A fresh tiny pipeline of each family (tests quantize it in place)."""
    return {"sd": tiny_sd, "sdxl": tiny_sdxl}[request.param]()


@pytest.fixture
def sd_pipe():
    return tiny_sd()
