"""Turn a quantized (simulated) UNet into a really low-bit one, in place."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from mixdq.core.errors import MixDQError
from mixdq.deploy.compiling import compile_unet, require_compiler
from mixdq.deploy.kernels import choose_kernels, record_input_shapes
from mixdq.deploy.layers import DEPLOYED_CLASSES, DeployedLayer
from mixdq.deploy.manifest import LayerSpec
from mixdq.deploy.packing import PACKED_BITS, pack
from mixdq.deploy.signature import recording_inputs
from mixdq.quant.affine import quantize, weight_qparams
from mixdq.quant.bos import split_bos
from mixdq.quant.layers import QuantMixin, require_layers, unet_of


def bos_embedding(pipe) -> torch.Tensor:
    """The text embedding's first (BOS) token: the same for every prompt of a causal encoder."""
    with torch.no_grad():
        embeds = pipe.encode_prompt(prompt="", device=pipe.device, num_images_per_prompt=1,
                                    do_classifier_free_guidance=False)[0]
    return split_bos(embeds)[0][0, 0].float()


def layer_spec(layer: QuantMixin, bos: torch.Tensor | None) -> tuple[LayerSpec, dict]:
    """The manifest entry and the tensors of one deployed layer (its kernel is chosen later)."""
    w = layer.weight.detach().float()
    wbits, abits = layer.weight_bits, layer.act_bits
    kind = "Conv2d" if w.dim() == 4 else "Linear"
    tensors: dict[str, torch.Tensor] = {}
    if layer.bias is not None:  # in the model's dtype, as a float weight is: an fp16 model stays fp16
        tensors["bias"] = layer.bias.detach()
    geometry, act = {}, {}
    if kind == "Conv2d":
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise MixDQError(f"{layer.layer_name}: only zero padding given as numbers can be deployed")
        geometry = dict(stride=tuple(layer.stride), padding=tuple(layer.padding),
                        dilation=tuple(layer.dilation), groups=layer.groups)
    if abits is not None:
        qp = layer.act_qparams(abits)
        act = dict(act_scale=float(qp.scale), act_zero_point=int(qp.zero_point), act_qmin=qp.qmin, act_qmax=qp.qmax)
    if layer.output_bits is not None:
        act.update(output_bits=layer.output_bits, output_scale=float(layer.output_qparams().scale))
    spec = LayerSpec(layer=layer.layer_name, kind=kind, weight_bits=wbits, act_bits=abits,
                     weight_shape=tuple(w.shape), bos=bool(layer.bos_active), **geometry, **act)
    if spec.bos:
        if bos is None:
            raise MixDQError(f"{layer.layer_name} is BOS-aware: deploy the pipeline (not the bare UNet) "
                             "or pass bos=mixdq.deploy.bos_embedding(pipe)")
        bias = None if layer.bias is None else layer.bias.detach().float()
        tensors["bos_output"] = F.linear(bos.to(w), w, bias)
    if wbits is None:
        tensors["weight"] = layer.weight.detach()
        return spec, tensors
    qp = weight_qparams(w, wbits, layer.config.weight)
    codes = quantize(w, qp)  # the simulated layer's codes, exactly
    out = w.shape[0]
    tensors["weight_scale"] = qp.scale.reshape(out).float()
    if wbits == 8 and layer.config.weight.symmetric:
        tensors["weight_codes"] = codes.to(torch.int8)  # zero-point 0, not stored
    else:
        unsigned = codes - qp.qmin  # stored unsigned; the zero-point moves with it
        tensors["weight_zero_point"] = (qp.zero_point - qp.qmin).reshape(out).to(torch.uint8)
        tensors["weight_codes"] = (pack(unsigned.to(torch.uint8), wbits) if wbits in PACKED_BITS
                                   else unsigned.to(torch.uint8))
    return spec, tensors


@contextmanager
def in_floating_point(layers: Mapping[str, QuantMixin]) -> Iterator[None]:
    """Run the layers in floating point within the block, their bits kept: input shapes do not
    depend on the bits, and a float forward makes no quantized copy of any weight (recording a
    full-size UNet under its allocation would hold one of every weight until deployment ends)."""
    saved = {name: (layer.weight_bits, layer.act_bits) for name, layer in layers.items()}
    for layer in layers.values():
        layer.weight_bits = layer.act_bits = None
    try:
        yield
    finally:
        for name, layer in layers.items():
            layer.weight_bits, layer.act_bits = saved[name]


def deploy(pipe, *, kernel: str | Mapping[str, str] = "auto", sample: Callable[[], object] | None = None,
           cache_bytes: int | None = None, bos: torch.Tensor | None = None, compile: bool = False):
    """Replace every prepared layer of `pipe`'s UNet by its deployed form, under the allocation
    and calibration it has now. The float weights of quantized layers are released.

    `kernel="auto"` times every kernel a layer can use on the input shape it sees in `sample()`
    (default for a pipeline: one step of an empty prompt at its default size, batch 1), keeps the
    fastest that holds the weight at its own bits, then spends `cache_bytes` more (default: 1/8
    of the code bytes; 0 for none) where it saves the most time per byte: scratch weights that
    let 2-6-bit layers run on int8 kernels, or int8 weights. A kernel name (for all layers) or a
    {layer: kernel} map fixes the choice; a layer that cannot use the kernel asked for takes the
    fastest one it can, with the reason in its spec. See `kernels.choose_kernels`.

    `compile=True` chooses kernels for a compiled UNet and compiles it (torch.compile, in place;
    needs a C++ compiler), warmed up on `sample()`: on small models, where eager overheads
    dominate, this is what makes the deployed model as fast as the float one (`compiling`)."""

    layers = require_layers(pipe, "deploy")
    unet = unet_of(pipe)
    if compile:
        require_compiler()
    needs_bos = any(layer.bos_active for layer in layers.values())
    if bos is None and needs_bos and hasattr(pipe, "encode_prompt"):
        bos = bos_embedding(pipe)
    if sample is None and hasattr(pipe, "encode_prompt"):
        sample = lambda: pipe(prompt="", num_inference_steps=1, guidance_scale=0.0, output_type="latent")  # noqa: E731
    calls: list[dict[str, torch.Tensor]] = []
    if sample is not None:
        with recording_inputs(unet) as calls, in_floating_point(layers):
            shapes = record_input_shapes(layers, sample)
    else:
        shapes = {}
    deployed = {}
    with torch.no_grad():
        for name, layer in layers.items():
            spec, tensors = layer_spec(layer, bos)
            deployed[name] = DEPLOYED_CLASSES[spec.kind](spec, tensors)
            unet.set_submodule(name, deployed[name])
        choose_kernels(deployed, shapes, kernel, cache_bytes, compiled=compile)
        if compile:
            compile_unet(unet, sample, example=calls[0] if calls else None)
    return pipe


def deployed_layers(model) -> dict[str, DeployedLayer]:
    return {n: m for n, m in unet_of(model).named_modules() if isinstance(m, DeployedLayer)}
