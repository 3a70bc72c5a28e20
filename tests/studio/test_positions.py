"""Every budget-slider position solved ahead (`app.positions`): what the page draws while dragging
must be what the server's live solve answers at that position, for any controls."""

import json
import re

import pytest

import mixdq
from app import plots, positions, views
from app.registry import default_models
from app.tabs.budget import slider_update

SOLVED = re.compile(r"\n\nSolved in [\d.]+ ms")  # the one line that differs between two solves


@pytest.fixture(scope="module")
def models():
    return default_models()


def decode(table: dict, i: int) -> dict[int, int]:
    """Position i's weight bits per layer index, as the page decodes them (16: floating point)."""
    return {n: plots.BITS_LEVELS[int(ch)] for n, ch in enumerate(table["codes"][i])}


CONTROLS = [
    views.Controls(),
    views.Controls(content_weight=0.9, content_bits=(4, 8), act_bits=6.0),
    views.Controls(allow_fp=True, locks=(("conv_in", "8"),)),
]


@pytest.mark.parametrize("key", ["embedded", "sdxl-turbo"])
@pytest.mark.parametrize("controls", CONTROLS, ids=["defaults", "content-acts", "fp-lock"])
def test_each_position_is_the_servers_live_solve_there(models, key, controls):
    entry = models[key]
    if key == "sdxl-turbo" and controls.locks:
        controls = views.Controls(allow_fp=True, locks=(("down_blocks.1.attentions.0.proj_in", "8"),))
    lo, hi = views.budget_range(entry, controls)
    table = json.loads(positions.table(entry, controls, lo, hi))
    at = positions.budgets(lo, hi)
    assert table["count"] == len(at) <= positions.MAX_POSITIONS
    slider = slider_update(lo, hi, (lo + hi) / 2)  # the slider stops exactly where the table has answers
    assert (slider["minimum"], slider["maximum"], slider["step"]) == (at[0], at[-1], table["step"])
    names = entry.profile.names
    for i, mb in enumerate(at):
        plan = views.solve(entry, controls, mb)
        assert decode(table, i) == {n: b for n, b in enumerate(views.weight_bits_of(plan).values())}, mb
        assert table["mb"][i] == plan.weight_mb <= mb * (1 + 1e-9)
        assert table["damage"][i] == plan.weight_damage
        assert SOLVED.sub("", table["summary"][i]) == SOLVED.sub("", views.plan_summary(entry, plan))
    # what a hover says is what the server's figure says
    last = views.solve(entry, controls, at[-1])
    hover = views.bits_hover(entry, last)
    labels = [table["prefix"][n] + table["labels"][int(ch)] + table["suffix"][n]
              for n, ch in enumerate(table["codes"][-1])]
    assert labels == [hover[n] for n in names]


def test_a_control_change_gives_a_new_table_and_mixdq_mode_none(models):
    entry = models["embedded"]
    lo, hi = views.budget_range(entry, views.Controls())
    one = positions.table(entry, views.Controls(), lo, hi)
    assert positions.cached(entry, views.Controls(), lo, hi) == one  # kept: shown again for nothing
    other = views.Controls(content_weight=1.0)
    assert positions.cached(entry, other, lo, hi) is None
    assert json.loads(positions.table(entry, other, lo, hi))["codes"] != json.loads(one)["codes"]
    assert positions.table(entry, views.Controls(mode="mixdq"), lo, hi) == ""  # two CBC programs a position


@pytest.mark.parametrize(("lo", "hi", "step"), [(644.46, 2562.15, 10), (1.4913, 5.8509, 0.025),
                                                 (0.5, 0.9, 0.0025), (100, 100.5, 0.005)])
def test_steps_are_round_and_positions_few(lo, hi, step):
    assert positions.step_for(lo, hi) == step
    at = positions.budgets(lo, hi)
    assert lo <= at[0] and at[-1] <= hi and len(at) <= positions.MAX_POSITIONS
    assert len(at) > positions.MAX_POSITIONS / 2.5  # no coarser than it needs to be


def test_planner_plans_are_plan_at_each_budget(models):
    planner = models["sdxl-turbo"].planner(mixdq.PlanConfig())
    budgets = [700.0, 1234.5, 2500.0]
    for one, many in zip([planner.plan(budget_mb=b, act_avg_bits=6) for b in budgets],
                         planner.plans(budgets, act_avg_bits=6)):
        assert one.allocation == many.allocation and one.damage == many.damage and one.weight_mb == many.weight_mb
    with pytest.raises(mixdq.InfeasibleBudgetError, match="MB"):
        planner.plans([1.0])
