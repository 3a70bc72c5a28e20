"""The engine end to end on tiny SD and SDXL pipelines (random weights, real diffusers classes).

Bounds, measured on these pipelines (2 steps, 4 prompts, final latents vs float):
W8 weights-only >= 40 dB (measured 48), uniform W8A8 >= 15 dB (measured 32 SD / 18 SDXL,
where conv_in's wide input range dominates, as in MixDQ, which keeps conv_in in FP16).
"""

import pytest
import torch

import mixdq
import mixdq.quant.layers
from mixdq import Allocation
from mixdq.core.metrics import sqnr_db
from mixdq.quant.layers import quant_layers

from support import CALIBRATION, PROMPTS, generate


def _uniform(pipe, w, a):
    return Allocation.uniform(mixdq.build_inventory(pipe.unet).names, w, a)


def test_w8a8_close_to_float_and_error_grows_as_bits_shrink(pipe):
    fp = generate(pipe)
    mixdq.quantize_(pipe, _uniform(pipe, 8, 8), calibration=CALIBRATION)
    assert sqnr_db(fp, generate(pipe)) >= 15.0
    weight_only = {}
    for bits in (8, 4, 2):
        mixdq.apply_allocation(pipe, _uniform(pipe, bits, None))
        weight_only[bits] = sqnr_db(fp, generate(pipe))
    assert weight_only[8] >= 40.0
    assert weight_only[8] > weight_only[4] + 10 > weight_only[2] + 20
    act_only = {}
    for bits in (8, 6, 4):
        mixdq.apply_allocation(pipe, _uniform(pipe, None, bits))
        act_only[bits] = sqnr_db(fp, generate(pipe))
    assert act_only[8] > act_only[6] + 3 > act_only[4] + 4


def test_restore_is_bit_identical_and_gives_back_the_same_modules(pipe):
    keys = list(pipe.unet.state_dict())
    originals = {n: m for n, m in pipe.unet.named_modules() if type(m) in (torch.nn.Linear, torch.nn.Conv2d)}
    fp = generate(pipe)
    mixdq.quantize_(pipe, _uniform(pipe, 4, 8), calibration=CALIBRATION)
    assert list(pipe.unet.state_dict()) == keys  # quantization adds no parameters or buffers
    assert not torch.equal(generate(pipe), fp)
    mixdq.restore(pipe)
    assert torch.equal(generate(pipe), fp)
    assert all(pipe.unet.get_submodule(n) is m for n, m in originals.items())
    assert not quant_layers(pipe)


def test_prepared_but_unallocated_model_is_bit_identical(sd_pipe):
    fp = generate(sd_pipe)
    mixdq.prepare(sd_pipe)
    assert torch.equal(generate(sd_pipe), fp)


@pytest.mark.parametrize("budget, extra_calls", [(0, 6), (10**9, 1)])
def test_flipping_one_layer_requantizes_only_that_layer(sd_pipe, monkeypatch, budget, extra_calls):
    """Without a cache budget each flip quantizes that one layer's weight again (one copy held);
    with one, its other width stays cached and is computed once."""
    monkeypatch.setattr(mixdq.quant.weight_cache.POOL, "budget", budget)
    calls = []
    real = mixdq.quant.layers.fake_quantize_weight
    monkeypatch.setattr(mixdq.quant.layers, "fake_quantize_weight", lambda *a: calls.append(1) or real(*a))
    mixdq.quantize_(sd_pipe, _uniform(sd_pipe, 8, 8), calibration=CALIBRATION)
    base = generate(sd_pipe)
    n_layers = len(quant_layers(sd_pipe))
    assert len(calls) == n_layers
    name = "up_blocks.0.attentions.1.transformer_blocks.0.ff.net.2"
    for _ in range(3):
        mixdq.set_layer_bits(sd_pipe, name, weight=2)
        flipped = generate(sd_pipe)
        mixdq.set_layer_bits(sd_pipe, name, weight=8)
        assert torch.equal(generate(sd_pipe), base)
    assert not torch.equal(flipped, base)
    assert len(calls) == n_layers + extra_calls  # only that layer's weights, never the others'
    assert mixdq.current_allocation(sd_pipe).weight_bits(name) == 8
    assert mixdq.current_allocation(sd_pipe).act_bits(name) == 8  # `...` left activations alone


