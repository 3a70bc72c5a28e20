"""Deployed layers on each kernel: parity with the simulated layers, the storage each holds, and
how `deploy` chooses a kernel per layer (timing, memory allowance, fallbacks that say why)."""

import pytest
import torch
from torch import nn

import mixdq
from mixdq.deploy import (
    KERNELS,
    deploy,
    deployed_layers,
    module_bytes,
)

from tiny_models import sd_like_layers


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
        elif kernel == "int-mm" and name in ("conv", "down", "grouped"):  # one GEMM: Linear and 1x1 only
            assert layer.kernel != "int-mm" and "only 1x1 convolutions" in layer.spec.kernel_reason
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
    machine has; tests/deploy/test_cuda.py does it for real on a GPU) re-holds the codes there."""
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
        usable = {k for k in KERNELS if layer.unsupported(k) is None}
        assert set(spec.kernel_ms) == {"float", *usable}
        assert ("int-mm" in usable) == (name in ("proj", "shortcut")) and ("int8-unpack" in usable) != eight
        at_own_bits = usable - {"int8-unpack"} - (set() if eight else {"int8"})
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
    assert {m.kernel for m in layers.values()} <= {"int8-repack", "dequant", "int-mm"}  # at their own bits
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


@pytest.mark.parametrize("weight", [8, 4])
def test_int_mm_holds_the_weight_at_its_bits_and_sums_exactly(weight):
    """torch._int_mm (int8 tensor cores on a GPU; its CPU implementation here): 8-bit codes are
    read in place and lower widths unpacked per call, so the layer holds what `dequant` holds;
    the input's zero-point comes out of the int32 sums exactly."""
    model, x = sd_like_layers()
    simulated = _calibrated(model, x, mixdq.Allocation.uniform(list(model), weight, 8))
    with torch.no_grad():
        deploy(model, kernel="dequant")
        held = {n: m.weight_bytes() for n, m in deployed_layers(model).items()}
        for name in ("proj", "shortcut"):
            layer = deployed_layers(model)[name]
            layer.use_kernel("int-mm")
            assert layer.weight_bytes() == held[name] and layer._packed_int8 is None
            real = layer(x[name])
            assert layer._x_zero_point != 128  # an asymmetric grid: the zero-point term is exercised
            assert _relative_error(real, simulated[name]) < 1e-5
            # the integer part alone equals an int64 reference sum, bit for bit
            rows = x[name].reshape(-1, 64) if name == "proj" else x[name].permute(0, 2, 3, 1).reshape(-1, 16)
            q = layer._quantize_input(rows).long() - layer._x_zero_point
            w = layer.centred_weight().reshape(layer.weight_shape[0], -1).long()
            expected = (q @ w.t()).double() * layer.spec.act_scale * layer.weight_scale.double() + layer.bias.double()
            assert torch.allclose(layer._int_mm(rows).double(), expected, rtol=1e-6, atol=1e-6)
    assert "only 1x1 convolutions" in deployed_layers(model)["conv"].unsupported("int-mm")
