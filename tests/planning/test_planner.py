"""Budgeted allocation from a profile: the shipped SDXL-Turbo profile (MixDQ's measurements)."""

import json

import numpy as np
import pytest

import mixdq
from mixdq import PlanConfig, Planner, plan_mixdq
from mixdq.planning.recipe import most_act_sensitive

from support import ROOT

SDXL_PROFILE = ROOT / "assets" / "profiles" / "sdxl-turbo-mixdq.json"

# MixDQ's published floating-point layers for SDXL-Turbo (integer_programming.py, ~1 % per group)
PUBLISHED_FP = {
    "conv_in", "conv_out", "down_blocks.0.resnets.0.conv2", "up_blocks.2.resnets.2.conv_shortcut",
    "down_blocks.2.attentions.1.transformer_blocks.5.ff.net.2",
    "down_blocks.2.attentions.1.transformer_blocks.6.ff.net.2",
    "down_blocks.2.attentions.1.transformer_blocks.7.ff.net.2",
    "down_blocks.2.attentions.1.transformer_blocks.8.ff.net.2",
    "up_blocks.0.attentions.0.transformer_blocks.0.ff.net.2",
}


@pytest.fixture(scope="module")
def profile():
    return mixdq.Profile.load(SDXL_PROFILE)


@pytest.fixture(scope="module")
def planner(profile):
    return Planner(profile)


def test_budget_is_never_exceeded_and_more_budget_never_hurts(planner):
    frontier = planner.pareto()
    budgets = np.linspace(frontier.weight_mb.min(), frontier.weight_mb.max(), 40)
    plans = [planner.plan(budget_mb=mb) for mb in budgets]
    for mb, p in zip(budgets, plans):
        assert p.weight_mb <= mb + 1e-6
    damages = [p.damage for p in plans]
    assert all(b <= a + 1e-12 for a, b in zip(damages, damages[1:]))
    for bits in (3.0, 4.5, 6.0):
        assert planner.plan(avg_bits=bits).avg_bits <= bits + 1e-9


@pytest.mark.parametrize("avg_bits", [2.6, 4.2, 5.5])
def test_live_answer_within_0_1_percent_of_the_exact_ilp(planner, avg_bits):
    live = planner.plan(avg_bits=avg_bits)
    exact = planner.plan(avg_bits=avg_bits, exact=True)
    assert exact.avg_bits <= avg_bits + 1e-9
    assert exact.damage <= live.damage + 1e-12
    assert live.damage <= exact.damage * 1.001


def test_weight_mb_matches_the_memory_report(planner):
    inventory = mixdq.load_inventory("sdxl-turbo")
    p = planner.plan(budget_mb=1500)
    assert p.weight_mb * 1e6 == pytest.approx(mixdq.memory_report(inventory, p.allocation).weight_bytes)


def test_locks_hold_at_every_budget(profile):
    name = "up_blocks.0.attentions.0.transformer_blocks.0.ff.net.2"  # a big, insensitive layer
    planner = Planner(profile, PlanConfig(weight_locks={name: "fp", "model.conv_in": 2}))
    for bits in (2.7, 4.0, 7.9):
        p = planner.plan(avg_bits=bits)
        assert p.allocation.weight_bits(name) is None and p.allocation.weight_bits("conv_in") == 2


def test_candidates_restrict_each_group(profile):
    config = PlanConfig(weight_candidates={"content": (2, 4, 8), "quality": (4, 8)})
    p = Planner(profile, config).plan(avg_bits=4.5)
    for layer in profile:
        allowed = (2, 4, 8) if layer.group == "content" else (4, 8)
        assert p.allocation.weight_bits(layer.name) in allowed


def test_content_weight_moves_bits_between_groups(profile):
    content_bits = {}
    for w in (0.1, 0.9):
        p = Planner(profile, PlanConfig(content_weight=w)).plan(avg_bits=4.0)
        layers = [layer for layer in profile if layer.group == "content"]
        content_bits[w] = sum(p.allocation.weight_bits(layer.name) * layer.params for layer in layers)
    assert content_bits[0.9] > content_bits[0.1]


def test_activations_allocated_under_their_own_budget(planner):
    p = planner.plan(avg_bits=8, act_avg_bits=6)
    assert p.act_avg_bits <= 6 + 1e-9 and set(p.allocation.acts.values()) <= {4, 8}
    assert p.act_damage > 0 and p.damage == pytest.approx(p.weight_damage + p.act_damage)


