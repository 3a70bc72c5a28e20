"""A MixDQ allocation on OpenVINO: the UNet as an OpenVINO IR that keeps every layer's own bits.

    export_openvino(pipe, "out/ov")                       # a quantized (simulated) pipeline
    pipe = load_openvino_pipeline("out/ov", precision="f32", threads=2)

How each layer is written (found by compiling single layers on OpenVINO 2026.4's CPU plugin):
* weights are integer constants of the smallest element type OpenVINO stores that holds the codes:
  u2, u3, u4 and u6 for 2-6 bits (5 bits go in u6: there is no u5), i8 for symmetric 8 bits. The
  graph turns them into `code - zero_point` in int8 (Convert, Subtract), then float (Convert,
  Multiply by our per-channel scale). The CPU plugin folds the integer part when it compiles, so
  the weight is held as int8 in memory and, with quantized inputs, runs on its int8 kernels
  (AMX/VNNI where the CPU has them): the on-disk IR is as small as the bits, the kernel is int8's.
  Asymmetric 8-bit codes minus their zero-point do not fit int8: they stay u8 with a float
  zero-point and compute in float (as in the PyTorch deploy path);
* activations go through a FakeQuantize with our calibrated per-tensor grid (levels 2^bits), which
  the CPU plugin's low-precision transformations turn into uint8 inputs of the int8 kernels;
* floating-point layers stay float (fp32 in the IR), like the rest of the UNet;
* BOS-aware cross-attention `to_k`/`to_v` take the BOS token's projection as a constant
  (it is the same for every prompt) and quantize only the other tokens;
* with `QuantConfig(self_attention_bits=8)`, each self-attention's query and key leave their
  layer through a symmetric FakeQuantize, so the plugin runs Q·Kᵀ on its int8 kernels (what
  NNCF's PTQ does to attention; `mixdq.quant.attention`).
The VAE's decoder is exported too (floating point, as MixDQ leaves it): at 512x512 it takes
longer than the UNet on a CPU, and OpenVINO runs it 1.3x (f32) to 6x (bf16) faster than PyTorch
(README). The text encoders, a few ms, stay in PyTorch.

On disk: `unet.xml` + `unet.bin`, `vae_decoder.xml` + `.bin`, and `manifest.json` (format,
allocation, each layer's bits as stored, input names, versions, SHA-256 of every IR file),
written to a temporary folder that replaces the target only when complete. Loading refuses a
folder whose IR does not match.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import warnings
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.activations import GEGLU
from diffusers.models.autoencoders.vae import DecoderOutput
from torch import nn

from mixdq.core.errors import ConfigError, MixDQError
from mixdq.deploy.convert import bos_embedding, layer_spec
from mixdq.deploy.layers import DEPLOYED_CLASSES, DeployedLayer
from mixdq.deploy.manifest import read_json_manifest
from mixdq.deploy.manifest import sha256_file as _sha256
from mixdq.deploy.signature import (
    ExportedUNet,
    UNetCall,
    add_embedding_in_features,
    record_unet_inputs,
    timestep_vector,
)
from mixdq.models.loading import load_pipeline
from mixdq.quant.allocation import Allocation
from mixdq.quant.layers import require_layers, unet_of

FORMAT = "mixdq-openvino"
VERSION = 1
XML, BIN, MANIFEST = "unet.xml", "unet.bin", "manifest.json"
VAE_XML, VAE_BIN = "vae_decoder.xml", "vae_decoder.bin"
# Integer element types the CPU plugin stores and folds into its int8 kernels, by bits they hold.
STORAGE = {2: "u2", 3: "u3", 4: "u4", 5: "u6", 6: "u6"}
STORED_BITS = {"u2": 2, "u3": 3, "u4": 4, "u6": 6, "u8": 8, "i8": 8, "f32": 32}
_CODES = "mixdq_centred"  # the buffer name that marks a layer's integer weight in the traced graph
# Compile options that keep the model what the simulation computes: no dynamic quantization of
# float inputs of compressed-weight matmuls (weight-only layers), which the plugin does by default.
EXACT = {"DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}


def _require_openvino():
    try:
        import openvino  # noqa: PLC0415 - optional package (the openvino extra)
    except ImportError:
        raise MixDQError("OpenVINO is not installed: pip install 'mixdq-studio[openvino]'") from None
    return openvino


class _TracedLayer(nn.Module):
    """What one deployed layer computes, written in ops OpenVINO's PyTorch frontend maps 1:1:
    FakeQuantize on the input, `centred * scale` as the weight, the float op, and a FakeQuantize
    on the output of a self-attention query or key (`QuantConfig.self_attention_bits`)."""

    def __init__(self, layer: DeployedLayer, centred: torch.Tensor | None, rows: slice = slice(None)):
        """`rows`: only these output channels of a Linear layer (the halves of a split GEGLU)."""
        super().__init__()
        self.spec = spec = layer.spec
        if rows == slice(None):
            self.op = layer._op
        else:
            bias = None if layer.bias is None else layer.bias[rows]
            self.op = lambda x, w: F.linear(x, w, None if bias is None else bias.to(x.dtype))
        self.register_buffer("bos_output", layer.bos_output)
        if spec.weight_bits is None:
            self.register_buffer("weight", layer.weight[rows])
            return
        shape = (-1,) + (1,) * (centred.dim() - 1)
        self.register_buffer(_CODES, centred[rows])
        self.register_buffer("scale", layer.weight_scale[rows].reshape(shape).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bos = None
        if self.bos_output is not None:
            bos, x = self.bos_output.expand(x.shape[0], 1, -1), x[:, 1:]
        s = self.spec
        if s.act_bits is not None:
            x = torch.fake_quantize_per_tensor_affine(x, s.act_scale, s.act_zero_point, s.act_qmin, s.act_qmax)
        w = self.weight if s.weight_bits is None else getattr(self, _CODES).float() * self.scale
        y = self.op(x, w)
        if s.output_bits is not None:  # a self-attention query/key: on its own symmetric grid
            qp = s.output_qparams()
            y = torch.fake_quantize_per_tensor_affine(y, s.output_scale, 0, qp.qmin, qp.qmax)
        return y if bos is None else torch.cat([bos, y], dim=1)


class _SplitGEGLU(nn.Module):
    """diffusers' GEGLU with its projection traced as two layers, the value and the gate halves of
    its output channels, rather than one layer whose output is split: the same numbers, and
    OpenVINO's CPU plugin runs no VariadicSplit, which it does with a reference kernel (45 ms of a
    1 s SD-Turbo UNet call, copying each projection's output, up to 4096 x 2560 values)."""

    def __init__(self, geglu: nn.Module, layer: DeployedLayer, centred: torch.Tensor | None):
        super().__init__()
        value, gate = self.halves(layer)
        self.value = _TracedLayer(layer, centred, value)
        self.gate = _TracedLayer(layer, centred, gate)
        self.gelu = geglu.gelu

    @staticmethod
    def halves(layer: DeployedLayer) -> tuple[slice, slice]:
        """The output channels of the value and of the gate (diffusers' `chunk(2)` order)."""
        half = layer.weight_shape[0] // 2
        return slice(0, half), slice(half, None)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.value(x) * self.gelu(self.gate(x))


