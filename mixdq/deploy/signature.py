"""The UNet's call as named tensors: what exporters trace, and what an exported UNet takes back.

Exporters (OpenVINO, AOTInductor) trace the UNet on positional tensors (`UNetCall`), recorded
from one real pipeline call (`record_unet_inputs`). An exported UNet then sits behind
`UNet2DConditionModel`'s call signature (`ExportedUNet`), so a diffusers pipeline runs it unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import torch
from diffusers.configuration_utils import FrozenDict
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from torch import nn

from mixdq.core.errors import MixDQError

ADDED = ("text_embeds", "time_ids")  # SDXL's added_cond_kwargs


def timestep_vector(t) -> torch.Tensor:
    """The UNet's timestep input as exports take it: a float32 vector of one (pipelines pass one
    timestep for the whole batch)."""
    return torch.as_tensor(t, dtype=torch.float32).reshape(-1)[:1]


def named_inputs(args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
    """One UNet call's tensors by input name, SDXL's added conditions flattened in."""
    named = dict(zip(("sample", "timestep", "encoder_hidden_states"), args, strict=False)) | kwargs
    seen = {k: named[k] for k in ("sample", "timestep", "encoder_hidden_states", "timestep_cond")
            if isinstance(named.get(k), torch.Tensor)}
    seen.update({k: v for k, v in (named.get("added_cond_kwargs") or {}).items() if isinstance(v, torch.Tensor)})
    seen["timestep"] = timestep_vector(named["timestep"])
    return seen


@contextmanager
def recording_inputs(unet: nn.Module) -> Iterator[list[dict[str, torch.Tensor]]]:
    """The named tensors of every call `unet` gets inside the block."""
    calls: list[dict[str, torch.Tensor]] = []
    handle = unet.register_forward_pre_hook(lambda _m, args, kwargs: calls.append(named_inputs(args, kwargs)),
                                            with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def record_unet_inputs(pipe, run=None) -> list[dict[str, torch.Tensor]]:
    """The tensors the pipeline hands its UNet in each call during `run()` (default: one step of an
    empty prompt), by input name; the timestep as a float32 vector of one."""
    run = run or (lambda: pipe(prompt="", num_inference_steps=1, guidance_scale=0.0, output_type="latent"))
    with recording_inputs(pipe.unet) as calls, torch.no_grad():
        run()
    return calls


class UNetCall(nn.Module):
    """The UNet with positional tensor inputs (what tracing takes) and a tensor output. It calls
    `forward` itself, past hooks and a `torch.compile` wrapper, so an exporter sees the layers."""

    def __init__(self, unet: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.unet, self.names = unet, names

    def forward(self, *tensors):
        kw = dict(zip(self.names, tensors, strict=True))
        added = {k: kw.pop(k) for k in ADDED if k in kw}
        return self.unet.forward(**kw, added_cond_kwargs=added or None, return_dict=False)[0]


class ExportedUNet(nn.Module, ABC):
    """An exported UNet behind `UNet2DConditionModel`'s call signature; it holds no torch
    parameters. Subclasses run the tensors named `inputs`, in that order."""

    def __init__(self, unet_config: dict, inputs: list[str], add_embedding_in_features: int | None):
        super().__init__()

        self.config = FrozenDict(unet_config)
        self.inputs = list(inputs)
        if add_embedding_in_features is not None:  # SDXL pipelines read it off the UNet
            self.add_embedding = SimpleNamespace(linear_1=SimpleNamespace(in_features=add_embedding_in_features))

    dtype = property(lambda self: torch.float32)
    device = property(lambda self: torch.device("cpu"))

    @abstractmethod
    def run(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The noise prediction for `tensors` (float32, CPU, in the order of `inputs`)."""

    def forward(self, sample, timestep, encoder_hidden_states, timestep_cond=None, added_cond_kwargs=None,
                return_dict: bool = True, **_ignored):

        given = dict(sample=sample, timestep=timestep_vector(timestep), encoder_hidden_states=encoder_hidden_states,
                     timestep_cond=timestep_cond, **(added_cond_kwargs or {}))
        missing = [name for name in self.inputs if given.get(name) is None]
        if missing:
            raise MixDQError(f"the exported UNet needs input '{missing[0]}', which this call did not pass")
        out = self.run([given[name].detach().float().cpu().contiguous() for name in self.inputs])
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)


def add_embedding_in_features(unet: nn.Module) -> int | None:
    add_embedding = getattr(unet, "add_embedding", None)
    return None if add_embedding is None else add_embedding.linear_1.in_features
