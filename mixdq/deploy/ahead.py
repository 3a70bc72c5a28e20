"""A compiled deployment saved ahead of time (AOTInductor), so loading it needs no compiler.

`deploy(pipe, compile=True)` compiles the UNet in the process (`compiling`): every process pays the
compile again (a minute on 2 cores for the embedded model), needs g++, and keeps the compiler
resident (+130-240 MB). `save_deployed` of such a UNet therefore also writes `unet.pt2`: the
deployed UNet exported with `torch.export` (batch size free, 1 to `MAX_BATCH`; the resolution it
was warmed up at) and compiled by AOTInductor into one package of machine code and the codes at
their bits. `load_deployed` runs that package (`AOTUNet`) when this torch built it, in about a
second, without importing the compiler. Layers on int8 kernels (opaque Python custom ops, which
a package cannot call) go into the package on `dequant`, which computes the same numbers; the
manifest lists them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from mixdq.core.errors import MixDQError
from mixdq.deploy.compiling import load_inductor
from mixdq.deploy.layers import DeployedLayer
from mixdq.deploy.manifest import Kernel
from mixdq.deploy.signature import ExportedUNet, UNetCall

PACKAGE = "unet.pt2"
MAX_BATCH = 63  # what the export can promise for the embedded UNet (the guards it derives stop there)


@contextmanager
def dequant_for_export(layers: dict[str, DeployedLayer]) -> Iterator[list[str]]:
    """Layers on int8 kernels switched to `dequant` inside the block (the same numbers), then back
    to their kernel and spec; yields their names."""
    specs = {n: m.spec for n, m in layers.items() if m.int8}
    for name in specs:
        layers[name].use_kernel(Kernel.DEQUANT)
    try:
        yield sorted(specs)
    finally:
        for name, spec in specs.items():
            layers[name].use_kernel(spec.kernel)
            layers[name].spec = spec


def export_package(unet: nn.Module, inputs: dict[str, torch.Tensor], path: Path) -> None:
    """Export `unet` (no layer on int8 kernels) on one call's `inputs` with a free batch size,
    and compile it into `path` (a `.pt2` file name)."""
    from torch.fx.experimental import _config as fx_config  # noqa: PLC0415 - torch's private config, read only while exporting

    load_inductor()
    # a batch of 2 to trace: a size-1 dimension would be specialised; backed_size_oblivious keeps
    # batch 1 in the range the guards allow
    example = {k: v if k == "timestep" else torch.cat([v, v]) for k, v in inputs.items()}
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic = tuple(None if k == "timestep" else {0: batch} for k in example)
    with tqdm(total=2, desc="saving the compiled UNet (AOTInductor)", leave=False) as bar, warnings.catch_warnings():
        # torch's own pytree deprecation, raised inside its packaging: about torch, not this model
        warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)`", FutureWarning)
        with torch.no_grad(), fx_config.patch(backed_size_oblivious=True):
            program = torch.export.export(UNetCall(unet, tuple(example)), tuple(example.values()),
                                          dynamic_shapes=(dynamic,), strict=False)
        bar.update()
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        bar.update()


class AOTUNet(ExportedUNet):
    """A deployed UNet saved with `save_deployed` after `deploy(..., compile=True)`, run from its
    AOTInductor package (no compiler, no Python layers). `entry`: the manifest's `aot` entry."""

    def __init__(self, folder: str | os.PathLike, manifest: dict):
        entry = manifest["aot"]
        super().__init__(manifest["unet_config"], entry["inputs"], entry["add_embedding_in_features"])
        self.shapes = {k: tuple(v) for k, v in entry["shapes"].items()}
        self.manifest = manifest
        self._runner = torch._inductor.aoti_load_package(str(Path(folder) / entry["file"]))

    def run(self, tensors):
        batch = tensors[0].shape[0]
        for name, t in zip(self.inputs, tensors, strict=True):
            if name != "timestep" and tuple(t.shape[1:]) != self.shapes[name]:
                raise MixDQError(f"this compiled UNet was saved for {name} of shape (batch, "
                                 f"{', '.join(map(str, self.shapes[name]))}), and got {tuple(t.shape)}: generate "
                                 "at the resolution it was deployed at, or load with compile=False")
        if not 1 <= batch <= MAX_BATCH:
            raise MixDQError(f"this compiled UNet takes batches of 1 to {MAX_BATCH}, not {batch}: generate "
                             "in smaller batches, or load with compile=False")
        return self._runner(*tensors)
