"""The embedded default model that ships in assets/: a real diffusers pipeline, offline."""

import pytest
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTextModel, CLIPTokenizer

import mixdq
from mixdq.core.metrics import sqnr_db
from mixdq.embedded import dataset
from mixdq.embedded.classifier import AttributeClassifier, alignment, labels
from mixdq.embedded.paths import EMBEDDED_CLASSIFIER_DIR, EMBEDDED_DIR
from mixdq.models.generation import generate_images

CAPTIONS = dataset.evaluation_captions(8)


@pytest.fixture(scope="module")
def pipe():
    pipe = mixdq.load_pipeline()  # no model named: the embedded one
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def classifier():
    return AttributeClassifier.load(EMBEDDED_CLASSIFIER_DIR)


def _generate(pipe, captions=CAPTIONS):
    return generate_images(pipe, captions, **mixdq.generation_defaults().as_kwargs())


def test_folder_is_small_safetensors_and_loads_with_plain_diffusers():
    files = [p for p in EMBEDDED_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 30 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pkl", ".ckpt")]
    assert len([p for p in files if p.suffix == ".safetensors"]) == 3
    pipe = StableDiffusionPipeline.from_pretrained(EMBEDDED_DIR, local_files_only=True)
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.tokenizer, CLIPTokenizer)
    ids = pipe.tokenizer("a small red circle on the left, blue background").input_ids
    assert ids[0] == pipe.tokenizer.bos_token_id and ids[-1] == pipe.tokenizer.eos_token_id


def test_unet_has_sd_style_attention_and_feed_forward_layers(pipe):
    inv = mixdq.build_inventory(pipe)
    kv = [layer for layer in inv if layer.layer_type in ("attn2.to_k", "attn2.to_v")]
    assert kv and all(layer.act_elements == 16 * 64 for layer in kv)  # 16 text tokens of width 64
    assert mixdq.load_inventory().layers == inv.layers  # what the CLI and the studio show, from the folder alone
    types = {layer.layer_type for layer in inv}
    assert {"attn1.to_q", "attn2.to_k", "attn2.to_v", "ff.net.0.proj", "ff.net.2", "conv1"} <= types
    assert inv.group("content") and inv.group("quality")


def test_bos_embedding_is_prompt_independent(pipe):
    emb, _ = pipe.encode_prompt(CAPTIONS[:3], "cpu", 1, False)
    assert torch.equal(emb[0, 0], emb[1, 0]) and torch.equal(emb[0, 0], emb[2, 0])


def test_classifier_reads_data_set_images(classifier):
    x, scenes = dataset.sample(256, seed=777)
    pred, truth = classifier.predict(x), labels(scenes)
    for k in pred:
        assert (pred[k] == truth[k]).float().mean() >= 0.98, k


def test_generates_64px_images_that_show_the_prompt(pipe, classifier):
    images = _generate(pipe)
    assert images.shape == (len(CAPTIONS), 3, 64, 64)
    assert alignment(classifier, images, CAPTIONS).mean() >= 0.8  # bench: held-out 128 captions
    again = _generate(pipe)
    assert torch.equal(images, again)  # same seed, same image


def test_low_bit_quantization_visibly_hurts(pipe):
    fp = _generate(pipe)
    inv = mixdq.build_inventory(pipe.unet)
    mixdq.quantize_(pipe, mixdq.Allocation.uniform(inv.names, 2, None))
    w2 = _generate(pipe)
    mixdq.apply_allocation(pipe, mixdq.Allocation.uniform(inv.names, 8, None))
    w8 = _generate(pipe)
    mixdq.restore(pipe)
    assert sqnr_db(fp, w8) > sqnr_db(fp, w2) + 10
