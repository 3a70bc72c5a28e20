"""A deployed UNet under torch.compile: its eager per-layer overheads fused away.

On small layers a deployed kernel's cost is dispatch, not arithmetic: unpacking the weight and
rounding the input take 6-10 eager calls of a few microseconds each, which makes the embedded
model's deployed layers 2-7x slower than their float ops (README, "Deployment"). Inductor fuses
them into a few C++ loops around the float op; int8 kernels stay opaque calls
(`modules.int8_layer`). Kernels are chosen for it (`kernels.compiled_costs`).
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from mixdq.core.errors import MixDQError

COMPILED = "mixdq_compiled"  # attribute set on a UNet compiled here (recorded in the manifest)
EXAMPLE = "mixdq_example_inputs"  # one call's inputs by name, kept for `ahead.export_package`


def require_compiler() -> None:
    """Inductor writes C++ and builds it with `$CXX` (default g++): say so before it fails deep inside."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise MixDQError(f"compile=True needs a C++ compiler ({cxx!r} is not on PATH): install one "
                         "(Debian: apt-get install g++) or set CXX, or deploy without compile")


def load_inductor() -> None:
    """Import torch.compile's backend now, quietly: it imports torch.utils.mkldnn, whose TorchScript
    decorators torch itself deprecates, and that warning is about torch, not about this model."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.script_method`", DeprecationWarning)
        import torch._inductor.compile_fx  # noqa: F401, PLC0415 - inductor loads only when compiling


def compile_unet(unet, warm_up: Callable[[], object] | None = None,
                 example: dict[str, torch.Tensor] | None = None) -> None:
    """Compile `unet` in place (`nn.Module.compile`); `warm_up()` (a call of the shape to come)
    makes the compilation happen now, not in the first generation (about a minute on 2 cores for
    the embedded model; each new input shape compiles again). `example`: one call's inputs by
    name, kept so that `save_deployed` can save the compiled UNet ahead of time (`ahead`)."""
    require_compiler()
    load_inductor()
    unet.compile(options={"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe})
    setattr(unet, COMPILED, True)
    if example is not None:
        setattr(unet, EXAMPLE, example)
    if warm_up is not None:
        with tqdm(total=1, desc="compiling the UNet (torch.compile)", leave=False) as bar:
            start = time.perf_counter()
            warm_up()
            bar.set_postfix_str(f"{time.perf_counter() - start:.0f} s")
            bar.update()


def is_compiled(unet) -> bool:
    return bool(getattr(unet, COMPILED, False))
