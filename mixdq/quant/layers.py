"""Linear and Conv2d layers whose weight and input-activation bit-widths switch at run time.

A quantized layer is a new module object that *shares* the float layer's parameters (the same
`_parameters` dict), so the UNet's state dict is unchanged, `.to()` keeps both in step, and
restoring puts the untouched float module back: exact by construction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Union

import torch
import torch.nn.functional as F
from torch import nn

from mixdq.core.bits import Bits, format_bits
from mixdq.core.errors import DeployedModelError, MixDQError, NotCalibratedError, UnsupportedModelError
from mixdq.quant.affine import QParams, act_qparams, fake_quantize, fake_quantize_weight
from mixdq.quant.attention import is_qk_layer, qk_qparams
from mixdq.quant.bos import has_bos, is_bos_layer, split_bos
from mixdq.quant.config import QuantConfig
from mixdq.quant.observers import RangeObserver
from mixdq.quant.weight_cache import LayerWeights

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

# What the verbs take: a diffusers pipeline (its `.unet` is used) or the UNet module itself.
Model = Union["DiffusionPipeline", nn.Module]


class QuantMixin(ABC):
    """Switchable-precision forward shared by `QuantLinear` and `QuantConv2d`."""

    weight: nn.Parameter
    layer_name: str
    weight_bits: Bits
    act_bits: Bits
    config: QuantConfig

    @classmethod
    def from_float(cls, module: nn.Module, name: str, config: QuantConfig):
        new = cls.__new__(cls)
        new.__dict__.update(module.__dict__)  # shares _parameters, _buffers and hooks
        new.__dict__["_float_module"] = module  # not a submodule: stays out of the state dict
        new.layer_name = name
        new.weight_bits = None
        new.act_bits = None
        new.is_bos_layer = is_bos_layer(name)
        new.is_qk_layer = is_qk_layer(name)
        new.observing = False
        new.configure(config)
        return new

    @property
    def float_module(self) -> nn.Module:
        return self.__dict__["_float_module"]

    def configure(self, config: QuantConfig) -> None:
        """Adopt `config`; cached quantized weights survive unless the weight config changed (so
        a BOS toggle is free), calibration unless the activation observer changed."""
        old = getattr(self, "config", None)
        self.config = config
        if old is None or old.weight != config.weight:
            if old is not None:
                self._weight_cache.clear()
            self._weight_cache = LayerWeights()
        self._act_cache: dict[tuple[int, bool], QParams] = {}
        self._output_qparams: QParams | None = None
        if old is None or old.act != config.act:
            self.observer = RangeObserver(config.act)
            self.observer_no_bos = RangeObserver(config.act) if self.is_bos_layer else None
            # a self-attention query/key: its output range too, for `self_attention_bits`
            self.output_observer = RangeObserver(config.act) if self.is_qk_layer else None

    def reset_observers(self) -> None:
        for observer in (self.observer, self.observer_no_bos, self.output_observer):
            if observer is not None:
                observer.reset()

    @property
    def bos_active(self) -> bool:
        return self.is_bos_layer and self.config.bos_aware

    @property
    def calibrated(self) -> bool:
        return self.observer.calls > 0

    @property
    def output_bits(self) -> Bits:
        """Bits of this layer's output grid: `self_attention_bits` for a self-attention query or
        key, else None (outputs stay float)."""
        return self.config.self_attention_bits if self.is_qk_layer else None

    def output_qparams(self) -> QParams:
        if self._output_qparams is None:
            if self.output_observer.range is None:
                raise NotCalibratedError(
                    f"layer '{self.layer_name}' has no output range for self_attention_bits: calibrate "
                    "with mixdq.calibrate(pipe, CalibrationConfig(...)), or pass calibration= to "
                    "mixdq.quantize_()"
                )
            self._output_qparams = qk_qparams(*self.output_observer.range, self.output_bits)
        return self._output_qparams

    def quantized_weight(self, bits: int) -> torch.Tensor:
        """Fake-quantized weight, computed when the width changes (or the weight moves); other
        widths stay cached only within `mixdq.set_weight_cache_budget`."""
        w = self.weight
        key = (w.device, w.dtype, w.data_ptr(), w._version)
        return self._weight_cache.get(bits, key, lambda: fake_quantize_weight(w.detach(), bits, self.config.weight))

    def clear_cache(self) -> None:
        """Drop cached quantized weights (they are recomputed on demand)."""
        self._weight_cache.clear()

    def act_qparams(self, bits: int) -> QParams:
        key = (bits, self.bos_active)
        qp = self._act_cache.get(key)
        if qp is None:
            observer = self.observer_no_bos if self.bos_active else self.observer
            if observer.range is None:
                raise NotCalibratedError(
                    f"layer '{self.layer_name}' has no activation range: calibrate first with "
                    "mixdq.calibrate(pipe, CalibrationConfig(...)), or pass calibration= to "
                    "mixdq.quantize_()."
                )
            qp = self._act_cache[key] = act_qparams(*observer.range, bits)
        return qp

    def _observe(self, x: torch.Tensor) -> torch.Tensor:
        self._act_cache.clear()
        self._output_qparams = None
        self.observer.observe(x)
        if self.observer_no_bos is not None and has_bos(x):
            self.observer_no_bos.observe(split_bos(x)[1])
        y = self._op(x, self.weight)
        if self.output_observer is not None:
            self.output_observer.observe(y)
        return y

    def _quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.act_bits is None else fake_quantize(x, self.act_qparams(self.act_bits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            return self._observe(x)
        y = self._forward(x)
        return y if self.output_bits is None else fake_quantize(y, self.output_qparams())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_bits is None and self.act_bits is None:
            return self._op(x, self.weight)
        w = self.weight if self.weight_bits is None else self.quantized_weight(self.weight_bits)
        if self.bos_active and has_bos(x):
            # BOS is identical for every prompt of a causal text encoder, so its key/value could
            # be precomputed once (deploy does); one token of float projection per call costs
            # the same here.
            bos, rest = split_bos(x)
            return torch.cat([self._op(bos, self.weight), self._op(self._quantize_input(rest), w)], dim=1)
        return self._op(self._quantize_input(x), w)

    @abstractmethod
    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The layer's own operation with `weight` in place of its weight."""

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, w={format_bits(self.weight_bits)}, a={format_bits(self.act_bits)}"


