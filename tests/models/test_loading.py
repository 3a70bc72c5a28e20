import pytest
import torch

import mixdq

from support import generate
from tiny_models import tiny_sd, tiny_sdxl


@pytest.mark.parametrize("build", [tiny_sd, tiny_sdxl])
def test_local_folder_loads_the_same_pipeline(build, tmp_path):
    original = build()
    original.save_pretrained(tmp_path)
    loaded = mixdq.load_pipeline(str(tmp_path))
    assert type(loaded) is type(original)
    assert torch.equal(generate(loaded), generate(original))
    assert mixdq.load_unet_config(str(tmp_path))["cross_attention_dim"] == original.unet.config.cross_attention_dim


def test_uncached_hub_id_offline_says_how_to_get_it():
    with pytest.raises(mixdq.ModelNotFoundError, match="hf download nobody/no-such-model"):
        mixdq.load_pipeline("nobody/no-such-model")
    with pytest.raises(mixdq.ModelNotFoundError, match="local Hugging Face cache"):
        mixdq.load_unet_config("nobody/no-such-model")


def test_architecture_name_loads_its_hub_id_from_the_cache():
    with pytest.raises(mixdq.ModelNotFoundError, match="hf download stabilityai/sdxl-turbo"):
        mixdq.load_pipeline("sdxl-turbo")


def test_missing_folder_and_file_are_clear(tmp_path):
    with pytest.raises(mixdq.ModelNotFoundError, match="no folder './nowhere'.*sdxl-turbo, sd-turbo"):
        mixdq.load_pipeline("./nowhere")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(mixdq.ModelNotFoundError, match="is a file"):
        mixdq.load_unet_config(str(tmp_path / "weights.bin"))


def test_folder_without_a_unet_is_unsupported(tmp_path):
    with pytest.raises(mixdq.UnsupportedModelError, match="unet/config.json"):
        mixdq.load_unet_config(str(tmp_path))


def test_pickled_weights_are_never_loaded(tmp_path):
    tiny_sd().save_pretrained(tmp_path, safe_serialization=False)
    assert list(tmp_path.glob("unet/*.bin")) and not list(tmp_path.glob("unet/*.safetensors"))
    with pytest.raises(mixdq.UnsupportedModelError, match="pickled weights.*safetensors only"):
        mixdq.load_pipeline(str(tmp_path))


def test_unsupported_pipeline_class(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=8, block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path)
    with pytest.raises(mixdq.UnsupportedModelError, match="DDPMPipeline.*StableDiffusionPipeline"):
        mixdq.load_pipeline(str(tmp_path))


def test_no_model_named_means_the_embedded_one_and_its_absence_is_explained(tmp_path, monkeypatch):
    assert mixdq.load_unet_config()["_class_name"] == "UNet2DConditionModel"
    monkeypatch.setattr(mixdq.models.loading, "EMBEDDED_DIR", tmp_path / "embedded")
    with pytest.raises(mixdq.ModelNotFoundError, match="embedded default model.*Name a model"):
        mixdq.load_pipeline()
