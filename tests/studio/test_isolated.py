"""Layers quantized alone, seen as images (the sensitivity view's "See it"): the studio's image is
the engine's, selections name the layers they say, and bad input is a message."""

import numpy as np
import pytest

import mixdq
from app import images, isolated
from app.registry import default_models

MODELS = default_models()
EMBEDDED = MODELS["embedded"]
PROMPT = images.compose("large", "red", "circle", "on the left", "white")


def test_one_layer_alone_is_bit_identical_to_the_engine_with_only_that_layer_quantized():
    # the layer whose 2-bit weights hurt the sweep's images most (many barely show at all)
    layer = min(EMBEDDED.profile, key=lambda info: info.weight["ssim"].get(2, 1.0)).name
    seen = isolated.see(EMBEDDED, isolated.Selection("layer", layer), "weight", 2, PROMPT, 5)
    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    mixdq.quantize_(pipe, mixdq.Allocation({layer: 2}))
    engine = mixdq.generate_images(pipe, [PROMPT], first_seed=5, **mixdq.generation_defaults().as_kwargs())
    assert np.array_equal(seen.quantized, images.to_uint8(engine, 4)[0])  # 64 px shown at 256
    assert seen.fp.shape == seen.quantized.shape == seen.difference.shape == (256, 256, 3)
    assert seen.layers == 1 and seen.metrics["ssim"] < 1 and not np.array_equal(seen.fp, seen.quantized)
    assert set(seen.profiled) == {"ssim", "sqnr"}  # the sweep's own scores, shown beside
    text = isolated.caption(EMBEDDED, isolated.Selection("layer", layer), "weight", 2, seen)
    assert "PSNR" in text and "profiled" in text


def test_selections_name_the_layers_they_say():
    profile = EMBEDDED.profile
    content = isolated.Selection("group", "content").layers(EMBEDDED)
    assert content == [layer.name for layer in profile if layer.group == "content"]
    to_k = isolated.Selection("role", "attn2.to_k").layers(EMBEDDED)
    assert to_k and all(name.endswith("attn2.to_k") for name in to_k)
    block = isolated.Selection("block", "down_blocks.1").layers(EMBEDDED)
    assert block and all(name.startswith("down_blocks.1.") for name in block)
    stem = isolated.Selection("block", "stem").layers(EMBEDDED)
    assert "conv_in" in stem and not any(name.startswith(("down_blocks", "up_blocks", "mid_block")) for name in stem)
    every_block = [n for b in isolated.choices(EMBEDDED, "block") for n in isolated.Selection("block", b).layers(EMBEDDED)]
    assert sorted(every_block) == sorted(profile.names)  # the blocks partition the model
    alloc = isolated.allocation(EMBEDDED, isolated.Selection("role", "attn2.to_k"), "activation", 8)
    assert alloc.acts == dict.fromkeys(to_k, 8) and not alloc.weights


def test_a_group_is_seen_but_never_said_to_be_profiled():
    seen = isolated.see(EMBEDDED, isolated.Selection("group", "quality"), "weight", 3, PROMPT, 0)
    assert seen.profiled is None and seen.layers == len(isolated.Selection("group", "quality").layers(EMBEDDED))
    assert "never profiled as a whole" in isolated.caption(EMBEDDED, isolated.Selection("group", "quality"),
                                                           "weight", 3, seen)


@pytest.mark.parametrize("selection, kind, bits, prompt, message", [
    (isolated.Selection("layer", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_kk"), "weight", 4,
     PROMPT, "did you mean"),
    (isolated.Selection("layer", "conv_in"), "weight", 7, PROMPT, "measured weights at 2, 3, 4, 5, 6, 8 bits"),
    (isolated.Selection("role", "attn3"), "weight", 4, PROMPT, "has no role 'attn3'; choose one of"),
    (isolated.Selection("layer", "conv_in"), "weight", 4, "a purple dragon", "never saw 'dragon'"),
])
def test_bad_input_is_a_message_that_says_what_to_do(selection, kind, bits, prompt, message):
    with pytest.raises(mixdq.MixDQError, match=message):
        isolated.see(EMBEDDED, selection, kind, bits, prompt, 0)


def test_a_full_size_model_without_weights_says_how_to_get_images():
    sdxl = MODELS["sdxl-turbo"]
    assert "python app.py --model sdxl-turbo" in sdxl.images_refused()
    with pytest.raises(mixdq.MixDQError, match="sdxl-turbo"):
        isolated.see(sdxl, isolated.Selection("role", "attn2.to_k"), "weight", 4, "a cat", 0)


def test_the_studio_says_how_long_images_of_a_model_take_here():
    """A full-size model on a CPU waits for the button, which says how long, from the last images."""
    from app.pipelines import ModelPipeline

    isolated.see(EMBEDDED, isolated.Selection("role", "conv1"), "weight", 4, PROMPT, 3)
    assert EMBEDDED.pipeline.seconds_per_image > 0 and not EMBEDDED.pipeline.on_gpu()  # this machine: a CPU
    assert EMBEDDED.pipeline.expected_seconds(2).startswith("about ")
    assert "a minute or more" in ModelPipeline("stabilityai/sd-turbo").expected_seconds(2)  # none made yet
