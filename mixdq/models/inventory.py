"""Which layers a UNet has: names, groups, sizes and costs.

Sizes and costs come from one hooked forward pass of a copy of the UNet built from its config on
the `meta` device, so a full-size SDXL UNet is inventoried in seconds with no weights at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import cached_property
from typing import Generic, Literal, TypeVar

import pandas as pd
import torch
from diffusers import UNet2DConditionModel
from torch import nn

from mixdq.core.errors import UnknownLayerError, UnsupportedModelError


class Group(StrEnum):
    """MixDQ's two kinds of layer: content layers (cross-attention and feed-forward) change what
    an image shows, quality layers how cleanly it is drawn."""

    CONTENT = "content"
    QUALITY = "quality"


GROUPS: tuple[Group, ...] = tuple(Group)
L = TypeVar("L")
MIXDQ_PREFIX = "model."  # MixDQ's files name layers from its wrapper module: "model.conv_in"


def strip_prefix(name: str) -> str:
    """A layer name without MixDQ's `model.` prefix (both spellings are accepted everywhere)."""
    return name.removeprefix(MIXDQ_PREFIX)


@dataclass(frozen=True)
class GroupRule:
    """MixDQ's split: layers whose name matches `content_pattern` change *what* the image shows
    (judged by SSIM), all others change how clean it looks (judged by SQNR)."""

    content_pattern: str = r"(^|\.)(attn2|ff)(\.|$)"

    def group_of(self, name: str) -> Group:
        return "content" if re.search(self.content_pattern, name) else "quality"


MIXDQ_RULE = GroupRule()


@dataclass(frozen=True)
class Position:
    """Where a layer sits in the UNet, for drawing it: `place` is the unit it belongs to
    ("down1.attn0.tb1", "mid.res0", "up2.upsample", "conv_in"), `role` what it does there
    ("attn2.to_k", "conv1", "proj_in", "stem" for the layers outside the blocks), and `order`
    sorts places along the forward pass."""

    place: str
    role: str
    order: tuple


_UNIT = {"resnets": ("res", 0), "attentions": ("attn", 1), "downsamplers": ("downsample", 2),
         "upsamplers": ("upsample", 2)}


def position(name: str) -> Position:
    name = strip_prefix(name)
    p = _place(name)
    if p["block"] not in ("down", "mid", "up"):  # conv_in, time/add embeddings, conv_out
        stage = 4 if p["layer_type"].startswith("conv_out") else 0
        first = ("conv_in", "time_embedding", "add_embedding")
        rank = first.index(p["block"]) if p["block"] in first else len(first)
        return Position(name, "stem", (stage, rank, 0, 0, 0, name))
    block = p["block"] if p["block"] == "mid" else f"{p['block']}{p['block_index']}"
    unit, rank = _UNIT.get(p["unit"], (p["unit"] or "", 3))
    place = block + (f".{unit}{p['unit_index']}" if unit not in ("downsample", "upsample") else f".{unit}")
    if p["transformer_block"] is not None:
        place += f".tb{p['transformer_block']}"
    role = "conv" if unit in ("downsample", "upsample") else p["layer_type"]
    stage = {"down": 1, "mid": 2, "up": 3}[p["block"]]
    tb = -1 if p["transformer_block"] is None else p["transformer_block"]
    unit_index = 99 if rank == 2 else p["unit_index"] or 0  # a sampler ends its block
    return Position(place, role, (stage, p["block_index"] or 0, unit_index, rank, tb, ""))


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: Literal["Linear", "Conv2d"]
    weight_shape: tuple[int, ...]
    params: int  # weight parameters (bias excluded)
    bias: bool
    act_elements: int  # input-activation elements per sample, per UNet call
    macs: int  # multiply-accumulates per sample, per UNet call
    block: str  # "down", "mid", "up", or a top-level module: "conv_in", "time_embedding", ...
    block_index: int | None
    unit: str | None  # "resnets", "attentions", "downsamplers", "upsamplers"
    unit_index: int | None
    transformer_block: int | None
    layer_type: str  # "attn2.to_k", "ff.net.0.proj", "conv1", "time_emb_proj", ...
    group: Group

    @property
    def out_channels(self) -> int:
        return self.weight_shape[0]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weight_shape"] = list(self.weight_shape)
        return d


_PLACE = re.compile(
    r"^(?:(?P<block>down_blocks|up_blocks)\.(?P<bi>\d+)\.|(?P<mid>mid_block)\.)?"
    r"(?:(?P<unit>resnets|attentions|downsamplers|upsamplers)\.(?P<ui>\d+)\.)?"
    r"(?:transformer_blocks\.(?P<tb>\d+)\.)?"
    r"(?P<rest>.+)$"
)


def _place(name: str) -> dict:
    m = _PLACE.match(name)
    block = {"down_blocks": "down", "up_blocks": "up"}.get(m["block"]) or ("mid" if m["mid"] else None)
    rest = m["rest"]
    if block is None:  # top level: conv_in, conv_out, time_embedding.linear_1, add_embedding...
        block = rest.split(".")[0]
    as_int = lambda v: None if v is None else int(v)  # noqa: E731
    return dict(
        block=block,
        block_index=as_int(m["bi"]) if m["block"] else (0 if m["mid"] else None),
        unit=m["unit"],
        unit_index=as_int(m["ui"]),
        transformer_block=as_int(m["tb"]),
        layer_type=rest,
    )


