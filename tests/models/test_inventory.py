import pytest
import yaml

import mixdq

from support import ROOT

PUBLISHED = ROOT / "assets" / "mixdq"


def _published(folder, name):
    data = yaml.safe_load((PUBLISHED / folder / name).read_text())
    return {k.removeprefix("model."): v for k, v in data.items()}


@pytest.fixture(scope="module")
def sdxl():
    return mixdq.build_inventory(mixdq.load_unet_config("sdxl-turbo"), model="sdxl-turbo")


def test_full_size_sdxl_turbo_on_meta(sdxl):
    kinds = [layer.kind for layer in sdxl]
    assert (len(sdxl), kinds.count("Linear"), kinds.count("Conv2d")) == (794, 743, 51)
    assert round(sdxl.total_params / 1e6, 1) == 2565.9
    assert (len(sdxl.group("content")), len(sdxl.group("quality"))) == (420, 374)
    assert sdxl.latent_size == (64, 64)  # 512 x 512 pixels


def test_sdxl_sizes_match_mixdq_published_ratios_for_every_layer(sdxl):
    """MixDQ's size files: weight params / 11,520 and input elements / 320, at 512 x 512."""
    w, a = _published("sdxl-turbo", "weight_ratio.yaml"), _published("sdxl-turbo", "act_ratio.yaml")
    assert set(w) == set(sdxl.names) == set(a)
    for layer in sdxl:
        assert layer.params == pytest.approx(w[layer.name] * 11520, rel=1e-9), layer.name
        assert layer.act_elements == pytest.approx(a[layer.name] * 320, rel=1e-9), layer.name


@pytest.mark.parametrize("arch", ["sd-turbo", "sd-1.5"])
def test_full_size_sd_unets_have_282_layers(arch):
    inv = mixdq.build_inventory(mixdq.load_unet_config(arch))
    assert len(inv) == 282
    assert all(layer.act_elements > 0 and layer.macs > 0 for layer in inv)


def test_sd15_sizes_match_mixdq_lcm_lora_ratios():
    inv = mixdq.build_inventory(mixdq.load_unet_config("sd-1.5"))
    w, a = _published("lcm-lora", "weight_ratio.yaml"), _published("lcm-lora", "act_ratio.yaml")
    assert set(w) == set(inv.names)
    assert all(layer.params == pytest.approx(w[layer.name] * 11520) for layer in inv)
    assert all(layer.act_elements == pytest.approx(a[layer.name] * 320) for layer in inv)


def test_places_and_layer_types(sdxl):
    k = sdxl["down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k"]
    assert (k.block, k.block_index, k.unit, k.unit_index, k.transformer_block, k.layer_type) == (
        "down", 2, "attentions", 1, 9, "attn2.to_k")
    assert k.group == "content" and k.kind == "Linear"
    assert k.act_elements == 77 * 2048 and k.macs == 77 * 2048 * 1280
    r = sdxl["up_blocks.0.resnets.2.conv_shortcut"]
    assert (r.block, r.unit, r.unit_index, r.layer_type, r.group) == ("up", "resnets", 2, "conv_shortcut", "quality")
    assert r.weight_shape == (1280, 1920, 1, 1)
    m = sdxl["mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj"]
    assert (m.block, m.block_index, m.layer_type, m.group) == ("mid", 0, "ff.net.0.proj", "content")
    c = sdxl["conv_in"]
    assert (c.block, c.block_index, c.unit, c.layer_type) == ("conv_in", None, None, "conv_in")
    assert c.macs == 64 * 64 * 320 * 4 * 9
    assert sdxl["add_embedding.linear_1"].block == "add_embedding"
    types = {layer.layer_type for layer in sdxl}
    assert {"attn1.to_q", "attn2.to_v", "attn1.to_out.0", "ff.net.2", "conv1", "conv2",
            "time_emb_proj", "proj_in", "proj_out", "conv"} <= types


def test_grouping_rule_is_a_parameter():
    config = mixdq.load_unet_config("sd-turbo")
    only_cross = mixdq.build_inventory(config, group_rule=mixdq.GroupRule(r"\.attn2\."))
    default = mixdq.build_inventory(config)
    assert len(only_cross.group("content")) == 64 < len(default.group("content")) == 96
    assert all("attn2" in layer.name for layer in only_cross.group("content"))


def test_latent_size_scales_activations_not_weights():
    config = mixdq.load_unet_config("sd-turbo")
    small, big = mixdq.build_inventory(config, latent_size=32), mixdq.build_inventory(config)
    assert small.total_params == big.total_params
    assert small["conv_in"].act_elements * 4 == big["conv_in"].act_elements


def test_inventory_of_a_live_tiny_sdxl_unet_needs_no_forward_on_its_weights(pipe):
    inv = mixdq.build_inventory(pipe.unet)
    names = {n for n, m in pipe.unet.named_modules() if type(m).__name__ in ("Linear", "Conv2d")}
    assert set(inv.names) == names
    assert inv.total_params == sum(pipe.unet.get_submodule(n).weight.numel() for n in names)
    assert mixdq.build_inventory(mixdq.prepare(pipe).unet).names == inv.names  # same when prepared


def test_unknown_layer_lookup_suggests_the_closest_name(sdxl):
    with pytest.raises(mixdq.UnknownLayerError, match="did you mean 'conv_in'"):
        sdxl["conv_inn"]


def test_dataframe_and_json_forms(sdxl):
    df = sdxl.to_dataframe()
    assert len(df) == 794 and df["params"].sum() == sdxl.total_params
    assert {"name", "kind", "params", "group", "macs", "act_elements"} <= set(df.columns)


def test_positions_lay_out_every_layer_once_along_the_forward_pass():
    from mixdq.models.inventory import position

    names = mixdq.load_inventory("sdxl-turbo").names
    pos = {n: position(n) for n in names}
    assert len({(p.place, p.role) for p in pos.values()}) == len(names) == 794
    places = [place for _, place in sorted({(p.order, p.place) for p in pos.values()})]
    assert places[0] == "conv_in" and places[-1] == "conv_out"
    assert places.index("down0.res1") < places.index("down0.downsample") < places.index("down1.res0")
    assert places.index("down2.attn1.tb9") < places.index("mid.res0") < places.index("mid.attn0") < places.index("up0.res0")
    assert position("model.conv_in") == pos["conv_in"]  # MixDQ's prefix is accepted
    assert pos["down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k"].place == "down1.attn0.tb1"
    assert pos["up_blocks.0.upsamplers.0.conv"].role == "conv" and pos["time_embedding.linear_1"].role == "stem"
