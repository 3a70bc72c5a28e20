"""The public API: what `import mixdq` offers, and the traps it no longer sets."""

import subprocess
import sys
import warnings

import pytest
import torch

import mixdq
from mixdq import Allocation, PlanConfig, Planner, plan_mixdq

from support import ROOT

SDXL_PROFILE = ROOT / "assets" / "profiles" / "sdxl-turbo-mixdq.json"


def test_public_names_are_what_a_user_calls():
    names = set(mixdq.__all__)
    assert {"load_pipeline", "quantize_", "restore", "Planner", "PlanConfig", "sweep", "Profile",
            "generation_defaults", "known_words", "deploy", "InfeasibleBudgetError"} <= names
    for internal in ("unet_of", "text_tokens", "Knapsack", "Frontier", "solve_exact", "plan", "quant_layers"):
        assert internal not in names and not hasattr(mixdq, internal)
    assert all(hasattr(mixdq, n) for n in names)


def test_configs_and_allocations_are_hashable_cache_keys():
    a = PlanConfig(weight_locks={"conv_in": 8}, weight_candidates={"content": [2, 4, 8]})
    b = PlanConfig(weight_locks={"conv_in": 8}, weight_candidates={"content": (2, 4, 8)})
    cache = {a: "plan"}
    assert cache[b] == "plan" and hash(a) == hash(b)
    assert PlanConfig.from_json(a.to_json()) == a
    x = Allocation({"conv_in": 8, "conv_out": "fp"}, {"conv_in": 8})
    assert {x: 1}[Allocation({"model.conv_in": 8}, {"conv_in": 8})] == 1
    assert x.with_layer("conv_in", weight=4) != x and x.weight_bits("conv_in") == 8
    with pytest.raises(TypeError):
        x.weights["conv_in"] = 2  # immutable


def test_planner_prices_bytes_with_the_memory_formula_both_ways():
    profile = mixdq.Profile.load(SDXL_PROFILE)
    inventory = mixdq.load_inventory("sdxl-turbo")
    for symmetric in (True, False):
        weight = mixdq.WeightQuantConfig(symmetric=symmetric)
        p = Planner(profile, PlanConfig(weight=weight)).plan(budget_mb=1500)
        assert p.weight_mb <= 1500 + 1e-6
        assert p.weight_mb * 1e6 == pytest.approx(mixdq.memory_report(inventory, p.allocation, weight).weight_bytes)


def test_mixdq_mode_names_the_bad_argument():
    planner = Planner(mixdq.Profile.load(SDXL_PROFILE))
    with pytest.raises(mixdq.ConfigError, match="act_k .* got -1"):
        plan_mixdq(planner, avg_bits=5, act_avg_bits=8, act_k=-1)
    with pytest.raises(mixdq.ConfigError, match="^k .* got 0"):
        plan_mixdq(planner, avg_bits=5, k=0)


def test_generation_defaults_of_each_model():
    embedded = mixdq.generation_defaults()
    assert (embedded.num_inference_steps, embedded.height, len(embedded.prompts)) == (4, 64, 32)
    assert embedded.calibration().prompts == embedded.prompts
    for spec in ("sdxl-turbo", "stabilityai/sdxl-turbo"):
        d = mixdq.generation_defaults(spec)
        assert d.as_kwargs() == dict(num_inference_steps=1, guidance_scale=0.0, height=512, width=512)
    assert mixdq.generation_defaults("sd-1.5").num_inference_steps == 4  # LCM-LoRA
    assert "height" not in mixdq.generation_defaults("some/unknown-model").as_kwargs()


def test_known_words_and_prompt_checks():
    words = mixdq.known_words()
    assert {"circle", "red", "left", "background"} <= words and "zebra" not in words
    ok = mixdq.check_prompt(None, "a small red circle on the left, blue background")
    assert ok.message is None and not ok.truncated
    bad = mixdq.check_prompt(None, "a zebra " + "red " * 20)
    assert bad.unknown_words == ("zebra",) and bad.truncated and bad.max_tokens == 14
    assert "'zebra'" in bad.message and "cut off" in bad.message


def test_deployed_model_refuses_every_switching_verb():
    pipe = mixdq.load_pipeline()
    names = mixdq.build_inventory(pipe.unet).names
    allocation = Allocation.uniform(names, weight=4)
    mixdq.quantize_(pipe, allocation)
    mixdq.deploy.deploy(pipe)
    assert mixdq.current_allocation(pipe) == allocation  # reading is fine
    verbs = [
        lambda: mixdq.prepare(pipe), lambda: mixdq.restore(pipe),
        lambda: mixdq.apply_allocation(pipe, allocation), lambda: mixdq.quantize_(pipe, allocation),
        lambda: mixdq.set_layer_bits(pipe, names[0], weight=8), lambda: mixdq.set_bos_aware(pipe, False),
        lambda: mixdq.calibrate(pipe), lambda: mixdq.deploy.deploy(pipe),
    ]
    for verb in verbs:
        with pytest.raises(mixdq.DeployedModelError, match="load the floating-point model again"):
            verb()


def test_embedded_model_prints_no_third_party_noise_and_one_clear_prompt_warning():
    code = (
        "import warnings, mixdq\n"
        "pipe = mixdq.load_pipeline()\n"
        "pipe.set_progress_bar_config(disable=True)\n"
        "d = mixdq.generation_defaults()\n"
        "prompts = ['a zebra on the left ' + 'red ' * 20, 'a small red circle']\n"
        "mixdq.generate_images(pipe, prompts, **d.as_kwargs())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for noise in ("requires torchvision", "Token indices sequence length", "was truncated because CLIP",
                  "<|endoftext|>"):
        assert noise not in res.stderr
    assert res.stderr.count("PromptWarning") == 1 and "'zebra'" in res.stderr


def test_prompt_warning_is_a_warning_category_users_can_filter():
    pipe = mixdq.load_pipeline()
    d = mixdq.generation_defaults()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mixdq.generate_images(pipe, ["a small red circle"], **d.as_kwargs())
        mixdq.generate_images(pipe, ["a purple zebra"], **d.as_kwargs())
    assert [w.category for w in caught] == [mixdq.PromptWarning]


def test_a_fork_holds_a_second_allocation_sharing_text_encoder_and_vae():
    pipe = mixdq.load_pipeline()
    fork = mixdq.fork_pipeline(pipe)
    assert fork.text_encoder is pipe.text_encoder and fork.vae is pipe.vae and fork.tokenizer is pipe.tokenizer
    assert fork.unet is not pipe.unet and fork.scheduler is not pipe.scheduler
    names = mixdq.build_inventory(pipe.unet).names
    d = mixdq.generation_defaults()
    prompts = ["a small red circle on the left, white background"]
    before = mixdq.generate_images(pipe, prompts, **d.as_kwargs())
    mixdq.quantize_(fork, Allocation.uniform(names, weight=2))
    assert torch.equal(mixdq.generate_images(pipe, prompts, **d.as_kwargs()), before)  # untouched
    mixdq.quantize_(pipe, Allocation.uniform(names, weight=8))
    assert mixdq.current_allocation(fork) == Allocation.uniform(names, weight=2)
    w2, w8 = (mixdq.generate_images(p, prompts, **d.as_kwargs()) for p in (fork, pipe))
    assert (w2 - before).abs().mean() > 5 * (w8 - before).abs().mean()
