"""A deployed model's manifest: the `Kernel` names, each layer's entry (`LayerSpec`), and reading
`manifest.json` safely (format and version checked, errors that say how to make it again).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

from mixdq.core.errors import ConfigError
from mixdq.core.serialization import FrozenMap
from mixdq.quant.affine import QParams, int_grid

FORMAT = "mixdq-deployed"
VERSION = 1
# v2: some layer has an output grid (`QuantConfig.self_attention_bits`), which a reader of v1
# would drop without a word; models without one are still written as v1, for older readers
VERSION_OUTPUT_GRIDS = 2
WEIGHTS = "unet.safetensors"
MANIFEST = "manifest.json"


class Kernel(StrEnum):
    """How a deployed layer computes (`mixdq.deploy.layers` says what each one does)."""

    INT8 = "int8"
    INT8_UNPACK = "int8-unpack"
    INT8_REPACK = "int8-repack"
    DEQUANT = "dequant"
    INT_MM = "int-mm"


KERNELS: tuple[Kernel, ...] = tuple(Kernel)
INT8_KERNELS = frozenset({Kernel.INT8, Kernel.INT8_UNPACK, Kernel.INT8_REPACK})  # oneDNN's, on the CPU


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json_manifest(folder: str | Path, fmt: str, version: int | tuple[int, ...], what: str,
                       redo: str) -> dict:
    """`folder`'s manifest.json, if it is a `fmt` v`version` one (or any of several); `what` the
    folder should be, and `redo` how to make it again, for the errors."""
    versions = (version,) if isinstance(version, int) else version
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{folder} has no {MANIFEST}: it is not {what} ({redo})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is damaged ({e}); {redo}") from None
    if manifest.get("format") != fmt or manifest.get("version") not in versions:
        raise ConfigError(f"{path} is not a {fmt} manifest of a version this engine reads "
                          f"({', '.join(f'v{v}' for v in versions)}); {redo}")
    return manifest


def read_manifest(folder: str | Path) -> dict:
    return read_json_manifest(folder, FORMAT, (VERSION, VERSION_OUTPUT_GRIDS), "a deployed MixDQ model",
                              "save it again with save_deployed")


@dataclass(frozen=True)
class LayerSpec:
    """What a deployed layer is, apart from its tensors: one entry of the manifest's `layers`."""

    layer: str
    kind: str  # "Linear" or "Conv2d"
    weight_bits: int | None
    act_bits: int | None
    weight_shape: tuple[int, ...]
    bos: bool = False
    kernel: Kernel | None = None  # None for floating-point weights
    # the calibrated activation grid; None when activations stay floating point
    act_scale: float | None = None
    act_zero_point: int | None = None
    act_qmin: int | None = None
    act_qmax: int | None = None
    # a self-attention query/key's symmetric output grid (`QuantConfig.self_attention_bits`)
    output_bits: int | None = None
    output_scale: float | None = None
    # Conv2d only
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None
    groups: int | None = None
    # how the kernel was chosen: why, and the milliseconds each kernel took on `input_shape`
    # ("float": the same op with a float weight, for reference)
    kernel_reason: str | None = None
    kernel_ms: FrozenMap[str, float] | None = None
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.kernel is None and self.weight_bits is not None:  # manifests before kernels were chosen
            object.__setattr__(self, "kernel", Kernel.DEQUANT)
        if self.kernel not in (*KERNELS, None):
            raise ValueError(f"{self.layer}: unknown kernel {self.kernel!r}; expected one of {', '.join(KERNELS)}")
        if self.kernel is not None:
            object.__setattr__(self, "kernel", Kernel(self.kernel))
        if self.kernel_ms is not None:  # plain-string keys, as read back from JSON
            object.__setattr__(self, "kernel_ms", FrozenMap({str(k): v for k, v in self.kernel_ms.items()}))

    def act_qparams(self) -> QParams | None:
        if self.act_bits is None:
            return None
        return QParams(torch.tensor(self.act_scale), torch.tensor(float(self.act_zero_point)),
                       self.act_qmin, self.act_qmax)

    def output_qparams(self) -> QParams | None:
        if self.output_bits is None:
            return None
        qmin, qmax = int_grid(self.output_bits, symmetric=True)
        return QParams(torch.tensor(self.output_scale), torch.tensor(0.0), qmin, qmax)

    def conv_kwargs(self) -> dict[str, Any]:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry (format version 1; `output_bits`/`output_scale` only in version 2):
        keys that do not apply are left out, not null."""
        d: dict[str, Any] = dict(layer=self.layer, kind=self.kind, weight_bits=self.weight_bits,
                                 act_bits=self.act_bits, weight_shape=list(self.weight_shape), bos=self.bos)
        if self.kind == "Conv2d":
            d.update(stride=list(self.stride), padding=list(self.padding), dilation=list(self.dilation),
                     groups=self.groups)
        if self.act_bits is not None:
            d.update(act_scale=self.act_scale, act_zero_point=self.act_zero_point, act_qmin=self.act_qmin,
                     act_qmax=self.act_qmax)
        if self.output_bits is not None:
            d.update(output_bits=self.output_bits, output_scale=self.output_scale)
        if self.kernel is not None:
            d["kernel"] = self.kernel
        if self.kernel_reason is not None:
            d["kernel_reason"] = self.kernel_reason
        if self.kernel_ms is not None:
            d["kernel_ms"] = dict(self.kernel_ms)
        if self.input_shape is not None:
            d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerSpec:
        return cls(
            layer=d["layer"], kind=d["kind"], weight_bits=d["weight_bits"], act_bits=d["act_bits"],
            weight_shape=tuple(d["weight_shape"]), bos=d["bos"], kernel=d.get("kernel"),
            act_scale=d.get("act_scale"), act_zero_point=d.get("act_zero_point"),
            act_qmin=d.get("act_qmin"), act_qmax=d.get("act_qmax"),
            output_bits=d.get("output_bits"), output_scale=d.get("output_scale"),
            stride=_tuple(d.get("stride")), padding=_tuple(d.get("padding")),
            dilation=_tuple(d.get("dilation")), groups=d.get("groups"),
            kernel_reason=d.get("kernel_reason"), kernel_ms=d.get("kernel_ms"),
            input_shape=_tuple(d.get("input_shape")),
        )


def _tuple(v: list[int] | None) -> tuple[int, ...] | None:
    return None if v is None else tuple(v)