def _traced_modules(unet: nn.Module, forms: dict[str, DeployedLayer], centred: dict[str, torch.Tensor]):
    """What replaces which module for tracing ({module path: module}), and where each traced
    weight sits ({module path of its codes: (layer name, output channels)})."""

    modules, parts = {}, {}
    for name, form in forms.items():
        parent = name.rpartition(".")[0]
        if name.endswith(".proj") and type(unet.get_submodule(parent)) is GEGLU and form.bos_output is None:
            modules[parent] = _SplitGEGLU(unet.get_submodule(parent), form, centred.get(name))
            value, gate = _SplitGEGLU.halves(form)
            parts[f"{parent}.value"], parts[f"{parent}.gate"] = (name, value), (name, gate)
        else:
            modules[name] = _TracedLayer(form, centred.get(name))
            parts[name] = (name, slice(None))
    return modules, parts


class _VAEDecode(nn.Module):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode(latents, return_dict=False)[0]


@contextlib.contextmanager
def _swapped(unet: nn.Module, modules: dict[str, nn.Module]):
    """`unet` with `modules` in place of its layers of the same names, put back afterwards."""
    before = {name: unet.get_submodule(name) for name in modules}
    try:
        for name, module in modules.items():
            unet.set_submodule(name, module)
        yield unet
    finally:
        for name, module in before.items():
            unet.set_submodule(name, module)


