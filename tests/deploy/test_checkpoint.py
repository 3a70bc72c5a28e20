"""A deployed model on disk: the manifest format, save and load offline, damaged files refused."""

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
    save_deployed,
)
from mixdq.embedded import dataset
from mixdq.quant.layers import quant_layers

CAPTIONS = dataset.evaluation_captions(4)


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
