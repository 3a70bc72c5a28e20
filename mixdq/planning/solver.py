"""The multiple-choice knapsack under every bit allocation: each layer takes exactly one option
(a bit-width), the options' costs must fit a budget, and the total damage is as small as possible.

Two solvers over one problem type:

* `solve_exact`: the integer program, written as the math reads (one binary per (layer, option),
  one one-hot row per layer, one budget row), solved by PuLP's CBC. Optimal; ~0.1-1 s.
* `Frontier`: the convex-hull relaxation, precomputed once. Per layer, the options on the lower
  convex hull of (cost, damage) are upgrades with a damage-per-byte slope; taking upgrades in
  slope order traces the Pareto frontier, and every breakpoint on it is an optimal integer
  allocation for its own cost. A budget between breakpoints is answered by a binary search to the
  breakpoint below it; the few layers around that point (the "core", as in Pisinger's core
  algorithms for knapsacks) are re-decided by a dynamic program over their share of the budget;
  then a fill step and pairwise exchanges spend what is left. A few ms for 794 layers, and a gap
  to the exact optimum of hundredths of a percent (bench/allocation_speed.py measures both).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pulp

from mixdq.core.errors import ConfigError, InfeasibleBudgetError

# A budget is met when the cost is within this relative slack of it: float sums of hundreds of
# costs differ from the budget they were fitted to in the last bits.
BUDGET_RTOL = 1e-12
# A pairwise exchange must lower the damage by more than this (relative to the total), so that
# rounding noise never cycles the exchange loop.
GAIN_RTOL = 1e-15


@dataclass(frozen=True, eq=False)
class Knapsack:
    """`cost[i, j]`, `damage[i, j]`: option j of item i; `cost` is +inf where an item lacks j."""

    cost: np.ndarray
    damage: np.ndarray

    def __post_init__(self):
        cost, damage = np.asarray(self.cost, float), np.asarray(self.damage, float)
        if cost.shape != damage.shape or cost.ndim != 2:
            raise ValueError("cost and damage must be matching 2-D arrays")
        if not np.isfinite(cost).any(axis=1).all():
            raise ValueError("every item needs at least one option")
        damage = np.where(np.isfinite(cost), damage, np.inf)
        object.__setattr__(self, "cost", cost)
        object.__setattr__(self, "damage", damage)

    @property
    def items(self) -> int:
        return self.cost.shape[0]

    @cached_property
    def min_cost(self) -> float:
        return float(self.cost.min(axis=1).sum())

    def totals(self, choice: np.ndarray) -> tuple[float, float]:
        rows = np.arange(self.items)
        return float(self.cost[rows, choice].sum()), float(self.damage[rows, choice].sum())

    def check_budget(self, budget: float) -> None:
        """Raise `InfeasibleBudgetError` (in cost units) when no choice fits `budget`."""
        if budget < self.min_cost * (1 - BUDGET_RTOL):
            raise InfeasibleBudgetError(budget, self.min_cost)


def solve_exact(
    problem: Knapsack, budget: float, lower: float | None = None, time_limit: float | None = None
) -> np.ndarray:
    """Optimal option per item with `lower <= total cost <= budget` (PuLP + CBC)."""

    problem.check_budget(budget)
    # CBC works in absolute tolerances: bring both rows to O(1)-O(1e4) numbers first
    finite = np.isfinite(problem.cost)
    c_scale = max(float(problem.cost[finite].max()), 1e-300)
    d = problem.damage[finite]
    d_scale = max(float(np.abs(d).max()), 1e-300) / 1e4
    cost, damage = problem.cost / c_scale, problem.damage / d_scale

    prob = pulp.LpProblem("bit_allocation", pulp.LpMinimize)
    x = {(i, j): prob.add_variable(f"x_{i}_{j}", 0, 1, cat=pulp.LpBinary) for i, j in zip(*np.nonzero(finite))}
    prob += pulp.lpSum(damage[i, j] * v for (i, j), v in x.items()), "total_damage"
    by_item: dict[int, list] = {}
    for (i, _), v in x.items():
        by_item.setdefault(i, []).append(v)
    for i, vs in by_item.items():
        prob += pulp.lpSum(vs) == 1, f"one_option_{i}"
    spend = pulp.lpSum(cost[i, j] * v for (i, j), v in x.items())
    prob += spend <= budget / c_scale, "budget"
    if lower is not None:
        prob += spend >= lower / c_scale, "budget_floor"
    with warnings.catch_warnings():
        # PuLP 3.x still bundles CBC as PULP_CBC_CMD (its 4.0 moves it to the pulp[cbc] extra)
        warnings.filterwarnings("ignore", message=".*PULP_CBC_CMD.*", category=DeprecationWarning)
        status = prob.solve(pulp.PULP_CBC_CMD(msg=False, gapRel=1e-9, timeLimit=time_limit))
    if pulp.LpStatus[status] != "Optimal":
        raise ConfigError(
            f"the integer program is {pulp.LpStatus[status].lower()}: no allocation meets the "
            "budget band; widen it or allow more bit-widths"
        )
    choice = np.zeros(problem.items, dtype=int)
    for (i, j), v in x.items():
        if v.value() > 0.5:
            choice[i] = j
    return choice


def _lower_hull(cost: np.ndarray, damage: np.ndarray) -> list[int]:
    """Option indices on the lower-left convex hull, cheapest first (dominated ones dropped)."""
    order = sorted(np.nonzero(np.isfinite(cost))[0], key=lambda j: (cost[j], damage[j]))
    pareto: list[int] = []
    for j in order:
        if not pareto or damage[j] < damage[pareto[-1]]:
            if pareto and cost[j] == cost[pareto[-1]]:
                continue
            pareto.append(j)
    hull: list[int] = []
    for j in pareto:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b if it lies on or above the segment a -> j
            cross = (cost[b] - cost[a]) * (damage[j] - damage[a]) - (damage[b] - damage[a]) * (cost[j] - cost[a])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(j)
    return hull


class Frontier:
    """Precomputed convex-hull frontier of a `Knapsack`: fast near-optimal answers for any budget.

    Tuning (the defaults keep the live answer within 0.1 % of the optimum on SDXL-Turbo's 794
    layers in ~10 ms; bench/allocation_speed.py measures both):

    * `core_window`: upgrades on each side of the break point whose layers the dynamic program
      re-decides; wider is closer to optimal and slower (the DP is items x `core_bins`).
    * `core_bins`: budget resolution of that DP; costs are rounded to room / `core_bins`.
    * `exchange_rounds`: at most this many pairwise exchanges after the DP and fill.
    * `exchange_candidates`: upgrades tried per round, best estimated gain first.
    """

    def __init__(self, problem: Knapsack, *, core_window: int = 24, core_bins: int = 16384,
                 exchange_rounds: int = 32, exchange_candidates: int = 8):
        if min(core_window, core_bins, exchange_candidates) < 1 or exchange_rounds < 0:
            raise ValueError("core_window, core_bins and exchange_candidates must be >= 1, exchange_rounds >= 0")
        self.problem = problem
        self.core_window, self.core_bins = core_window, core_bins
        self.exchange_rounds, self.exchange_candidates = exchange_rounds, exchange_candidates
        n = problem.items
        hulls = [_lower_hull(problem.cost[i], problem.damage[i]) for i in range(n)]
        self.start = np.array([h[0] for h in hulls])
        width = max(len(h) for h in hulls)
        self.hull = np.array([h + [h[-1]] * (width - len(h)) for h in hulls])
        rows, steps, slopes = [], [], []
        for i, h in enumerate(hulls):
            for s in range(1, len(h)):
                a, b = h[s - 1], h[s]
                rows.append(i)
                steps.append(s)
                slopes.append((problem.damage[i, b] - problem.damage[i, a]) / (problem.cost[i, b] - problem.cost[i, a]))
        rows, steps, slopes = np.array(rows, int), np.array(steps, int), np.array(slopes)
        order = np.lexsort((steps, rows, slopes))
        self.rows, self.steps = rows[order], steps[order]
        prev = self.hull[self.rows, self.steps - 1]
        nxt = self.hull[self.rows, self.steps]
        self.base_cost, self.base_damage = problem.totals(self.start)
        step = lambda table: np.concatenate([[0.0], np.cumsum(table[self.rows, nxt] - table[self.rows, prev])])
        self.cum_cost, self.cum_damage = step(problem.cost), step(problem.damage)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """(cost, damage) of every breakpoint, cheapest first: the frontier to plot."""
        return self.base_cost + self.cum_cost, self.base_damage + self.cum_damage

    def breakpoint_choice(self, k: int) -> np.ndarray:
        pos = np.zeros(self.problem.items, dtype=int)
        np.maximum.at(pos, self.rows[:k], self.steps[:k])
        return self.hull[np.arange(self.problem.items), pos]

    def solve(self, budget: float) -> np.ndarray:
        p = self.problem
        p.check_budget(budget)
        k = int(np.searchsorted(self.base_cost + self.cum_cost, budget * (1 + BUDGET_RTOL), side="right")) - 1
        choice = self._fill(self._core(self.breakpoint_choice(k), k, budget), budget)
        for _ in range(self.exchange_rounds):
            better = self._exchange(choice, budget)
            if better is None:
                break
            choice = self._fill(better, budget)
        return choice

    def _core(self, choice: np.ndarray, k: int, budget: float) -> np.ndarray:
        """Re-decide the layers around the break point (the "core": the only ones whose choice is
        really in doubt) by dynamic programming over their share of the budget, all options open.

        Costs are rounded to the nearest of `core_bins` steps (rounding errors partly cancel);
        an answer whose true cost overshoots is traced back again from a smaller bin count."""
        p = self.problem
        core = np.unique(self.rows[max(0, k - self.core_window): k + self.core_window])
        if not len(core):
            return choice
        rows = np.arange(p.items)
        fixed = np.ones(p.items, bool)
        fixed[core] = False
        floor = p.cost[core].min(axis=1)
        room = budget * (1 + BUDGET_RTOL) - p.cost[rows[fixed], choice[fixed]].sum() - floor.sum()
        if room <= 0:
            return choice
        unit = room / self.core_bins
        extra = p.cost[core] - floor[:, None]
        steps = np.where(np.isfinite(extra), np.rint(extra / unit), np.inf)
        G = self.core_bins + 1
        best = np.zeros(G)  # least damage of the core items so far within b bins
        picks = np.zeros((len(core), G), dtype=np.int16)
        for r, i in enumerate(core):
            new = np.full(G, np.inf)
            arg = np.zeros(G, dtype=np.int16)
            for j in np.nonzero(steps[r] < G)[0]:
                s = int(steps[r, j])  # bins below s cannot afford option j
                cand = best[: G - s] + p.damage[i, j]
                better = cand < new[s:]
                np.putmask(new[s:], better, cand)
                np.putmask(arg[s:], better, j)
            best, picks[r] = new, arg

        def trace(b: int) -> np.ndarray:
            out = choice.copy()
            for r in range(len(core) - 1, -1, -1):
                out[core[r]] = picks[r, b]
                b -= int(steps[r, picks[r, b]])
            return out

        limit = G
        current = p.totals(choice)[1]
        while limit > 0:
            b = int(np.argmin(best[:limit]))
            if not np.isfinite(best[b]):
                break
            out = trace(b)
            cost, damage = p.totals(out)
            over = cost - budget * (1 + BUDGET_RTOL)
            if over <= 0:
                return out if damage <= current else choice
            limit = min(b, limit - 1) - int(np.ceil(over / unit)) + 1
        return choice

    def _exchange(self, choice: np.ndarray, budget: float) -> np.ndarray | None:
        """The best pair of moves in two different layers, one that frees room (downgrade) and one
        that uses it (upgrade), when together they fit and lower the damage; None if there is none.
        Fixes most of what the greedy fill leaves on the table near a budget."""
        p = self.problem
        rows = np.arange(p.items)
        cur_cost, cur_damage = p.cost[rows, choice], p.damage[rows, choice]
        left = budget * (1 + BUDGET_RTOL) - cur_cost.sum()
        valid = np.isfinite(p.cost)
        d_cost = np.where(valid, p.cost - cur_cost[:, None], np.inf)
        d_damage = np.where(valid, p.damage - cur_damage[:, None], np.inf)
        ui, uj = np.nonzero(valid & (d_damage < 0) & (d_cost > left))
        di, dj = np.nonzero(valid & (d_cost < 0))
        if not len(ui) or not len(di):
            return None
        need, gain = d_cost[ui, uj] - left, -d_damage[ui, uj]
        order = np.argsort(-d_cost[di, dj])  # by room freed, ascending
        saves, losses = -d_cost[di, dj][order], d_damage[di, dj][order]
        di, dj = di[order], dj[order]
        cheapest_loss = np.minimum.accumulate(losses[::-1])[::-1]  # best downgrade freeing >= x
        first = np.searchsorted(saves, need, side="left")
        ok = first < len(saves)
        estimate = np.full(len(ui), -np.inf)
        estimate[ok] = gain[ok] - cheapest_loss[first[ok]]
        for u in np.argsort(-estimate)[: self.exchange_candidates]:  # the estimate may pair a layer with itself
            if estimate[u] <= 0:
                return None
            pool = np.arange(first[u], len(saves))
            pool = pool[di[pool] != ui[u]]
            if not len(pool):
                continue
            d = pool[np.argmin(losses[pool])]
            if gain[u] - losses[d] > GAIN_RTOL * max(1.0, abs(cur_damage.sum())):
                better = choice.copy()
                better[ui[u]], better[di[d]] = uj[u], dj[d]
                return better
        return None

    def _fill(self, choice: np.ndarray, budget: float) -> np.ndarray:
        """Spend what is left on the single-layer moves with the largest damage reduction that fit."""
        p = self.problem
        rows = np.arange(p.items)
        spent = float(p.cost[rows, choice].sum())
        while True:
            left = budget - spent
            extra = p.cost - p.cost[rows, choice][:, None]
            gain = p.damage[rows, choice][:, None] - p.damage
            gain = np.where(extra <= left + abs(budget) * BUDGET_RTOL, gain, 0.0)
            flat = int(np.argmax(gain))
            i, j = divmod(flat, p.cost.shape[1])
            if gain[i, j] <= 0:
                return choice
            spent += float(extra[i, j])
            choice = choice.copy()
            choice[i] = j