def _compress_weights(ov_model, layers: dict[str, DeployedLayer], centred: dict[str, torch.Tensor],
                      parts: dict[str, tuple[str, slice]]) -> dict[str, str]:
    """Store each layer's int8 `code - zero_point` constant (`centred`) as its unsigned codes at
    their own bits: Subtract(Convert(codes, i8), zero_point), the integer part the CPU plugin
    folds. `parts`: the traced weights, by module path, as (layer, output channels). Returns each
    quantized layer's element type as stored."""
    ov = _require_openvino()
    from openvino import opset13 as ops  # noqa: PLC0415 - optional package (the openvino extra)

    constants = [op for op in ov_model.get_ordered_ops()
                 if op.get_type_name() == "Constant" and op.get_friendly_name().endswith(_CODES)]
    stored = {}
    for path, (name, rows) in parts.items():
        layer = layers[name]
        spec = layer.spec
        if spec.weight_bits is None:
            continue
        key = f"{path}.{_CODES}"  # the frontend names a buffer by its module path, with a prefix
        matches = [c for c in constants if c.get_friendly_name() == key or c.get_friendly_name().endswith("." + key)]
        if len(matches) != 1:
            raise MixDQError(f"{name}: its weight was not found in the converted graph; please report this")
        constant = matches[0]
        if layer.weight_zero_point is None:  # symmetric 8 bits: int8 codes as they are
            stored[name] = "i8"
            continue
        zp = layer._per_channel(layer.weight_zero_point)[rows].to(torch.int16)
        codes = (centred[name][rows].to(torch.int16) + zp).numpy()
        if spec.weight_bits == 8:  # asymmetric: code - zero-point needs 9 bits; float zero-point
            stored[name] = "u8"
            integer = ops.subtract(ops.convert(ov.op.Constant(codes.astype(np.uint8)), ov.Type.f32),
                                   zp.float().numpy())
        else:
            kind = stored[name] = STORAGE[spec.weight_bits]
            zp = zp.numpy().astype(np.int8)
            if (zp == zp.flat[0]).all():  # symmetric grids: one zero-point for all channels
                zp = np.int8(zp.flat[0])
            c = ov.op.Constant(getattr(ov.Type, kind), ov.Shape(list(codes.shape)), codes.ravel().tolist())
            c.set_friendly_name(constant.get_friendly_name())
            integer = ops.subtract(ops.convert(c, ov.Type.i8), ops.constant(zp))
        for target in list(constant.output(0).get_target_inputs()):
            target.replace_source_output(integer.output(0))
    ov_model.validate_nodes_and_infer_types()
    return stored


def _deployed_forms(layers, bos: torch.Tensor | None) -> dict[str, DeployedLayer]:
    """Each prepared layer as the deployed layer it would become (its codes, exactly as `deploy`
    computes them; kernel `dequant`, which builds nothing)."""
    forms = {}
    for name, layer in layers.items():
        spec, tensors = layer_spec(layer, bos)
        forms[name] = DEPLOYED_CLASSES[spec.kind](spec, tensors)
    return forms