class NamedLayers(Generic[L]):
    """A sequence of layer records (anything with `.name` and `.params`) in UNet order, also
    looked up by name; an unknown name is an `UnknownLayerError` with a "did you mean"."""

    layers: tuple[L, ...]

    @cached_property
    def _index(self) -> dict[str, L]:
        return {layer.name: layer for layer in self.layers}

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[L]:
        return iter(self.layers)

    def __getitem__(self, name: str) -> L:
        try:
            return self._index[name]
        except KeyError:
            raise UnknownLayerError([name], self._index) from None

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def check_names(self, names: Iterable[str]) -> None:
        unknown = [n for n in names if n not in self._index]
        if unknown:
            raise UnknownLayerError(unknown, self._index)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)


@dataclass(frozen=True)
class Inventory(NamedLayers[LayerInfo]):
    layers: tuple[LayerInfo, ...]
    latent_size: tuple[int, int]
    model: str = ""

    def group(self, group: Group) -> list[LayerInfo]:
        return [layer for layer in self.layers if layer.group == group]

    def to_records(self) -> list[dict]:
        return [layer.to_dict() for layer in self.layers]

    def to_json(self) -> str:
        return json.dumps(self.to_records(), indent=2) + "\n"

    def to_dataframe(self):
        return pd.DataFrame.from_records(self.to_records())


def _dummy_inputs(config, latent_size: tuple[int, int], text_tokens: int, device) -> tuple[tuple, dict]:
    h, w = latent_size
    cross_dim = config.cross_attention_dim
    if isinstance(cross_dim, (list, tuple)):
        cross_dim = cross_dim[0]
    args = (
        torch.empty(1, config.in_channels, h, w, device=device),
        torch.tensor([999], device=device),
        torch.empty(1, text_tokens, cross_dim, device=device),
    )
    kwargs = {}
    if config.addition_embed_type == "text_time":  # SDXL: pooled text embedding + size/crop ids
        text_dim = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.empty(1, text_dim, device=device),
            "time_ids": torch.empty(1, 6, device=device),
        }
    elif config.addition_embed_type is not None:
        raise UnsupportedModelError(
            f"addition_embed_type={config.addition_embed_type!r} is not supported; "
            "mixdq handles SD 1.x/2.x and SDXL UNets"
        )
    if config.time_cond_proj_dim is not None:  # LCM-distilled UNets take the guidance scale
        kwargs["timestep_cond"] = torch.empty(1, config.time_cond_proj_dim, device=device)
    return args, kwargs


def check_supported(unet: nn.Module) -> None:
    lora = [n for n, m in unet.named_modules() if "lora" in type(m).__name__.lower()]
    if lora:
        raise UnsupportedModelError(
            f"the UNet has unfused LoRA layers (e.g. '{lora[0]}'); fuse them first with "
            "pipe.fuse_lora(); pipe.unload_lora_weights()"
        )


def meta_unet(config) -> nn.Module:
    """The UNet architecture of `config` with no weights (parameters on the meta device)."""

    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


def build_inventory(
    unet_or_config,
    latent_size: tuple[int, int] | int | None = None,
    group_rule: GroupRule = MIXDQ_RULE,
    model: str = "",
    text_tokens: int | None = None,
) -> Inventory:
    """Inventory every `nn.Linear` and `nn.Conv2d` of a UNet (or of a UNet config, or of a
    pipeline's UNet).

    `latent_size` defaults to the UNet's `sample_size` (for SD-style models, pixels / 8);
    `text_tokens` to the pipeline tokenizer's length, else CLIP's 77.
    """
    tokenizer = getattr(unet_or_config, "tokenizer", None)
    if text_tokens is None:
        text_tokens = getattr(tokenizer, "model_max_length", 77)
    unet_or_config = getattr(unet_or_config, "unet", unet_or_config)
    if isinstance(unet_or_config, nn.Module):
        check_supported(unet_or_config)
        config = unet_or_config.config
    else:
        config = unet_or_config
    net = meta_unet(config)
    if latent_size is None:
        latent_size = net.config.sample_size
    if isinstance(latent_size, int):
        latent_size = (latent_size, latent_size)

    seen: dict[str, tuple[int, int]] = {}

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0]
            per_sample_out = output.numel() // output.shape[0]
            fan_in = module.weight[0].numel()  # in_features, or in_ch/groups * kh * kw
            seen.setdefault(name, (x.numel() // x.shape[0], per_sample_out * fan_in))

        return record

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in net.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
    ]
    args, kwargs = _dummy_inputs(net.config, latent_size, text_tokens, "meta")
    with torch.no_grad():
        net(*args, **kwargs)
    for h in handles:
        h.remove()

    layers = []
    for name, m in net.named_modules():
        if not isinstance(m, (nn.Linear, nn.Conv2d)):
            continue
        act, macs = seen.get(name, (0, 0))  # a layer the forward never reaches costs nothing
        layers.append(
            LayerInfo(
                name=name,
                kind="Linear" if isinstance(m, nn.Linear) else "Conv2d",
                weight_shape=tuple(m.weight.shape),
                params=m.weight.numel(),
                bias=m.bias is not None,
                act_elements=act,
                macs=macs,
                group=group_rule.group_of(name),
                **_place(name),
            )
        )
    return Inventory(tuple(layers), tuple(latent_size), model)