def test_mixdq_mode_follows_the_paper(planner, profile):
    assert most_act_sensitive(planner, 0.01) == PUBLISHED_FP
    p = plan_mixdq(planner, avg_bits=5.0, k=1.1, act_avg_bits=8)
    weights = p.allocation
    for group, allowed in (("content", {2, 4, 8}), ("quality", {4, 8})):
        layers = [layer for layer in profile if layer.group == group]
        assert {weights.weight_bits(layer.name) for layer in layers} <= allowed
    content = [layer for layer in profile if layer.group == "content"]
    quality = [layer for layer in profile if layer.group == "quality"]
    avg = lambda ls: sum(weights.weight_bits(x.name) * x.params for x in ls) / sum(x.params for x in ls)  # noqa: E731
    assert avg(content) / avg(quality) == pytest.approx(1.1, abs=0.02)
    assert p.avg_bits == pytest.approx(5.0, abs=0.02)
    assert {n for n in profile.names if weights.act_bits(n) is None} == PUBLISHED_FP


def test_mixdq_mode_explains_an_impossible_k(planner):
    with pytest.raises(mixdq.ConfigError, match="choose another K"):
        plan_mixdq(planner, avg_bits=4.0, k=1.5)


def test_bad_inputs_give_clear_errors(profile, tmp_path):
    with pytest.raises(mixdq.UnknownLayerError, match="did you mean 'conv_in'"):
        Planner(profile, PlanConfig(weight_locks={"conv_inn": 8}))
    with pytest.raises(mixdq.InfeasibleBudgetError, match="smallest feasible 644.5 MB") as info:
        Planner(profile).plan(budget_mb=100)
    assert info.value.smallest == pytest.approx(644.46, rel=1e-4)  # in the unit asked for: MB
    with pytest.raises(mixdq.ConfigError, match="3-bit SQNR was not measured"):
        Planner(profile, PlanConfig(weight_locks={"conv_in": 3})).plan(avg_bits=4)
    damaged = tmp_path / "damaged.json"
    damaged.write_text(SDXL_PROFILE.read_text()[:5000])
    with pytest.raises(mixdq.ConfigError, match="not valid JSON"):
        mixdq.Profile.load(damaged)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"weights": {}}))
    with pytest.raises(mixdq.ConfigError, match="not a MixDQ profile"):
        mixdq.Profile.load(wrong)
    with pytest.raises(mixdq.ConfigError, match="exactly one weight budget"):
        Planner(profile).plan(budget_mb=1000, avg_bits=4)


def test_shipped_embedded_profile_is_complete_and_plannable():
    profile = mixdq.Profile.load(ROOT / "assets" / "profiles" / "embedded.json")
    inventory = mixdq.load_inventory(None)
    assert profile.names == inventory.names and profile.meta["model"] == "embedded"
    assert profile.bits("weight") == mixdq.WEIGHT_BITS and profile.bits("activation") == mixdq.ACT_BITS
    for layer in profile:
        for kind, bits in (("weight", mixdq.WEIGHT_BITS), ("activation", mixdq.ACT_BITS)):
            assert {m: tuple(v) for m, v in layer.scores(kind).items()} == {"ssim": bits, "sqnr": bits}
    # per layer, 2-bit weights hurt more than 8-bit ones (SQNR of the UNet output)
    assert all(layer.weight["sqnr"][2] < layer.weight["sqnr"][8] for layer in profile)
    assert len(profile.meta["prompts"]) == 32 and profile.meta["steps"] == 4
    p = Planner(profile).plan(avg_bits=4, act_avg_bits=6)
    assert p.avg_bits <= 4 and p.act_avg_bits <= 6


def test_metric_mapping_is_the_users_choice(profile):
    single = Planner(profile, PlanConfig(metric={"content": "sqnr", "quality": "sqnr"})).plan(avg_bits=4)
    decoupled = Planner(profile).plan(avg_bits=4)
    assert single.allocation != decoupled.allocation
    # MixDQ published SSIM for content layers only: asking it of quality layers is explained
    with pytest.raises(mixdq.ConfigError, match="no allowed weight option with a measured .*ssim"):
        Planner(profile, PlanConfig(metric={"quality": "ssim"})).plan(avg_bits=4)