def _unet_inputs(unet, bos_scale, seed):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    text[:, 0] = torch.randn(unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(99))
    text[:, 0, :4] *= bos_scale  # CLIP's BOS token: the same for every prompt, with huge outliers
    kwargs = {}
    if unet.config.addition_embed_type == "text_time":
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(2, 32, generator=g),
                                       "time_ids": torch.tensor([[32.0, 32, 0, 0, 32, 32]] * 2)}
    return (torch.randn(2, 4, 16, 16, generator=g), torch.tensor([500, 500]), text), kwargs


def test_bos_aware_quantization_tames_the_bos_outlier(pipe):
    unet = pipe.unet
    mixdq.prepare(unet)
    with mixdq.calibrating(unet), torch.no_grad():
        for seed in range(3):
            args, kwargs = _unet_inputs(unet, 60.0, seed)
            unet(*args, **kwargs)
    args, kwargs = _unet_inputs(unet, 60.0, seed=7)
    with torch.no_grad():
        mixdq.apply_allocation(unet, Allocation())
        ref = unet(*args, **kwargs).sample
        kv = [n for n in quant_layers(unet) if ".attn2.to_k" in n or ".attn2.to_v" in n]
        mixdq.apply_allocation(unet, Allocation({n: 8 for n in kv}, {n: 8 for n in kv}))
        on = sqnr_db(ref, unet(*args, **kwargs).sample)
        cached = quant_layers(unet)[kv[0]].quantized_weight(8)
        mixdq.set_bos_aware(unet, False)  # a switch, not a recalibration
        assert quant_layers(unet)[kv[0]].quantized_weight(8) is cached  # nor a re-quantization
        off = sqnr_db(ref, unet(*args, **kwargs).sample)
        mixdq.set_bos_aware(unet, True)
        again = sqnr_db(ref, unet(*args, **kwargs).sample)
    assert on > off + 15, (on, off)
    assert again == on
    layer = quant_layers(unet)[kv[0]]
    assert layer.observer.range[1] > 10 * layer.observer_no_bos.range[1]  # BOS left out


def test_bos_embedding_is_the_same_for_every_prompt(sd_pipe):
    """The premise of BOS-aware quantization: a causal text encoder's first token ignores the prompt."""
    emb, _ = sd_pipe.encode_prompt(PROMPTS, "cpu", 1, False)
    assert torch.equal(emb[0, 0], emb[1, 0]) and torch.equal(emb[0, 0], emb[3, 0])
    assert not torch.equal(emb[0, 5], emb[1, 5])


def test_config_change_keeps_calibration_and_changes_weights(sd_pipe):
    mixdq.quantize_(sd_pipe, _uniform(sd_pipe, 4, 8), calibration=CALIBRATION)
    sym = generate(sd_pipe)
    mixdq.quantize_(sd_pipe, _uniform(sd_pipe, 4, 8),
                    config=mixdq.QuantConfig(weight=mixdq.WeightQuantConfig(symmetric=False)))
    assert mixdq.is_calibrated(sd_pipe)
    assert not torch.equal(generate(sd_pipe), sym)


def test_percentile_calibration_gives_narrower_ranges(sd_pipe):
    def ranges(config):
        mixdq.prepare(sd_pipe, config)
        mixdq.calibrate(sd_pipe, CALIBRATION, progress=False)
        return {n: layer.observer.range for n, layer in quant_layers(sd_pipe).items()}

    mm = ranges(mixdq.QuantConfig())
    pc = ranges(mixdq.QuantConfig(act=mixdq.ActQuantConfig(observer="percentile", percentile=99.0)))
    assert all(pc[n][1] <= mm[n][1] + 1e-6 and pc[n][0] >= mm[n][0] - 1e-6 for n in mm)
    assert sum(pc[n][1] < mm[n][1] for n in mm) > len(mm) / 2


