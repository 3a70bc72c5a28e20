"""Full-size SD-Turbo and SDXL-Turbo built offline from the shipped configs (mixdq.models.random_weights):
parameter counts as published, CLIP's tokenizer as open_clip's, and a pipeline folder that loads
like a download. No full-size weights are ever in memory here: counts are taken on the meta
device, and the folder test shrinks every model through `config_overrides`."""

import inspect
import json

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTokenizer

import mixdq
from mixdq.models.architectures import ARCHITECTURES
from mixdq.models.random_weights import (
    ARCHITECTURES_DIR,
    CLIP_TOKENIZER_DIR,
    component_config,
    component_params,
    components,
    random_pipeline,
    random_pipeline_folder,
)

# published parameter counts (assets/architectures/README.md names where each was checked)
PUBLISHED = {
    "sd-turbo": {"unet": 865_910_724, "text_encoder": 340_387_840, "vae": 83_653_863},
    "sdxl-turbo": {"unet": 2_567_463_684, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840,
                   "vae": 83_653_863},
}

# ids of open_clip 3.3.0's SimpleTokenizer for these prompts
# (`python assets/architectures/clip-tokenizer/make.py WHEEL --check` compares and prints them)
OPEN_CLIP_IDS = {
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "A cinematic shot of a baby racoon wearing an intricate italian priest robe.": [
        49406, 320, 25602, 2000, 539, 320, 1794, 1773, 7100, 3309, 550, 29616, 5175, 14222, 23116, 269, 49407],
    "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k": [
        49406, 18376, 530, 320, 10865, 267, 3153, 3140, 13901, 267, 48028, 5389, 267, 12609, 267, 279, 330, 49407],
}

_UNET = dict(block_out_channels=[32, 64], attention_head_dim=[2, 4], layers_per_block=1, norm_num_groups=8,
             sample_size=8)
_TEXT = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, projection_dim=32)
_VAE = dict(block_out_channels=[8, 16], down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2, layers_per_block=1, norm_num_groups=8, sample_size=16)
# the same component classes, blocks and tokenizers, a few hundred thousand weights each
TINY = {
    "sd-turbo": dict(
        unet=dict(_UNET, down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                  up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=32),
        text_encoder=_TEXT, vae=_VAE),
    "sdxl-turbo": dict(
        unet=dict(_UNET, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                  up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], transformer_layers_per_block=[1, 1],
                  cross_attention_dim=64, addition_time_embed_dim=8,
                  projection_class_embeddings_input_dim=32 + 6 * 8),  # pooled text + 6 time ids
        text_encoder=_TEXT, text_encoder_2=_TEXT, vae=_VAE),
}
PADS = {"sd-turbo": {"tokenizer": "!"}, "sdxl-turbo": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}}


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameter_counts_on_meta_equal_the_published_ones(name):
    assert component_params(name) == PUBLISHED[name]


@pytest.mark.parametrize("name", PUBLISHED)
def test_shipped_configs_load_with_their_classes(name):
    import diffusers

    for component, cls_name in components(name).items():
        config = component_config(name, component)
        if cls_name.startswith("CLIPTextModel"):
            assert CLIPTextConfig(**config).vocab_size == 49408
        elif cls_name == "CLIPTokenizer":
            assert config["model_max_length"] == 77
        else:
            assert config["_class_name"] == cls_name
        if cls_name in ("UNet2DConditionModel", "AutoencoderKL"):  # from_config would drop (and log) others
            taken = inspect.signature(getattr(diffusers, cls_name).__init__).parameters
            assert set(config) - {"_class_name"} <= set(taken)
    scheduler = getattr(diffusers, components(name)["scheduler"]).from_config(component_config(name, "scheduler"))
    assert scheduler.config.timestep_spacing == "trailing"
    vae = component_config(name, "vae")
    assert vae["scaling_factor"] == {"sd-turbo": 0.18215, "sdxl-turbo": 0.13025}[name]
    index = json.loads((ARCHITECTURES_DIR / name / "model_index.json").read_text())
    assert index["_class_name"] == ARCHITECTURES[name].pipeline


def test_clip_tokenizer_gives_open_clips_ids():
    tokenizer = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR)
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    for prompt, ids in OPEN_CLIP_IDS.items():
        assert tokenizer(prompt).input_ids == ids


@pytest.mark.parametrize("name", TINY)
def test_random_pipeline_folder_loads_like_a_download(name, tmp_path):
    folder = random_pipeline_folder(name, tmp_path / name, config_overrides=TINY[name], seed=3)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary sibling left behind
    assert not list(folder.rglob("*.bin"))
    with pytest.raises(FileExistsError):
        random_pipeline_folder(name, folder)

    pipe = mixdq.load_pipeline(str(folder))
    assert type(pipe).__name__ == ARCHITECTURES[name].pipeline
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    for tokenizer, pad in PADS[name].items():
        tok = getattr(pipe, tokenizer)
        assert tok.pad_token == pad and tok.model_max_length == 77
        assert tok("a photo of a cat").input_ids == OPEN_CLIP_IDS["a photo of a cat"]
    built = random_pipeline(name, config_overrides=TINY[name], seed=3)
    for component in PUBLISHED[name]:
        saved, fresh = getattr(pipe, component).state_dict(), getattr(built, component).state_dict()
        assert saved.keys() == fresh.keys()
        assert all(torch.equal(saved[k], fresh[k]) for k in saved), component  # seeded, and saved whole

    pipe.set_progress_bar_config(disable=True)
    latents = pipe("a photo of a cat", num_inference_steps=1, guidance_scale=0.0, output_type="latent",
                   generator=torch.Generator().manual_seed(0)).images
    assert latents.shape == (1, 4, 8, 8) and torch.isfinite(latents).all()


def test_built_in_the_asked_dtype_and_leaves_torch_as_it_was():
    rng = torch.get_rng_state()
    pipe = random_pipeline("sdxl-turbo", dtype=torch.bfloat16, config_overrides=TINY["sdxl-turbo"])
    for component in PUBLISHED["sdxl-turbo"]:
        assert {p.dtype for p in getattr(pipe, component).parameters()} == {torch.bfloat16}, component
    assert torch.get_default_dtype() == torch.float32
    assert torch.equal(torch.get_rng_state(), rng)


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match="sd-turbo, sdxl-turbo"):
        random_pipeline("sd-1.5")
