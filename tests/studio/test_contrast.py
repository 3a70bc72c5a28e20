"""Content against quality (`app.contrast`, the "Content vs quality" view): the two sides are the
engine's images of each selection alone, the defaults are the profile's most damaging layers, and
what the studio teaches is what the measurements say."""

import json

import numpy as np
import pytest

import mixdq
from app import contrast, images, isolated
from app.registry import default_models
from app.tabs.contrast import teaching

from support import ROOT

MODELS = default_models()
EMBEDDED = MODELS["embedded"]
PROMPT = images.compose("large", "red", "circle", "on the left", "white")


def test_worse_share_counts_pairs():
    assert contrast.worse_share([3, 4], [1, 2]) == 1.0  # every content value worse
    assert contrast.worse_share([3, 4], [1, 2], higher_is_worse=False) == 0.0
    assert contrast.worse_share([1, 2], [1, 2]) == 0.5  # the same values: no separation
    assert contrast.worse_share([2], [1, 2, 3]) == 0.5  # one worse, one tie, one better
    assert contrast.verdict(0.9) == "content layers are hurt more"
    assert contrast.verdict(0.2) == "quality layers are hurt more"
    assert contrast.verdict(0.6) == "it does not tell the groups apart"
    with pytest.raises(mixdq.ConfigError, match="at least one content and one quality"):
        contrast.worse_share([], [1.0])


@pytest.mark.parametrize("key, bits", [("embedded", 2), ("sdxl-turbo", 4)])
def test_the_defaults_are_the_profiles_most_damaging_layer_of_each_group(key, bits):
    entry = MODELS[key]
    content, quality = contrast.most_damaging(entry, "weight", bits)
    assert entry.profile[content.name].group == "content" and entry.profile[quality.name].group == "quality"
    ssim = {layer.name: layer.weight["ssim"][bits] for layer in entry.profile if layer.group == "content"}
    sqnr = {layer.name: layer.weight["sqnr"][bits] for layer in entry.profile if layer.group == "quality"}
    assert ssim[content.name] == min(ssim.values()) and sqnr[quality.name] == min(sqnr.values())


def test_each_side_is_its_selection_alone_against_one_fp_image():
    sides = [isolated.Selection("group", "content"), isolated.Selection("group", "quality")]
    both = isolated.see_each(EMBEDDED, sides, "weight", 2, PROMPT, 4)
    for side, seen in zip(sides, both):
        alone = isolated.see(EMBEDDED, side, "weight", 2, PROMPT, 4)
        assert np.array_equal(seen.quantized, alone.quantized) and np.array_equal(seen.fp, both[0].fp)
        assert seen.metrics == alone.metrics and seen.layers == len(side.layers(EMBEDDED))
        assert 0 < seen.metrics["sqnr_db"] < mixdq.core.metrics.SQNR_CAP_DB  # the UNet output, measured now
    table = contrast.scores_table(EMBEDDED, sides, both)
    assert list(table["group"]) == ["content", "quality"]
    assert table["profiled SSIM"].isna().all()  # a group was never profiled as a whole
    assert set(table.columns) >= {"SSIM vs FP", "SQNR of UNet output dB", "caption alignment"}
    assert isolated.Selection("block", "down_blocks.1").group(EMBEDDED) == "content and quality"


def test_a_layer_measured_now_agrees_with_what_the_sweep_measured():
    """The view's SQNR is the sweep's measure (every step's UNet output), here on one prompt: for
    the layer that hurts most, both say it hurts, and a layer the sweep found harmless is near-lossless now."""
    content, quality = contrast.most_damaging(EMBEDDED, "weight", 2)
    worst, = isolated.see_each(EMBEDDED, [quality], "weight", 2, PROMPT, 0)
    mild_name = max(EMBEDDED.profile, key=lambda layer: layer.weight["sqnr"][2]).name
    mild, = isolated.see_each(EMBEDDED, [isolated.Selection("layer", mild_name)], "weight", 2, PROMPT, 0)
    assert worst.metrics["sqnr_db"] < mild.metrics["sqnr_db"]
    assert worst.profiled["sqnr"] < mild.profiled["sqnr"]


def test_what_a_profile_says_of_the_groups_is_measured_and_says_when_it_cannot():
    text = contrast.separation(EMBEDDED, "weight", 2)
    assert "SSIM loss: content" in text and "SQNR of the UNet output: content" in text and "% of pairs" in text
    sdxl = contrast.separation(MODELS["sdxl-turbo"], "weight", 2)
    assert "SSIM loss: not measured for quality layers" in sdxl  # MixDQ published SQNR only for those


def test_the_teaching_text_is_the_committed_bench():
    newest = max((ROOT / "bench" / "results").glob("content_quality-*.json"))
    data = json.loads(newest.read_text())
    summary, details = teaching()
    text = summary + details
    assert "<!--" not in text and newest.name in summary and newest.name in details
    for bits in data["widths"]:
        assert data["verdicts"][str(bits)]["text"] in text
    assert data["conclusion"] in summary


@pytest.mark.parametrize("sides, bits, message", [
    ([isolated.Selection("layer", "conv_inn")], 2, "did you mean"),
    ([isolated.Selection("group", "content")], 7, "not 7; choose one of those"),
    ([isolated.Selection("role", "attn9")], 2, "has no role 'attn9'"),
])
def test_bad_sides_are_messages(sides, bits, message):
    with pytest.raises(mixdq.MixDQError, match=message):
        isolated.see_each(EMBEDDED, [isolated.Selection("group", "quality"), *sides], "weight", bits, PROMPT, 0)


def test_a_full_size_model_without_weights_says_so_before_any_image():
    sdxl = MODELS["sdxl-turbo"]
    assert "--model sdxl-turbo" in isolated.waits(sdxl, 3, "both sides")
    assert isolated.waits(EMBEDDED, 3, "both sides") is None  # the embedded model shows at once