def test_unknown_layer_and_bad_bits_are_clear_errors_that_change_nothing(sd_pipe):
    mixdq.quantize_(sd_pipe, _uniform(sd_pipe, 8, None))
    before = mixdq.current_allocation(sd_pipe)
    with pytest.raises(mixdq.UnknownLayerError, match=r"'conv_inn' \(did you mean 'conv_in'\?\)"):
        mixdq.apply_allocation(sd_pipe, Allocation({"conv_in": 4, "conv_inn": 4}))
    with pytest.raises(mixdq.UnsupportedBitsError, match="choose one of 2, 3, 4, 5, 6, 8"):
        Allocation({"conv_in": 7})
    with pytest.raises(mixdq.UnsupportedBitsError, match="activation bit-width 2 .* 4, 6, 8"):
        mixdq.set_layer_bits(sd_pipe, "conv_in", act=2)
    with pytest.raises(mixdq.NotCalibratedError, match="calibrat"):
        mixdq.apply_allocation(sd_pipe, _uniform(sd_pipe, 8, 8))
    with pytest.raises(mixdq.UnknownLayerError):
        mixdq.set_layer_bits(sd_pipe, "conv_middle", weight=4)
    assert mixdq.current_allocation(sd_pipe) == before


def test_quantizing_activations_without_calibration_says_how(sd_pipe):
    with pytest.raises(mixdq.NotCalibratedError, match="calibration=mixdq.CalibrationConfig"):
        mixdq.quantize_(sd_pipe, _uniform(sd_pipe, 8, 8))


def test_unprepared_model_is_a_clear_error(sd_pipe):
    with pytest.raises(mixdq.MixDQError, match="mixdq.prepare"):
        mixdq.apply_allocation(sd_pipe, Allocation())


def test_self_attention_bits_put_only_self_attention_query_and_key_on_a_symmetric_grid(pipe):
    fp = generate(pipe)
    config = mixdq.QuantConfig(self_attention_bits=8)
    assert mixdq.QuantConfig.from_json(config.to_json()) == config
    with pytest.raises(mixdq.NotCalibratedError, match="self-attention"):
        mixdq.quantize_(pipe, Allocation(), config=config)  # no layer's bits, but ranges needed
    mixdq.quantize_(pipe, Allocation(), config=config, calibration=CALIBRATION)
    layers = quant_layers(pipe)
    qk = {n for n, layer in layers.items() if layer.output_bits == 8}
    assert qk and all(n.endswith(("attn1.to_q", "attn1.to_k")) for n in qk)
    assert len(qk) == 2 * sum(n.endswith("attn1.to_v") for n in layers)  # every self-attention, nothing else
    layer = layers[min(qk)]
    x = torch.randn(2, 16, layer.in_features)
    y = layer(x)
    codes = y / layer.output_qparams().scale
    assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.abs().max() <= 128  # signed 8-bit codes
    assert torch.equal(layer(torch.zeros_like(x)), layer.float_module(torch.zeros_like(x)).div(
        layer.output_qparams().scale).round().mul(layer.output_qparams().scale))  # zero-point 0
    quantized = generate(pipe)
    assert not torch.equal(quantized, fp) and sqnr_db(fp, quantized) > 30
    mixdq.prepare(pipe, mixdq.QuantConfig())  # off again: float, with the calibration kept
    assert torch.equal(generate(pipe), fp)
    with pytest.raises(mixdq.ConfigError, match="self_attention_bits must be one of"):
        mixdq.QuantConfig(self_attention_bits=3)
