import json

import pytest

import mixdq
from mixdq import Allocation


@pytest.fixture(scope="module")
def names():
    return mixdq.build_inventory(mixdq.load_unet_config("sdxl-turbo")).names


def _mixed(names):
    return Allocation(
        {n: (4 if "attn2" in n else 8) for n in names if n != "conv_in"},
        {n: (6 if "ff" in n else 8) for n in names if n not in ("conv_in", "conv_out")},
    )


def test_json_round_trip_and_form(names, tmp_path):
    alloc = _mixed(names)
    assert Allocation.from_json(alloc.to_json()) == alloc
    data = json.loads(alloc.to_json())
    assert set(data) == {"weights", "activations"}
    assert data["weights"]["down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"] == 4
    assert "conv_in" not in data["weights"]  # floating point: left out
    path = alloc.save(tmp_path / "sub" / "alloc.json")
    assert Allocation.load(path) == alloc
    assert not list(path.parent.glob(".*tmp"))  # atomic write leaves no temporary behind


def test_fp_spelled_out_in_json_reads_as_floating_point():
    alloc = Allocation.from_json('{"weights": {"conv_in": "fp", "conv_out": 4}}')
    assert alloc.weight_bits("conv_in") is None and alloc.weight_bits("conv_out") == 4
    assert alloc == Allocation({"conv_out": 4})


@pytest.mark.parametrize("prefix", [True, False])
def test_mixdq_yaml_round_trip_with_or_without_prefix(names, prefix):
    alloc = _mixed(names)
    weight_yaml = alloc.to_mixdq_yaml("weight", prefix=prefix)
    act_yaml = alloc.to_mixdq_yaml("activation", prefix=prefix)
    first = weight_yaml.splitlines()[0]
    assert first.startswith("model.") == prefix and first.endswith((": 4", ": 8"))
    assert Allocation.from_mixdq_yaml(weight=weight_yaml, act=act_yaml) == alloc


def test_mixdq_yaml_import_in_the_papers_format(names):
    text = "model.conv_in: 8\nmodel.down_blocks.0.resnets.0.conv1: 4\nmodel.conv_out: 16\n"
    alloc = Allocation.from_mixdq_yaml(weight=text)
    assert alloc.weights == {"conv_in": 8, "down_blocks.0.resnets.0.conv1": 4}
    alloc.check_names(names)


def test_uniform_and_with_layer(names):
    alloc = Allocation.uniform(names, 8, 8)
    assert len(alloc.weights) == len(alloc.acts) == 794
    flipped = alloc.with_layer("conv_in", weight=None)
    assert flipped.weight_bits("conv_in") is None and flipped.act_bits("conv_in") == 8
    assert alloc.weight_bits("conv_in") == 8  # allocations are values


def test_bad_inputs_are_clear_errors(names):
    with pytest.raises(mixdq.UnsupportedBitsError, match="weight bit-width 16 for layer 'conv_in'"):
        Allocation.from_json('{"weights": {"conv_in": 16}}')
    with pytest.raises(mixdq.ConfigError, match="not valid JSON"):
        Allocation.from_json('{"weights": ')
    with pytest.raises(mixdq.ConfigError, match="'weights' and/or 'activations'"):
        Allocation.from_json('{"weight": {}}')
    with pytest.raises(mixdq.ConfigError, match="map layer names to bits"):
        Allocation.from_mixdq_yaml(weight="- 8\n- 4\n")
    with pytest.raises(mixdq.UnknownLayerError, match="did you mean 'down_blocks.0.resnets.0.conv1'"):
        Allocation({"down_blocks.0.resnet.0.conv1": 4}).check_names(names)


def test_quant_config_json_round_trip():
    cfg = mixdq.QuantConfig(
        weight=mixdq.WeightQuantConfig(symmetric=False, range_method="mse"),
        act=mixdq.ActQuantConfig(observer="percentile", momentum=0.9),
        bos_aware=False,
    )
    assert mixdq.QuantConfig.from_json(cfg.to_json()) == cfg
    cal = mixdq.CalibrationConfig(prompts=("a", "b"), num_inference_steps=4)
    assert mixdq.CalibrationConfig.from_json(cal.to_json()) == cal
    with pytest.raises(mixdq.ConfigError, match="valid fields"):
        mixdq.QuantConfig.from_json('{"bos": true}')
    with pytest.raises(mixdq.ConfigError, match="range_method"):
        mixdq.WeightQuantConfig(range_method="kl")
