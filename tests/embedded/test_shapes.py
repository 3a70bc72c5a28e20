"""The embedded model's world: data set, tokenizer, resumable training, metrics."""

import numpy as np
import pytest
import torch

from mixdq.core.metrics import frechet_distance, psnr_db, ssim
from mixdq.embedded import dataset
from mixdq.embedded.tokenizer import build_tokenizer, caption_words
from mixdq.embedded.training import train


def test_data_set_has_enough_attributes_and_captions():
    scenes = dataset.all_scenes()
    assert len(dataset.ATTRIBUTES) >= 4
    assert len({s.caption for s in scenes}) == len(scenes) >= 500
    held = dataset.split(held_out=True)
    assert 0.07 < len(held) / len(scenes) < 0.13
    assert not {s.caption for s in held} & {s.caption for s in dataset.split(held_out=False)}
    s = scenes[123]
    assert dataset.parse_caption(s.caption) == s
    assert s.caption == f"a {s.size} {s.colour} {s.shape} {s.position}, {s.background} background"


def test_sampling_is_deterministic_by_seed():
    a, sa = dataset.sample(8, seed=3)
    b, sb = dataset.sample(8, seed=3)
    c, _ = dataset.sample(8, seed=4)
    assert torch.equal(a, b) and sa == sb and not torch.equal(a, c)
    assert a.shape == (8, 3, 64, 64) and a.min() >= -1 and a.max() <= 1


@pytest.mark.parametrize("shape", dataset.SHAPES)
def test_rendered_image_shows_what_the_caption_says(shape):
    scene = dataset.Scene(shape, "red", "blue", "on the left", "large")
    img = dataset.render(scene, np.random.default_rng(0))
    red, blue = np.array(dataset.COLOURS["red"]), np.array(dataset.COLOURS["blue"])
    is_red = np.abs(img - red).sum(-1) < 0.05
    assert np.allclose(img[2, 60], blue, atol=1e-6) and np.allclose(img[60, 2], blue, atol=1e-6)
    cols = np.nonzero(is_red.any(0))[0]
    assert 5 < is_red.sum() and cols.mean() < 26  # left half
    small = dataset.render(dataset.Scene(shape, "red", "blue", "on the left", "small"), np.random.default_rng(0))
    assert (np.abs(small - red).sum(-1) < 0.05).sum() < is_red.sum() / 2


def test_tokenizer_gives_each_word_one_token_between_bos_and_eos():
    tok = build_tokenizer()
    for word in caption_words():
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    ids = tok("a small red circle on the left, blue background").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) == 12
    assert tok.convert_ids_to_tokens(ids[1:4]) == ["a</w>", "small</w>", "red</w>"]


def _tiny_run(tmp_path, steps, stop_at=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)

    def loss(step):
        if stop_at is not None and step == stop_at:
            raise KeyboardInterrupt  # the process dies here, after the last checkpoint
        g = torch.Generator().manual_seed(step)
        x = torch.randn(16, 4, generator=g)
        return (model(x) - x.sum(1, keepdim=True) + 0.01 * torch.randn(16, 1)).square().mean()

    return train("tiny", model, loss, steps, tmp_path / "tiny.pt", every=5, log=lambda _: None)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    straight = _tiny_run(tmp_path / "a", 40)
    with pytest.raises(KeyboardInterrupt):
        _tiny_run(tmp_path / "b", 40, stop_at=23)
    resumed = _tiny_run(tmp_path / "b", 40)
    assert torch.equal(straight.weight, resumed.weight) and torch.equal(straight.bias, resumed.bias)
    assert not list((tmp_path / "b").glob(".*tmp"))


def test_image_metrics():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(4, dtype=torch.float64))  # float64: tiny damages resolve
    noisy = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert (ssim(x, noisy) < 0.96).all()
    assert psnr_db(x, x) == float("inf") and 18 < psnr_db(x, noisy) < 22
    # flat images: only the luminance term is left, (2ab + c1) / (a^2 + b^2 + c1)
    flat = ssim(torch.full((1, 3, 16, 16), 0.5), torch.full((1, 3, 16, 16), 0.6))
    assert flat.item() == pytest.approx((0.6 + 1e-4) / (0.61 + 1e-4), rel=1e-6)


def test_frechet_distance_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20_000, 3, generator=g)
    assert abs(frechet_distance(a, a)) < 1e-6
    b = torch.randn(20_000, 3, generator=g) * 2 + 1  # N(1, 4I) vs N(0, I): 3*1 + 3*(1 + 4 - 2*2) = 6
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)