def export_openvino(model, folder: str | os.PathLike, base_model: str | None = None, *,
                    inputs: dict[str, torch.Tensor] | None = None, bos: torch.Tensor | None = None,
                    vae_decoder: bool = True) -> Path:
    """Write the UNet of `model` (a pipeline, or a UNet, prepared with `mixdq.prepare` and
    quantized with `mixdq.quantize_`: calibrated where activations are quantized) as an OpenVINO
    IR with each layer at its allocated bits, into `folder` (replaced only once the export is
    complete). Layers left in floating point stay float: a prepared, unquantized model exports
    as OpenVINO FP32.

    `inputs`: the UNet's input tensors by name (sample, timestep, encoder_hidden_states, and
    timestep_cond, text_embeds, time_ids where the model takes them): recorded from one call of a
    pipeline when not given. Batch and spatial sizes stay free in the IR; latents must be a
    multiple of the UNet's total down-sampling, as for the pipelines anyway. `bos`: the BOS
    token's text embedding for BOS-aware layers of a bare UNet (a pipeline computes it).
    `vae_decoder`: a pipeline's VAE decoder is exported too (float), unless False.
    `base_model` (hub id, folder, or None for the embedded model) is where
    `load_openvino_pipeline` takes the other components from."""
    ov = _require_openvino()

    layers = require_layers(model, "export_openvino")
    is_pipeline = hasattr(model, "encode_prompt")
    if inputs is None and not is_pipeline:
        raise MixDQError("export_openvino of a bare UNet needs inputs={'sample': ..., 'timestep': ..., "
                         "'encoder_hidden_states': ...} (one call's tensors); a pipeline records them itself")
    unet = unet_of(model)
    folder = Path(folder)
    _check_target(folder)
    with torch.no_grad():
        if bos is None and is_pipeline and any(layer.bos_active for layer in layers.values()):
            bos = bos_embedding(model)
        forms = _deployed_forms(layers, bos)  # raises NotCalibratedError before anything is written
        # int8 (int16 for asymmetric 8 bits), unpacked once for tracing and for repacking
        centred = {n: m.centred_weight() for n, m in forms.items() if m.weight_bits is not None}
        inputs = dict(inputs) if inputs is not None else record_unet_inputs(model)[0]
        inputs["timestep"] = timestep_vector(inputs["timestep"])
        names = tuple(inputs)
        traced, parts = _traced_modules(unet, forms, centred)
        with _swapped(unet, traced):
            ov_model = _convert(UNetCall(unet, names), tuple(inputs.values()))
        decoder = None
        if vae_decoder and is_pipeline:
            latents = torch.zeros(1, model.vae.config.latent_channels, *inputs["sample"].shape[2:])
            decoder = _convert(_VAEDecode(model.vae), (latents,))
    for i, name in enumerate(names):
        ov_model.inputs[i].get_tensor().set_names({name})
    stored = _compress_weights(ov_model, forms, centred, parts)

    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        ov.save_model(ov_model, tmp / XML, compress_to_fp16=False)
        del ov_model
        if decoder is not None:
            ov.save_model(decoder, tmp / VAE_XML, compress_to_fp16=False)
        allocation = Allocation({n: m.weight_bits for n, m in forms.items()}, {n: m.act_bits for n, m in forms.items()})
        manifest = dict(
            format=FORMAT, version=VERSION, base_model=base_model,
            unet_config=json.loads(json.dumps(dict(unet.config), default=list)),
            add_embedding_in_features=add_embedding_in_features(unet),
            inputs=list(names), allocation=allocation.to_dict(),
            self_attention_bits=next(iter(layers.values())).config.self_attention_bits,
            layers={n: dict(weight_bits=m.weight_bits, act_bits=m.act_bits, bos=m.spec.bos,
                            stored=stored.get(n, "f32"), stored_bits=STORED_BITS[stored.get(n, "f32")])
                    for n, m in forms.items()},
            vae_decoder=decoder is not None, files=file_hashes(tmp),
            versions={"python": platform.python_version(), "torch": torch.__version__,
                      "diffusers": diffusers.__version__, "openvino": ov.__version__},
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        _replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _convert(module: nn.Module, example: tuple[torch.Tensor, ...]):
    ov = _require_openvino()
    with warnings.catch_warnings():
        # tracing notes each Python-side shape check it freezes (none matters for these inputs),
        # and torch deprecates the TorchScript tracer that OpenVINO's frontend calls
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "`torch.jit.trace", DeprecationWarning)
        return ov.convert_model(module, example_input=example)


def file_hashes(folder: Path) -> dict[str, dict]:
    """The manifest's `files`: SHA-256 and size of each IR file there."""
    return {f: {"sha256": _sha256(folder / f), "bytes": (folder / f).stat().st_size}
            for f in (XML, BIN, VAE_XML, VAE_BIN) if (folder / f).is_file()}


def _check_target(folder: Path) -> None:
    """Refuse to replace anything but an empty folder or an earlier export."""
    if folder.exists() and not (folder.is_dir() and ((folder / MANIFEST).is_file() or not any(folder.iterdir()))):
        raise ConfigError(f"{folder} exists and is not an OpenVINO export: choose a new or empty folder")


def _replace_folder(new: Path, folder: Path) -> None:
    """Put complete folder `new` at `folder`; an existing one is moved aside first, then removed."""
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    _check_target(folder)
    if folder.exists():
        folder.replace(old)
    new.replace(folder)
    shutil.rmtree(old, ignore_errors=True)


