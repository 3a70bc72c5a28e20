"""A deployed pipeline against its simulated self: images, the BOS token, memory reports, and
bit-for-bit parity on the dequant kernels (SD and SDXL)."""

import pytest
import torch

import mixdq
from mixdq.deploy import (
    deploy,
    deployed_layers,
    load_deployed,
    packed_nbytes,
    read_manifest,
    save_deployed,
)
from mixdq.embedded import dataset
from mixdq.quant.layers import quant_layers

CAPTIONS = dataset.evaluation_captions(4)
CALIBRATION = mixdq.CalibrationConfig(prompts=dataset.calibration_captions(8), num_inference_steps=4, batch_size=8)


def test_deployed_images_match_the_simulated_model(simulated_and_deployed):
    pipe, allocation, simulated = simulated_and_deployed
    layers = deployed_layers(pipe)
    assert sum(m.int8 for m in layers.values()) > 0 and any(m.weight_bits == 2 for m in layers.values())
    assert not quant_layers(pipe)  # no simulated layer is left
    real = mixdq.generate_images(pipe, CAPTIONS, **mixdq.generation_defaults().as_kwargs())
    # bound: 40 dB. Differences come only from float rounding (int32 sums, rescaling), which can
    # move an activation across a rounding boundary; 4 sampling steps carry that on.
    assert mixdq.core.metrics.psnr_db((simulated + 1) / 2, (real + 1) / 2) > 40


def test_bos_token_stays_floating_point(simulated_and_deployed):
    pipe, _, _ = simulated_and_deployed
    to_k = [m for n, m in deployed_layers(pipe).items() if n.endswith("attn2.to_k")][0]
    assert to_k.bos_output is not None
    text = pipe.encode_prompt(prompt="a red circle", device="cpu", num_images_per_prompt=1,
                              do_classifier_free_guidance=False)[0]
    with torch.no_grad():
        out = to_k(text)
    assert torch.equal(out[0, 0], to_k.bos_output)


def test_report_gives_memory_both_ways(simulated_and_deployed):
    from mixdq.deploy import report

    pipe, allocation, _ = simulated_and_deployed
    inventory = mixdq.load_inventory(None)
    r = report(pipe, inventory, allocation, lambda: pipe(CAPTIONS[0], **mixdq.generation_defaults().as_kwargs()), repeats=1)
    # simulated: fp16 scales; held: fp32 scales, plus a uint8 zero-point but for 8-bit (int8) codes
    extra = sum(layer.out_channels * (2 + (0 if allocation.weight_bits(layer.name) == 8 else 1))
                for layer in inventory if allocation.weight_bits(layer.name) is not None)
    # weights held for a kernel instead of their codes (int8 pre-packed; codes in oneDNN's blocked
    # order, with its padding and an int32 per channel) count what they hold beyond the codes
    layers = [m for m in deployed_layers(pipe).values() if m.extra_storage_bytes()]
    extra += sum(m.extra_storage_bytes() - (m.numel if m.weight_bits == 8 else packed_nbytes(m.numel, m.weight_bits))
                 for m in layers)
    assert r.measured_weight_bytes - r.simulated_weight_bytes == extra
    fp = sum(allocation.weight_bits(layer.name) is None for layer in inventory)
    assert sum(r.kernels.values()) == len(inventory) and r.kernels["float"] == fp
    assert r.unet_bytes > r.measured_weight_bytes and r.latency_s > 0
    if r.peak_rss_bytes is not None:
        assert r.peak_rss_bytes >= r.resident_before_bytes > r.unet_bytes


@pytest.mark.parametrize("self_attention_bits", [None, 8])
@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_dequant_kernels_give_the_simulated_model_bit_for_bit(family, self_attention_bits, tmp_path):
    """Packed codes, BOS projection, activation grid, self-attention's query/key grid: conversion
    loses nothing (SD and SDXL)."""
    from support import CALIBRATION
    from tiny_models import PROMPTS, tiny_sd, tiny_sdxl

    pipe = {"sd": tiny_sd, "sdxl": tiny_sdxl}[family]()
    pipe.set_progress_bar_config(disable=True)
    names = mixdq.build_inventory(pipe.unet).names
    bits = [8, 4, 3, 2, 6, 5, None]
    allocation = mixdq.Allocation({n: bits[i % len(bits)] for i, n in enumerate(names)}, {n: 8 for n in names})
    mixdq.quantize_(pipe, allocation, config=mixdq.QuantConfig(self_attention_bits=self_attention_bits),
                    calibration=CALIBRATION)
    kw = dict(num_inference_steps=2, guidance_scale=0.0, height=32, width=32)
    simulated = mixdq.generate_images(pipe, PROMPTS, **kw)
    deploy(pipe, kernel="dequant")
    on_grid = {n for n, layer in deployed_layers(pipe).items() if layer.spec.output_bits == 8}
    assert bool(on_grid) == (self_attention_bits == 8)
    assert all(n.endswith(("attn1.to_q", "attn1.to_k")) for n in on_grid)
    assert torch.equal(mixdq.generate_images(pipe, PROMPTS, **kw), simulated)
    save_deployed(pipe, tmp_path / "m")
    # v2 only where a v1 reader would drop the query/key grid without a word
    assert read_manifest(tmp_path / "m")["version"] == (2 if self_attention_bits else 1)
    pipe.unet = load_deployed(tmp_path / "m")
    assert torch.equal(mixdq.generate_images(pipe, PROMPTS, **kw), simulated)
