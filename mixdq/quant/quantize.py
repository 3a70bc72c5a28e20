"""The verbs: prepare a UNet for switchable quantization, apply an allocation, restore it.

    quantize_(pipe, allocation, calibration=CalibrationConfig(...))   # one call does it all
    restore(pipe)                                                   # exact float model again

Per-layer choice is data (an `Allocation`), not code; flipping a layer is an attribute write,
because quantized weights are cached per bit-width and activation ranges are bit-independent.
"""

from __future__ import annotations

from dataclasses import replace
from types import EllipsisType

from mixdq.core.bits import Bits, check_bits
from mixdq.core.errors import DeployedModelError, NotCalibratedError, UnknownLayerError
from mixdq.models.generation import CalibrationConfig
from mixdq.models.inventory import check_supported, strip_prefix
from mixdq.quant.allocation import Allocation
from mixdq.quant.calibration import calibrate
from mixdq.quant.config import QuantConfig
from mixdq.quant.layers import (
    QUANT_CLASSES,
    Model,
    QuantMixin,
    fixed_layers,
    is_deployed,
    quant_layers,
    require_layers,
    unet_of,
)


def prepare(model: Model, config: QuantConfig | None = None) -> Model:
    """Swap every Linear/Conv2d of the UNet for a switchable layer (all still floating point).

    On an already prepared model this only changes the config: cached weights are dropped, and
    calibration is kept unless the activation observer changed.
    """
    config = config or QuantConfig()
    unet = unet_of(model)
    layers = quant_layers(unet)
    if layers:
        for layer in layers.values():
            layer.configure(config)
        return model
    if is_deployed(unet):
        raise DeployedModelError("prepare")
    check_supported(unet)
    for name, module in list(unet.named_modules()):
        cls = QUANT_CLASSES.get(type(module))
        if cls is not None:
            unet.set_submodule(name, cls.from_float(module, name, config))
    return model


def quant_config(model: Model, verb: str = "quant_config") -> QuantConfig:
    """The `QuantConfig` a prepared model has (change it with `prepare(model, replace(...))`)."""
    return next(iter(require_layers(model, verb).values())).config


def is_calibrated(model: Model) -> bool:
    layers = quant_layers(model)
    return bool(layers) and all(layer.calibrated for layer in layers.values())


def set_bos_aware(model: Model, enabled: bool) -> Model:
    """Switch BOS-aware text-embedding quantization on or off; no recalibration needed."""
    return prepare(model, replace(quant_config(model, "set_bos_aware"), bos_aware=enabled))


def _checked(layer: QuantMixin, weight: object, act: object) -> tuple[Bits, Bits]:
    weight = check_bits("weight", weight, layer.layer_name)
    act = check_bits("activation", act, layer.layer_name)
    if act is not None and not layer.calibrated:
        raise NotCalibratedError(
            f"layer '{layer.layer_name}' has no activation range (was it reached during "
            "calibration?); calibrate with mixdq.calibrate(pipe, CalibrationConfig(...)) or keep "
            "its activations in floating point"
        )
    return weight, act


def apply_allocation(model: Model, allocation: Allocation) -> Model:
    """Set every layer's bits from `allocation` (layers it does not name become floating point).

    All checks happen before any layer changes, so a bad allocation leaves the model as it was.
    """
    layers = require_layers(model, "apply_allocation")
    allocation.check_names(layers)
    bits = {
        name: _checked(layer, allocation.weight_bits(name), allocation.act_bits(name))
        for name, layer in layers.items()
    }
    for name, layer in layers.items():
        layer.weight_bits, layer.act_bits = bits[name]
    return model


def set_layer_bits(
    model: Model, name: str, *, weight: Bits | EllipsisType = ..., act: Bits | EllipsisType = ...
) -> Model:
    """Flip one layer; `...` leaves that kind as it is. Cheap: cached weights are reused."""
    layers = require_layers(model, "set_layer_bits")
    name = strip_prefix(name)
    if name not in layers:
        raise UnknownLayerError([name], layers)
    layer = layers[name]
    layer.weight_bits, layer.act_bits = _checked(
        layer,
        layer.weight_bits if weight is ... else weight,
        layer.act_bits if act is ... else act,
    )
    return model


def current_allocation(model: Model) -> Allocation:
    """The bits every layer has now (of a deployed model too: its fixed allocation)."""
    layers = fixed_layers(model) if is_deployed(model) else require_layers(model, "current_allocation")
    return Allocation(
        {n: layer.weight_bits for n, layer in layers.items()},
        {n: layer.act_bits for n, layer in layers.items()},
    )


def clear_weight_cache(model: Model) -> Model:
    """Drop every cached fake-quantized weight (each is made again on the layer's next forward):
    room for work that needs memory more than the next flip needs speed, such as an export."""
    for layer in require_layers(model, "clear_weight_cache").values():
        layer.clear_cache()
    return model


def needs_calibration(allocation: Allocation, config: QuantConfig) -> bool:
    """Whether quantizing under `allocation` and `config` needs activation ranges."""
    return bool(allocation.acts) or config.self_attention_bits is not None


def quantize_(
    model: Model,
    allocation: Allocation,
    config: QuantConfig | None = None,
    calibration: CalibrationConfig | None = None,
) -> Model:
    """Quantize the UNet of `model` (a pipeline, or a UNet) in place under `allocation`.

    Prepares the UNet if needed (or re-configures it when `config` is given), calibrates
    activation ranges when the allocation quantizes activations and `calibration` is given (or
    the model has no ranges yet), then sets every layer's bits.
    """
    if is_deployed(model):
        raise DeployedModelError("quantize_")
    if config is not None or not quant_layers(model):
        prepare(model, config)
    if calibration is not None or (needs_calibration(allocation, quant_config(model)) and not is_calibrated(model)):
        if calibration is None:
            raise NotCalibratedError(
                "activation ranges are needed (this allocation quantizes activations, or the config "
                "self-attention's query and key), which needs calibration: pass "
                "calibration=mixdq.CalibrationConfig(prompts=[...]) to quantize_()"
            )
        calibrate(model, calibration)
    return apply_allocation(model, allocation)


def restore(model: Model) -> Model:
    """Put the original floating-point layers back; outputs are bit-identical to before.
    A model that was never prepared is left as it is."""
    unet = unet_of(model)
    if is_deployed(unet):
        raise DeployedModelError("restore")
    for name, layer in quant_layers(unet).items():
        unet.set_submodule(name, layer.float_module)
    return model