def read_openvino_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of an exported folder, after checking that every IR file matches it."""
    folder = Path(folder)
    manifest = read_json_manifest(folder, FORMAT, VERSION, "an OpenVINO export",
                                  "export it again with `mixdq export-openvino`")
    for name, entry in manifest["files"].items():
        f = folder / name
        if not f.is_file():
            raise ConfigError(f"{f} is missing; copy the whole folder, or export the model again")
        if _sha256(f) != entry["sha256"]:
            raise ConfigError(f"{f} does not match its manifest (SHA-256 differs): the IR was changed or "
                              "truncated after export; export the model again or restore the original files")
    return manifest


def compile_options(precision: str | None = "f32", threads: int | None = None, exact: bool = True,
                    config: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenVINO CPU compile properties (see `load_openvino_pipeline`)."""
    options = dict(EXACT) if exact else {}
    if precision is not None:
        options["INFERENCE_PRECISION_HINT"] = precision
    if threads is not None:
        options["INFERENCE_NUM_THREADS"] = int(threads)
    return options | (config or {})


def _compile(path: Path, options: dict[str, Any]):
    return _require_openvino().Core().compile_model(str(path), "CPU", options)


class OpenVINOUNet(ExportedUNet):
    """The exported UNet, compiled by OpenVINO, behind `UNet2DConditionModel`'s call signature.
    Options: as `load_openvino_pipeline`."""

    def __init__(self, folder: str | os.PathLike, precision: str | None = "f32", threads: int | None = None,
                 exact: bool = True, config: dict[str, Any] | None = None, manifest: dict | None = None):
        folder = Path(folder)
        manifest = manifest or read_openvino_manifest(folder)
        super().__init__(manifest["unet_config"], manifest["inputs"], manifest["add_embedding_in_features"])
        self.manifest = manifest
        self.options = compile_options(precision, threads, exact, config)
        self.compiled = _compile(folder / XML, self.options)
        self._request = self.compiled.create_infer_request()

    def run(self, tensors):
        return torch.from_numpy(self._request.infer([t.numpy() for t in tensors])[0].copy())


class OpenVINOVAE(nn.Module):
    """A pipeline's VAE whose `decode` runs the exported decoder; `encode` (image-to-image) stays
    with the PyTorch VAE, whose config the pipeline keeps reading."""

    def __init__(self, vae: nn.Module, folder: str | os.PathLike, options: dict[str, Any]):
        super().__init__()
        self.torch_vae = vae
        self.config = vae.config
        self._request = _compile(Path(folder) / VAE_XML, options).create_infer_request()

    dtype = property(lambda self: torch.float32)
    device = property(lambda self: torch.device("cpu"))

    def encode(self, *args, **kwargs):
        return self.torch_vae.encode(*args, **kwargs)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None):
        out = torch.from_numpy(self._request.infer([z.detach().float().cpu().contiguous().numpy()])[0].copy())
        return DecoderOutput(sample=out) if return_dict else (out,)


def load_openvino_pipeline(folder: str | os.PathLike, base_model: str | None = ..., precision: str | None = "f32",
                           threads: int | None = None, exact: bool = True, config: dict[str, Any] | None = None,
                           vae: bool = True):
    """The base pipeline (from the manifest, or `base_model`) with the exported UNet compiled in.
    `precision`: OpenVINO's inference precision hint for the float parts ("f32": as simulated;
    None: the plugin's default, bf16 on CPUs that have it). `threads`: CPU threads. `exact`: turn
    off the plugin's dynamic quantization of float inputs to compressed-weight matmuls (only
    weight-only layers have those), which the simulation does not do. `config`: more compile
    properties for OpenVINO's CPU plugin. `vae`: decode with the exported VAE decoder (when the
    folder has one) rather than PyTorch's."""

    manifest = read_openvino_manifest(folder)
    unet = OpenVINOUNet(folder, precision=precision, threads=threads, exact=exact, config=config, manifest=manifest)
    pipe = load_pipeline(manifest["base_model"] if base_model is ... else base_model, unet=None)
    pipe.unet = unet
    if vae and manifest.get("vae_decoder"):
        pipe.vae = OpenVINOVAE(pipe.vae, folder, unet.options)
    return pipe