class QuantLinear(QuantMixin, nn.Linear):
    def _op(self, x, weight):
        return F.linear(x, weight, self.bias)


class QuantConv2d(QuantMixin, nn.Conv2d):
    def _op(self, x, weight):
        return self._conv_forward(x, weight, self.bias)


# Exact types only: a subclass may add behaviour (LoRA) that a plain swap would drop.
QUANT_CLASSES: dict[type[nn.Module], type[QuantMixin]] = {
    nn.Linear: QuantLinear,
    nn.Conv2d: QuantConv2d,
}


def unet_of(model: Model) -> nn.Module:
    """The UNet of a pipeline, or the module itself."""
    unet = getattr(model, "unet", model)
    if not isinstance(unet, nn.Module):
        raise UnsupportedModelError(
            f"expected a diffusers pipeline or a UNet module, got {type(model).__name__}"
        )
    return unet


def quant_layers(model: Model) -> dict[str, QuantMixin]:
    """The quantizable layers of a prepared model, by name, in module order."""
    return {n: m for n, m in unet_of(model).named_modules() if isinstance(m, QuantMixin)}


class FixedLayer:
    """What every deployed layer is (`mixdq.deploy`, which builds on this module): a layer whose
    bits were fixed at deployment (`weight_bits`, `act_bits`), never switched again."""

    weight_bits: Bits
    act_bits: Bits


def fixed_layers(model: Model) -> dict[str, FixedLayer]:
    """The deployed layers of a model, by name, in module order."""
    return {n: m for n, m in unet_of(model).named_modules() if isinstance(m, FixedLayer)}


def is_deployed(model: Model) -> bool:
    """True when the UNet holds deployed (packed, fixed-bit) layers."""
    return any(isinstance(m, FixedLayer) for m in unet_of(model).modules())


def require_layers(model: Model, verb: str) -> dict[str, QuantMixin]:
    """The switchable layers `verb` works on, or the error that says why there are none."""
    layers = quant_layers(model)
    if not layers:
        if is_deployed(model):
            raise DeployedModelError(verb)
        raise MixDQError(f"the model is not prepared for quantization; call mixdq.prepare(pipe) before mixdq.{verb}()")
    return layers
