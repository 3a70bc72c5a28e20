"""The multiple-choice knapsack: exact ILP against brute force, the live frontier against both."""

import itertools

import numpy as np
import pytest

from mixdq.core.errors import InfeasibleBudgetError
from mixdq.planning.solver import BUDGET_RTOL, Frontier, Knapsack, solve_exact


def brute_force(problem: Knapsack, budget: float) -> tuple[float, np.ndarray]:
    """The optimum by trying every combination (exponential: small instances only)."""
    best = (np.inf, None)
    options = [np.nonzero(np.isfinite(row))[0] for row in problem.cost]
    for combo in itertools.product(*options):
        choice = np.array(combo)
        cost, damage = problem.totals(choice)
        if cost <= budget * (1 + BUDGET_RTOL) and damage < best[0]:
            best = (damage, choice)
    return best


def random_instance(rng, n=None, m=None):
    n = n or int(rng.integers(2, 7))
    m = m or int(rng.integers(2, 5))
    bits = np.sort(rng.choice([2, 3, 4, 5, 6, 8], m, replace=False)).astype(float)
    params = rng.integers(1, 200, n).astype(float)
    cost = params[:, None] * bits[None, :] + rng.integers(0, 5, (n, 1))
    damage = rng.random((n, 1)) * np.exp(-bits[None, :] * rng.random((n, 1))) + rng.random((n, m)) * 1e-3
    cost[rng.random((n, m)) < 0.15] = np.inf  # some layers lack some options
    cost[:, 0] = params * bits[0]  # but always have one
    return Knapsack(cost, damage)


@pytest.mark.parametrize("seed", range(40))
def test_exact_ilp_equals_brute_force_and_fits(seed):
    rng = np.random.default_rng(seed)
    problem = random_instance(rng)
    finite_max = np.where(np.isfinite(problem.cost), problem.cost, 0).max(axis=1).sum()
    budget = rng.uniform(problem.min_cost, finite_max)
    best, _ = brute_force(problem, budget)
    choice = solve_exact(problem, budget)
    cost, damage = problem.totals(choice)
    assert cost <= budget * (1 + 1e-9)
    assert damage == pytest.approx(best, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_live_frontier_fits_and_is_never_better_than_the_optimum(seed):
    rng = np.random.default_rng(100 + seed)
    problem = random_instance(rng)
    finite_max = np.where(np.isfinite(problem.cost), problem.cost, 0).max(axis=1).sum()
    budget = rng.uniform(problem.min_cost, finite_max)
    best, _ = brute_force(problem, budget)
    cost, damage = problem.totals(Frontier(problem).solve(budget))
    assert cost <= budget * (1 + 1e-9)
    assert damage >= best - 1e-12


def test_frontier_breakpoints_are_optimal_for_their_own_cost():
    rng = np.random.default_rng(7)
    problem = random_instance(rng, n=6, m=4)
    frontier = Frontier(problem)
    costs, damages = frontier.points()
    assert np.all(np.diff(costs) >= 0) and np.all(np.diff(damages) <= 1e-15)
    for k in range(0, len(costs), 3):
        best, _ = brute_force(problem, costs[k])
        assert damages[k] == pytest.approx(best, rel=1e-9, abs=1e-12)
        assert problem.totals(frontier.breakpoint_choice(k)) == pytest.approx((costs[k], damages[k]))


def test_more_budget_never_more_damage():
    rng = np.random.default_rng(3)
    problem = random_instance(rng, n=40, m=4)
    frontier = Frontier(problem)
    top = np.where(np.isfinite(problem.cost), problem.cost, 0).max(axis=1).sum()
    damages = [problem.totals(frontier.solve(b))[1] for b in np.linspace(problem.min_cost, top, 60)]
    assert all(b <= a + 1e-12 for a, b in zip(damages, damages[1:]))


def test_budget_floor_band_is_respected():
    rng = np.random.default_rng(11)
    problem = random_instance(rng, n=8, m=3)
    top = np.where(np.isfinite(problem.cost), problem.cost, 0).max(axis=1).sum()
    lo, hi = problem.min_cost + 0.6 * (top - problem.min_cost), problem.min_cost + 0.7 * (top - problem.min_cost)
    cost, _ = problem.totals(solve_exact(problem, hi, lower=lo))
    assert lo - 1e-6 <= cost <= hi + 1e-6


def test_budget_below_the_smallest_names_the_smallest():
    problem = Knapsack(np.array([[2.0, 4.0], [3.0, 6.0]]), np.array([[1.0, 0.1], [1.0, 0.2]]))
    with pytest.raises(InfeasibleBudgetError, match="smallest feasible 5") as info:
        Frontier(problem).solve(4.0)
    assert (info.value.budget, info.value.smallest) == (4.0, 5.0)
    with pytest.raises(InfeasibleBudgetError):
        solve_exact(problem, 4.9)


@pytest.mark.parametrize("seed", range(60))
def test_live_frontier_equals_brute_force_on_small_instances(seed):
    """On instances small enough that the core DP re-decides every layer, the live answer is the
    optimum up to the DP's documented cost rounding: at least as good as the optimum for the
    budget less half a DP bin per item."""
    rng = np.random.default_rng(500 + seed)
    problem = random_instance(rng)
    top = np.where(np.isfinite(problem.cost), problem.cost, 0).max(axis=1).sum()
    budget = rng.uniform(problem.min_cost, top)
    frontier = Frontier(problem)
    damage = problem.totals(frontier.solve(budget))[1]
    best, _ = brute_force(problem, budget)
    rounding = problem.items * budget / (2 * frontier.core_bins)
    best_rounded, _ = brute_force(problem, max(problem.min_cost, budget - rounding))
    assert best - 1e-12 <= damage <= best_rounded + 1e-12
    assert damage == pytest.approx(best, rel=1e-9, abs=1e-12)  # and in practice: exactly


@pytest.mark.parametrize("seed", range(6))
def test_live_frontier_within_0_1_percent_of_pulp_on_larger_instances(seed):
    rng = np.random.default_rng(900 + seed)
    n = int(rng.integers(150, 400))
    problem = random_instance(rng, n=n, m=6)
    top = np.where(np.isfinite(problem.cost), problem.cost, 0).max(axis=1).sum()
    frontier = Frontier(problem)
    for budget in rng.uniform(problem.min_cost, top, 3):
        live_cost, live = problem.totals(frontier.solve(budget))
        exact = problem.totals(solve_exact(problem, budget))[1]
        assert live_cost <= budget * (1 + 1e-9)
        assert exact - 1e-12 <= live <= exact * 1.001 + 1e-12


def test_frontier_tuning_is_validated():
    problem = Knapsack(np.array([[1.0, 2.0]]), np.array([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="core_bins"):
        Frontier(problem, core_bins=0)
