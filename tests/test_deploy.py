"""Deployment: packed codes, int8 kernels, parity with the simulated model, save and load."""

import json

import pytest
import torch
from torch import nn

import mixdq
from mixdq.deploy import (
    KERNELS,
    DeployedLayer,
    LayerSpec,
    deploy,
    deployed_layers,
    load_deployed,
    load_deployed_pipeline,
    module_bytes,
    pack,
    packed_nbytes,
    read_manifest,
    save_deployed,
    unpack,
)
from mixdq.layers import quant_layers
from mixdq.shapes import dataset

from tiny_models import sd_like_layers

CAPTIONS = dataset.evaluation_captions(4)
CALIBRATION = mixdq.CalibrationConfig(prompts=dataset.calibration_captions(8), num_inference_steps=4, batch_size=8)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("numel", [0, 1, 7, 8, 9, 1000, 4099])
def test_pack_unpack_round_trip_is_exact(bits, numel):
    codes = torch.randint(0, 2**bits, (numel,), dtype=torch.uint8, generator=torch.Generator().manual_seed(numel))
    packed = pack(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_nbytes(numel, bits) == -(-numel // 8) * bits
    assert torch.equal(unpack(packed, bits, numel), codes)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("numel", [0, 1, 9, 4099])
def test_split_planes_round_trip_at_the_same_bytes(bits, numel):
    from mixdq.deploy.packing import pack_split, split_length, unpack_split_into

    half = 2 ** (bits - 1)
    values = torch.randint(-half, half, (numel,), dtype=torch.int8, generator=torch.Generator().manual_seed(numel))
    values[:2] = torch.tensor([-half, half - 1])[: min(numel, 2)]  # both ends of the range
    planes = pack_split(values, bits)
    assert sum(p.numel() for p in planes) == packed_nbytes(numel, bits)
    out = torch.full((split_length(numel),), 99, dtype=torch.int8)
    unpack_split_into(planes, bits, out)
    assert torch.equal(out[:numel], values) and not out[numel:].any()  # the padding holds zeros


def test_pack_refuses_codes_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        pack(torch.tensor([0, 4], dtype=torch.uint8), 2)


def _layers_model():
    torch.manual_seed(0)
    return nn.ModuleDict({"proj": nn.Linear(64, 96), "conv": nn.Conv2d(16, 32, 3, padding=1, stride=2)})


def _inputs():
    g = torch.Generator().manual_seed(1)
    return {"proj": torch.randn(5, 7, 64, generator=g) * 3, "conv": torch.randn(2, 16, 12, 12, generator=g)}


def _calibrated(model, x, allocation, **quant):
    mixdq.prepare(model, mixdq.QuantConfig(**quant))
    with mixdq.calibrating(model), torch.no_grad():
        for name, layer in model.items():
            layer(x[name])
    mixdq.apply_allocation(model, allocation)
    with torch.no_grad():
        return {name: layer(x[name]) for name, layer in model.items()}


def _relative_error(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("act", [8, 4])
@pytest.mark.parametrize("weight", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_matches_the_simulated_layers(kernel, weight, act):
    model, x = sd_like_layers()
    simulated = _calibrated(model, x, mixdq.Allocation.uniform(list(model), weight, act))
    with torch.no_grad():
        deploy(model, kernel=kernel)
        real = {name: layer(x[name]) for name, layer in model.items()}
    for name, layer in deployed_layers(model).items():
        if kernel == "int8-unpack" and weight == 8:  # 8-bit codes are held pre-packed instead
            assert layer.kernel == "int8" and "only 2-6-bit codes are unpacked" in layer.spec.kernel_reason
        else:
            assert layer.kernel == kernel and layer.spec.kernel_reason == "fixed"
        # int8 kernels sum in int32 and rescale once; the simulation sums dequantized floats:
        # the same numbers up to float32 rounding
        assert _relative_error(real[name], simulated[name]) < 1e-5, name


@pytest.mark.parametrize("weight", [3, 4])
def test_large_weights_unpack_chunk_by_chunk_onto_shared_scratch(weight, monkeypatch):
    """Chunks of output channels (here 2 KiB of int8 each; 4 MiB by default), one scratch weight
    per chunk shape, whatever the layer; a remainder chunk where the channels do not divide."""
    from mixdq.deploy import blocked
    from mixdq.deploy.measure import scratch_bytes

    monkeypatch.setattr(blocked, "MAX_CHUNK_BYTES", 2048)
    blocked.SCRATCH.keep(set())
    torch.manual_seed(0)
    model = nn.ModuleDict({"a": nn.Linear(64, 96), "b": nn.Linear(64, 40), "conv": nn.Conv2d(16, 40, 3, padding=1)})
    g = torch.Generator().manual_seed(1)
    x = {"a": torch.randn(3, 64, generator=g), "b": torch.randn(3, 64, generator=g),
         "conv": torch.randn(1, 16, 6, 6, generator=g)}
    simulated = _calibrated(model, x, mixdq.Allocation.uniform(list(model), weight, 8))
    with torch.no_grad():
        deploy(model, kernel="int8-unpack")
        real = {name: layer(x[name]) for name, layer in model.items()}
    layers = deployed_layers(model)
    for name, layer in layers.items():
        assert layer.kernel == "int8-unpack", layer.spec.kernel_reason
        assert _relative_error(real[name], simulated[name]) < 1e-5, name
    rows = {n: [c.rows for c in m._blocked.chunks] for n, m in layers.items()}
    assert rows["a"] == [slice(0, 32), slice(32, 64), slice(64, 96)]
    assert rows["b"] == [slice(0, 32), slice(32, 40)] and len(rows["conv"]) == 3  # 16 + 16 + 8
    keys = [c.key for m in layers.values() for c in m._blocked.chunks]
    assert len(set(keys)) == 4  # linear 32x64 (shared by a and b), 8x64; conv 16x16x3x3, 8x16x3x3
    # one scratch per shape, counted once in the model's bytes (a key ends with its packed bytes)
    assert scratch_bytes(list(layers.values())) == blocked.SCRATCH.nbytes(set(keys)) == sum(k[-1] for k in set(keys))
    with torch.no_grad():
        for name, layer in layers.items():  # and back to the stored codes, exactly: dequant is bit for bit
            layer.use_kernel("dequant")
            assert torch.equal(layer(x[name]), simulated[name]), name


@pytest.mark.parametrize("weight", [4, 8])
def test_asymmetric_weights_run_on_int8_kernels_below_8_bits(weight):
    model, x = sd_like_layers()
    simulated = _calibrated(model, x, mixdq.Allocation.uniform(list(model), weight, 8),
                            weight=mixdq.WeightQuantConfig(symmetric=False))
    with torch.no_grad():
        deploy(model, kernel="int8")
        real = {name: layer(x[name]) for name, layer in model.items()}
    for name, layer in deployed_layers(model).items():
        assert _relative_error(real[name], simulated[name]) < 1e-5, name
        if weight == 8:  # code - zero-point spans [-255, 255]
            assert layer.kernel == "dequant" and "do not fit int8" in layer.spec.kernel_reason
        else:
            assert layer.kernel == "int8"
            assert "asymmetric weights" in layer.unsupported("int8-unpack")


@pytest.mark.parametrize("weight,act", [(3, None), (None, 8), (8, None)])
def test_layers_without_integer_inputs_fall_back_and_say_why(weight, act):
    model, x = sd_like_layers()
    simulated = _calibrated(model, x, mixdq.Allocation.uniform(list(model), weight, act))
    with torch.no_grad():
        deploy(model, kernel="int8", sample=lambda: [layer(x[name]) for name, layer in model.items()])
        real = {name: layer(x[name]) for name, layer in model.items()}
    for name, layer in deployed_layers(model).items():
        assert _relative_error(real[name], simulated[name]) < 1e-5, name
        if weight is None:
            assert layer.kernel is None
        else:  # weight-only: timed among what it can use, and the reason kept
            assert layer.kernel == "dequant" and layer.spec.input_shape == tuple(x[name].shape)
            assert layer.spec.kernel_reason.startswith("int8 asked for, but its activations stay floating point")


@pytest.mark.parametrize("kernel", ["int8", "int8-unpack", "int8-repack"])
def test_layers_moved_off_the_cpu_leave_onednn_for_dequant_and_say_why(kernel):
    """oneDNN's packed weights exist on the CPU only: `.to(device)` (here `meta`, which any
    machine has; tests/test_cuda.py does it for real on a GPU) re-holds the codes there."""
    model, x = sd_like_layers()
    _calibrated(model, x, mixdq.Allocation.uniform(list(model), 4, 8))
    with torch.no_grad():
        deploy(model, kernel=kernel)
    layers = deployed_layers(model)
    codes = {n: m._stored_codes(m.centred_weight()) for n, m in layers.items()}
    model.to("meta")
    for name, layer in layers.items():
        assert layer.kernel == "dequant", name
        assert layer.spec.kernel_reason == (f"{kernel} chosen on the CPU, but oneDNN's int8 kernels run on "
                                            "the CPU only and this layer moved to meta")
        assert layer.weight_codes.is_meta and layer.weight_codes.shape == codes[name].shape
        assert layer._packed_int8 is None and layer._blocked is None
        assert "run on the CPU" in layer.unsupported("int8")


def test_auto_keeps_the_fastest_kernel_measured_on_the_real_shape():
    model, x = sd_like_layers()
    names = list(model)
    allocation = mixdq.Allocation(dict(zip(names, [4, 8, 2, 6, 3], strict=True)), dict.fromkeys(names, 8))
    simulated = _calibrated(model, x, allocation)
    with torch.no_grad():
        deploy(model, sample=lambda: [layer(x[name]) for name, layer in model.items()], cache_bytes=0)
        real = {name: layer(x[name]) for name, layer in model.items()}
    for name, layer in deployed_layers(model).items():
        spec = layer.spec
        assert _relative_error(real[name], simulated[name]) < 1e-5, name
        assert spec.input_shape == tuple(x[name].shape) and spec.kernel_reason == "fastest measured"
        eight = allocation.weight_bits(name) == 8
        assert set(spec.kernel_ms) == {"float", *KERNELS} - ({"int8-unpack"} if eight else set())
        at_own_bits = ["int8", "int8-repack", "dequant"] if eight else ["int8-repack", "dequant"]
        assert spec.kernel == min(at_own_bits, key=spec.kernel_ms.__getitem__)
        if not eight:  # no allowance: the codes stay at their bits
            held_as_int8 = layer.numel + layer.weight_shape[0] * 5  # a byte per weight, a scale and zero-point per channel
            assert layer._packed_int8 is None and layer.weight_bytes() < held_as_int8


def test_auto_says_why_a_layer_has_no_int8_kernel():
    model, x = sd_like_layers()
    _calibrated(model, x, mixdq.Allocation.uniform(list(model), 4, None))
    with torch.no_grad():
        deploy(model, sample=lambda: [layer(x[name]) for name, layer in model.items()])
    for layer in deployed_layers(model).values():
        assert layer.kernel == "dequant" and layer.spec.kernel_reason == (
            "fastest measured; no int8 kernel: its activations stay floating point, and int8 kernels take "
            "integer inputs")


def test_a_memory_allowance_buys_speed_where_it_saves_most_per_byte():
    from mixdq.deploy.kernels import choose_kernels

    torch.manual_seed(0)
    model = nn.ModuleDict({f"l{i}": nn.Linear(256, 256) for i in range(4)})
    x = {n: torch.randn(512, 256) for n in model}
    _calibrated(model, x, mixdq.Allocation.uniform(list(model), 4, 8))
    deploy(model, kernel="dequant")
    layers = deployed_layers(model)
    shapes = {n: tuple(x[n].shape) for n in model}
    choose_kernels(layers, shapes, "auto", cache_bytes=0)
    assert {m.kernel for m in layers.values()} <= {"int8-repack", "dequant"}
    at_own_bits = module_bytes(model)
    choose_kernels(layers, shapes, "auto", cache_bytes=10**9)
    for layer in layers.values():  # with room for everything, the fastest of all
        timed = {k: v for k, v in layer.spec.kernel_ms.items() if k != "float"}
        assert layer.kernel == min(timed, key=timed.__getitem__)
        if layer.kernel in ("int8", "int8-unpack"):
            assert "memory allowance" in layer.spec.kernel_reason and layer.weight_codes is None
    one_scratch = 256 * 256 + 4 * 256
    choose_kernels(layers, shapes, "auto", cache_bytes=one_scratch)
    assert not any(m.kernel == "int8" for m in layers.values())  # one int8 weight costs half a scratch, saves 1/4
    assert module_bytes(model) - at_own_bits <= one_scratch + 4 * 4 * 256  # the scratch, and a tail per layer
    with pytest.raises(ValueError, match="unknown kernel 'int4'"):
        choose_kernels(layers, shapes, "int4")


def test_deployed_weights_really_are_smaller():
    model = _layers_model()
    mixdq.prepare(model)
    mixdq.apply_allocation(model, mixdq.Allocation({"proj": 4, "conv": 2}))
    float_bytes = module_bytes(model)
    deploy(model)
    layers = deployed_layers(model)
    assert layers["proj"].weight_codes.numel() == 64 * 96 // 2 and layers["conv"].weight_codes.numel() == 16 * 32 * 9 // 4
    expected = float_bytes - (64 * 96 + 16 * 32 * 9) * 4 + 64 * 96 // 2 + 16 * 32 * 9 // 4 + (96 + 32) * (4 + 1)
    assert module_bytes(model) == expected  # codes + fp32 scale + uint8 zero-point per channel


def test_layer_specs_keep_the_version_1_manifest_format():
    """Conv geometry and the activation grid appear only where they apply, `kernel` on quantized
    layers; an entry written before kernels were chosen reads back as "dequant" (what it ran)."""
    torch.manual_seed(0)
    model = nn.ModuleDict({"proj": nn.Linear(64, 96), "conv": nn.Conv2d(16, 32, 3, padding=1, stride=2),
                           "attn2": nn.ModuleDict({"to_k": nn.Linear(64, 32)}),
                           "attn1": nn.ModuleDict({"to_q": nn.Linear(64, 32)})})
    x = {"proj": torch.randn(5, 7, 64), "conv": torch.randn(2, 16, 12, 12), "attn2.to_k": torch.randn(2, 7, 64),
         "attn1.to_q": torch.randn(2, 7, 64)}
    mixdq.prepare(model, mixdq.QuantConfig(self_attention_bits=8))
    with mixdq.calibrating(model), torch.no_grad():
        for name, layer in quant_layers(model).items():
            layer(x[name])
    mixdq.apply_allocation(model, mixdq.Allocation({"proj": 8, "conv": 4, "attn2.to_k": 3, "attn1.to_q": 4},
                                                   {"proj": 8, "conv": 8, "attn2.to_k": None, "attn1.to_q": 8}))
    deploy(model, bos=torch.randn(64), sample=lambda: [layer(x[name]) for name, layer in quant_layers(model).items()])
    base = ["layer", "kind", "weight_bits", "act_bits", "weight_shape", "bos"]
    act = ["act_scale", "act_zero_point", "act_qmin", "act_qmax"]
    chosen = ["kernel", "kernel_reason", "kernel_ms", "input_shape"]
    expected = {"proj": base + act + chosen, "conv": base + ["stride", "padding", "dilation", "groups"] + act + chosen,
                "attn2.to_k": base + chosen, "attn1.to_q": base + act + ["output_bits", "output_scale"] + chosen}
    layers = deployed_layers(model)
    for name, layer in layers.items():
        entry = json.loads(json.dumps(layer.spec.to_dict()))
        assert list(entry) == expected[name]
        assert LayerSpec.from_dict(entry) == layer.spec
    assert layers["proj"].kernel in KERNELS and layers["attn2.to_k"].spec.bos and layers["conv"].stride == (2, 2)
    assert layers["attn2.to_k"].spec.input_shape == (2, 7, 64)
    old = {"layer": "down.conv", "kind": "Conv2d", "weight_bits": 4, "act_bits": 8, "weight_shape": [32, 16, 3, 3],
           "bos": False, "stride": [2, 2], "padding": [1, 1], "dilation": [1, 1], "groups": 1,
           "act_scale": 0.0296, "act_zero_point": 128, "act_qmin": 0, "act_qmax": 255}
    assert json.dumps(LayerSpec.from_dict(old).to_dict()) == json.dumps(old | {"kernel": "dequant"})
    with pytest.raises(TypeError, match="abstract"):
        DeployedLayer(layers["attn2.to_k"].spec, layers["attn2.to_k"].tensors())


@pytest.fixture(scope="module")
def simulated_and_deployed():
    """The embedded model under a mixed allocation (int8 kernels, packed 2-6 bits, float layers),
    its simulated images, and the same pipeline deployed."""
    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    names = mixdq.load_inventory(None).names
    bits = [8, 4, 3, 2, 6, 5, None, 8]
    allocation = mixdq.Allocation({n: bits[i % len(bits)] for i, n in enumerate(names)},
                                  {n: 8 if i % 5 else 6 for i, n in enumerate(names)})
    mixdq.quantize_(pipe, allocation, calibration=CALIBRATION)
    simulated = mixdq.generate_images(pipe, CAPTIONS, **mixdq.generation_defaults().as_kwargs())
    deploy(pipe)
    return pipe, allocation, simulated


def test_deployed_images_match_the_simulated_model(simulated_and_deployed):
    pipe, allocation, simulated = simulated_and_deployed
    layers = deployed_layers(pipe)
    assert sum(m.int8 for m in layers.values()) > 0 and any(m.weight_bits == 2 for m in layers.values())
    assert not quant_layers(pipe)  # no simulated layer is left
    real = mixdq.generate_images(pipe, CAPTIONS, **mixdq.generation_defaults().as_kwargs())
    # bound: 40 dB. Differences come only from float rounding (int32 sums, rescaling), which can
    # move an activation across a rounding boundary; 4 sampling steps carry that on.
    assert mixdq.metrics.psnr_db((simulated + 1) / 2, (real + 1) / 2) > 40


def test_bos_token_stays_floating_point(simulated_and_deployed):
    pipe, _, _ = simulated_and_deployed
    to_k = [m for n, m in deployed_layers(pipe).items() if n.endswith("attn2.to_k")][0]
    assert to_k.bos_output is not None
    text = pipe.encode_prompt(prompt="a red circle", device="cpu", num_images_per_prompt=1,
                              do_classifier_free_guidance=False)[0]
    with torch.no_grad():
        out = to_k(text)
    assert torch.equal(out[0, 0], to_k.bos_output)


def test_save_and_load_give_the_same_image_offline(simulated_and_deployed, tmp_path):
    pipe, allocation, _ = simulated_and_deployed
    before = mixdq.generate_images(pipe, CAPTIONS[:2], **mixdq.generation_defaults().as_kwargs())
    save_deployed(pipe, tmp_path / "m", base_model=None)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["format"] == "mixdq-deployed" and len(manifest["weights"]["sha256"]) == 64
    assert mixdq.Allocation.from_dict(manifest["allocation"]) == allocation
    assert {"torch", "diffusers"} <= set(manifest["versions"])
    assert not list((tmp_path / "m").glob("*.bin")) and not list((tmp_path / "m").glob("*.pt"))
    loaded = load_deployed_pipeline(tmp_path / "m")
    loaded.set_progress_bar_config(disable=True)
    after = mixdq.generate_images(loaded, CAPTIONS[:2], **mixdq.generation_defaults().as_kwargs())
    assert torch.equal(before, after)
    assert module_bytes(loaded) == module_bytes(pipe)
    kept = {n: m.spec for n, m in deployed_layers(loaded).items()}
    assert kept == {n: m.spec for n, m in deployed_layers(pipe).items()}  # kernels, reasons, timings
    assert {s.kernel for s in kept.values()} >= {"int8", None} and all(s.kernel_ms for s in kept.values() if s.kernel)


def test_truncated_or_tampered_checkpoints_are_refused(simulated_and_deployed, tmp_path):
    pipe, _, _ = simulated_and_deployed
    folder = save_deployed(pipe, tmp_path / "m")
    weights = folder / "unet.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(mixdq.ConfigError, match="truncated or changed"):
        load_deployed(folder)
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(mixdq.ConfigError, match="truncated or changed"):
        load_deployed(folder)
    weights.write_bytes(data)
    (folder / "manifest.json").write_text("{ not json")
    with pytest.raises(mixdq.ConfigError, match="damaged"):
        load_deployed(folder)
    with pytest.raises(mixdq.ConfigError, match="not a deployed MixDQ model"):
        load_deployed(tmp_path)


def test_report_gives_memory_both_ways(simulated_and_deployed):
    from mixdq.deploy import report

    pipe, allocation, _ = simulated_and_deployed
    inventory = mixdq.load_inventory(None)
    r = report(pipe, inventory, allocation, lambda: pipe(CAPTIONS[0], **mixdq.generation_defaults().as_kwargs()), repeats=1)
    # simulated: fp16 scales; held: fp32 scales, plus a uint8 zero-point but for 8-bit (int8) codes
    extra = sum(layer.out_channels * (2 + (0 if allocation.weight_bits(layer.name) == 8 else 1))
                for layer in inventory if allocation.weight_bits(layer.name) is not None)
    # weights held for a kernel instead of their codes (int8 pre-packed; codes in oneDNN's blocked
    # order, with its padding and an int32 per channel) count what they hold beyond the codes
    layers = [m for m in deployed_layers(pipe).values() if m.extra_storage_bytes()]
    extra += sum(m.extra_storage_bytes() - (m.numel if m.weight_bits == 8 else packed_nbytes(m.numel, m.weight_bits))
                 for m in layers)
    assert r.measured_weight_bytes - r.simulated_weight_bytes == extra
    fp = sum(allocation.weight_bits(layer.name) is None for layer in inventory)
    assert sum(r.kernels.values()) == len(inventory) and r.kernels["float"] == fp
    assert r.unet_bytes > r.measured_weight_bytes and r.latency_s > 0
    if r.peak_rss_bytes is not None:
        assert r.peak_rss_bytes >= r.resident_before_bytes > r.unet_bytes


@pytest.mark.parametrize("self_attention_bits", [None, 8])
@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_dequant_kernels_give_the_simulated_model_bit_for_bit(family, self_attention_bits, tmp_path):
    """Packed codes, BOS projection, activation grid, self-attention's query/key grid: conversion
    loses nothing (SD and SDXL)."""
    from conftest import CALIBRATION
    from tiny_models import PROMPTS, tiny_sd, tiny_sdxl

    pipe = {"sd": tiny_sd, "sdxl": tiny_sdxl}[family]()
    pipe.set_progress_bar_config(disable=True)
    names = mixdq.build_inventory(pipe.unet).names
    bits = [8, 4, 3, 2, 6, 5, None]
    allocation = mixdq.Allocation({n: bits[i % len(bits)] for i, n in enumerate(names)}, {n: 8 for n in names})
    mixdq.quantize_(pipe, allocation, config=mixdq.QuantConfig(self_attention_bits=self_attention_bits),
                    calibration=CALIBRATION)
    kw = dict(num_inference_steps=2, guidance_scale=0.0, height=32, width=32)
    simulated = mixdq.generate_images(pipe, PROMPTS, **kw)
    deploy(pipe, kernel="dequant")
    on_grid = {n for n, layer in deployed_layers(pipe).items() if layer.spec.output_bits == 8}
    assert bool(on_grid) == (self_attention_bits == 8)
    assert all(n.endswith(("attn1.to_q", "attn1.to_k")) for n in on_grid)
    assert torch.equal(mixdq.generate_images(pipe, PROMPTS, **kw), simulated)
    save_deployed(pipe, tmp_path / "m")
    # v2 only where a v1 reader would drop the query/key grid without a word
    assert read_manifest(tmp_path / "m")["version"] == (2 if self_attention_bits else 1)
    pipe.unet = load_deployed(tmp_path / "m")
    assert torch.equal(mixdq.generate_images(pipe, PROMPTS, **kw), simulated)
