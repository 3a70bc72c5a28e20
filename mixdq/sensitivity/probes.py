"""One probe: one layer quantized alone at one bit-width, every sweep prompt run, and the damage
against the floating-point reference measured with both metrics (image SSIM and UNet-output SQNR)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mixdq.core.bits import Kind
from mixdq.core.metrics import SQNR_CAP_DB, sqnr_db, ssim
from mixdq.models.generation import generate_images, quiet_progress
from mixdq.quant.calibration import calibrate
from mixdq.quant.layers import quant_layers, unet_of
from mixdq.quant.quantize import prepare, set_layer_bits
from mixdq.sensitivity.config import SweepConfig

Probe = tuple[Kind, str, int]


def weights_sha256(model) -> str:
    """Hash of the UNet's tensors (names, dtypes, shapes, bytes): which weights were measured."""
    h = hashlib.sha256()
    for name, t in sorted(unet_of(model).state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@contextmanager
def unet_outputs(model) -> Iterator[list[torch.Tensor]]:
    """The UNet's output at every call (every denoising step, every batch) while inside, as CPU
    float tensors: what the SQNR of a probe compares.

        with mixdq.unet_outputs(pipe) as outs:
            mixdq.generate_images(pipe, ["a red circle"])
    """
    outputs: list[torch.Tensor] = []

    def hook(_module, _args, out):
        sample = out[0] if isinstance(out, tuple) else out.sample
        outputs.append(sample.detach().float().cpu())

    handle = unet_of(model).register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def _run(pipe, config: SweepConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] and the UNet's outputs at every step, flattened."""
    with unet_outputs(pipe) as outs, torch.no_grad():
        # calibration has checked these prompts already; a probe runs them again a thousand times
        images = generate_images(pipe, list(config.prompts), config.first_seed, config.batch_size,
                                 check_prompts=False, **config.generation_kwargs())
    return (images + 1) / 2, torch.cat([o.flatten() for o in outs])


class ProbeSession:
    """One pipeline ready to measure probes: prepared, every layer in floating point, calibrated,
    and its floating-point reference (images and UNet outputs) taken once. The serial sweep runs
    one; each distributed worker runs its own (`mixdq.sensitivity.distributed`)."""

    def __init__(self, pipe, config: SweepConfig, progress: bool = False):
        prepare(pipe, config.quant)
        self.pipe, self.config = pipe, config
        self.layers = quant_layers(pipe)
        self.weights_sha256 = weights_sha256(pipe)
        for layer in self.layers.values():
            layer.weight_bits = layer.act_bits = None
        with quiet_progress(pipe):
            calibrate(pipe, config.calibration, progress=progress)
            self.ref_images, self.ref_unet = _run(pipe, config)
        self._last: str | None = None

    @property
    def resolution(self) -> tuple[int, int]:
        return tuple(self.ref_images.shape[-2:])

    def probe(self, kind: Kind, name: str, bits: int) -> dict:
        """Quantize `name` alone (its `kind` at `bits`), run every prompt, score against the reference."""
        if self._last not in (None, name):
            self.layers[self._last].clear_cache()  # full-size models cannot hold every layer x bits
        self._last = name
        t0 = time.perf_counter()
        set_layer_bits(self.pipe, name, **({"weight": bits} if kind == "weight" else {"act": bits}))
        try:
            with quiet_progress(self.pipe):
                images, unet_out = _run(self.pipe, self.config)
        finally:
            set_layer_bits(self.pipe, name, weight=None, act=None)
        return dict(kind=kind, layer=name, bits=bits, ssim=float(ssim(self.ref_images, images).mean()),
                    sqnr=min(sqnr_db(self.ref_unet, unet_out), SQNR_CAP_DB), elapsed_s=time.perf_counter() - t0)
