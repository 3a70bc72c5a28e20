"""Profiles from MixDQ's YAML files reproduce the published numbers."""

import shutil

import pytest

import mixdq

from support import ROOT

PUBLISHED = ROOT / "assets" / "mixdq" / "sdxl-turbo"


@pytest.fixture(scope="module")
def profile():
    return mixdq.import_mixdq(PUBLISHED)


def test_published_numbers_for_named_layers(profile):
    # values as printed in MixDQ's weight_sqnr.yaml / weight_ssim.yaml / act_ssim.yaml
    assert profile["add_embedding.linear_1"].weight["sqnr"] == {
        2: 30.209497451782227, 4: 38.59379196166992, 8: 65.36524963378906}
    assert profile["add_embedding.linear_1"].activation["sqnr"][2] == 30.777667999267578
    to_k = profile["down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"]
    assert to_k.weight["ssim"] == {2: 0.9962442225486875, 4: 0.9997988658945326, 8: 0.9999366524686143}
    assert to_k.activation["ssim"][2] == 0.9875606947874548
    assert to_k.group == "content" and profile["conv_in"].group == "quality"
    assert "ssim" not in profile["conv_in"].weight  # MixDQ measured SSIM for content layers only


def test_sizes_come_from_the_matching_architecture(profile):
    assert len(profile) == 794 and profile.meta["model"] == "sdxl-turbo"
    assert profile.total_params == 2_565_880_320
    assert profile["conv_in"].params == 11_520 and profile["conv_in"].out_channels == 320
    assert profile["conv_in"].act_elements == 4 * 64 * 64


def test_shipped_profile_is_this_import(profile):
    shipped = mixdq.Profile.load(ROOT / "assets" / "profiles" / "sdxl-turbo-mixdq.json")
    assert [layer.to_dict() for layer in shipped] == [layer.to_dict() for layer in profile]


def test_other_file_names_and_ratio_sizes(tmp_path):
    """MixDQ's scripts name files differently; without a matching architecture, sizes come from
    the ratio files (weight ratio x 11,520 parameters, act ratio x 320 elements)."""
    for src, dst in [("weight_sqnr.yaml", "sensitivity_weight_sqnr.yaml"),
                     ("weight_ratio.yaml", "weight_ratio_config.yaml"),
                     ("act_ratio.yaml", "act_ratio_config.yaml")]:
        shutil.copy(PUBLISHED / src, tmp_path / dst)
    profile = mixdq.import_mixdq(tmp_path, architecture=None)
    assert profile["conv_in"].params == 11_520 and profile["conv_in"].out_channels == 0
    assert profile["conv_out"].act_elements == 4096 * 320
    assert abs(profile.total_params - 2_565_880_320) < 1000
    assert profile["conv_in"].activation == {}


def test_bad_folders_are_explained(tmp_path):
    with pytest.raises(mixdq.ConfigError, match="no MixDQ sensitivity files"):
        mixdq.import_mixdq(tmp_path)
    (tmp_path / "weight_sqnr.yaml").write_text("conv_in: [1.0, 2.0]\n")
    with pytest.raises(mixdq.ConfigError, match="expected a list of 3 scores"):
        mixdq.import_mixdq(tmp_path, architecture=None)
    (tmp_path / "weight_sqnr.yaml").write_text("conv_in: [1.0, 2.0, 3.0]\n")
    with pytest.raises(mixdq.ConfigError, match="has no size"):
        mixdq.import_mixdq(tmp_path, architecture=None)
