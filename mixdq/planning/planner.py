"""From a sensitivity profile and a budget to an `Allocation`: MixDQ's decoupled objective as one
multiple-choice knapsack per kind (weights, activations).

`Planner` prices every (layer, option) once (`damage.damage_table` for the objective,
`memory.packed_weight_bytes` for the cost) and precomputes one `Frontier` per (kind, cost unit),
so the studio's slider gets answers in milliseconds; `exact=True` solves the integer program.
MixDQ's own two-program variant is `mixdq_mode.plan_mixdq`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import pandas as pd

from mixdq.core.bits import FP_BITS, Bits, Kind
from mixdq.core.errors import ConfigError, InfeasibleBudgetError
from mixdq.planning.config import PlanConfig
from mixdq.planning.damage import DamageTable, damage_table
from mixdq.planning.solver import Frontier, Knapsack, solve_exact
from mixdq.quant.allocation import Allocation
from mixdq.quant.memory import average_bits, bits_array, packed_weight_bytes
from mixdq.sensitivity.profile import Profile

Unit = Literal["bytes", "bits"]  # packed bytes, or size-weighted bits (average bits x total size)


@dataclass(frozen=True)
class Plan:
    """An allocation and what it costs and risks."""

    allocation: Allocation
    layers: tuple[str, ...]  # every layer of the profile, in order
    avg_bits: float  # parameter-weighted weight bits (floating point counts 16)
    weight_mb: float  # packed weight bytes / 1e6, scales included
    damage: float  # weights + activations, on the normalised scale
    weight_damage: float
    act_damage: float
    act_avg_bits: float | None
    exact: bool
    solve_ms: float

    def to_dict(self) -> dict:
        """`weights` and `activations` list every layer (bits, or "fp"), then the totals."""
        d = self.allocation.to_dict(self.layers)
        d.update({f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("allocation", "layers")})
        return d


class Planner:
    """Allocations from one profile under one `PlanConfig`, for any budget. Tables and frontiers
    are built on first use (a weights-only plan never builds the activation ones)."""

    def __init__(self, profile: Profile, config: PlanConfig = PlanConfig()):
        self.profile = profile
        self.config = config
        profile.check_names([*config.locks("weight"), *config.locks("activation")])
        self.params = np.array([layer.params for layer in profile], float)
        self.out_channels = np.array([layer.out_channels for layer in profile], float)
        self.act_elements = np.array([layer.act_elements for layer in profile], float)
        self._tables: dict[Kind, DamageTable] = {}
        self._frontiers: dict[tuple[Kind, Unit], Frontier] = {}

    def table(self, kind: Kind) -> DamageTable:
        if kind not in self._tables:
            self._tables[kind] = damage_table(self.profile, self.config, kind)
        return self._tables[kind]

    def size(self, kind: Kind) -> np.ndarray:
        """What average bits are weighted by: parameters, or input elements per call."""
        return self.params if kind == "weight" else self.act_elements

    def knapsack(self, kind: Kind, unit: Unit) -> Knapsack:
        table = self.table(kind)
        bits = bits_array(table.options)
        if kind == "weight" and unit == "bytes":
            cost = packed_weight_bytes(self.params[:, None], self.out_channels[:, None], bits[None, :],
                                       self.config.weight.symmetric)
        else:
            cost = self.size(kind)[:, None] * np.nan_to_num(bits, nan=FP_BITS)[None, :]
        return Knapsack(np.where(table.allowed, cost, np.inf), table.damage)

    def frontier(self, kind: Kind = "weight", unit: Unit = "bytes") -> Frontier:
        key = (kind, unit)
        if key not in self._frontiers:
            self._frontiers[key] = Frontier(self.knapsack(kind, unit))
        return self._frontiers[key]

    # --- answers ---------------------------------------------------------------------------

    def _solve(self, kind: Kind, unit: Unit, budget: float, exact: bool) -> dict[str, Bits]:
        frontier, options = self.frontier(kind, unit), self.table(kind).options
        scale, label = (1e-6, "MB") if unit == "bytes" else (1 / self.size(kind).sum(), "average bits")
        try:
            choice = solve_exact(frontier.problem, budget) if exact else frontier.solve(budget)
        except InfeasibleBudgetError as e:  # the solver counts raw cost; say it in the user's unit
            raise InfeasibleBudgetError(e.budget * scale, e.smallest * scale, label) from None
        return {layer.name: options[j] for layer, j in zip(self.profile, choice)}

    def plan(
        self,
        *,
        budget_mb: float | None = None,
        avg_bits: float | None = None,
        act_avg_bits: float | None = None,
        exact: bool = False,
    ) -> Plan:
        """Weight bits within `budget_mb` (packed MB) or `avg_bits`; activation bits within
        `act_avg_bits` (input-size weighted) when given, else activations stay floating point."""
        if (budget_mb is None) == (avg_bits is None):
            raise ConfigError("give exactly one weight budget: budget_mb or avg_bits")
        t0 = time.perf_counter()
        if budget_mb is not None:
            weights = self._solve("weight", "bytes", budget_mb * 1e6, exact)
        else:
            weights = self._solve("weight", "bits", avg_bits * self.params.sum(), exact)
        acts = self._acts(act_avg_bits, exact)
        return self.evaluate(Allocation(weights, acts), exact=exact, solve_ms=(time.perf_counter() - t0) * 1e3,
                             with_acts=act_avg_bits is not None)

    def plans(self, budgets_mb: Iterable[float], *, act_avg_bits: float | None = None) -> list[Plan]:
        """`plan(budget_mb=b, act_avg_bits=...)` for every b (the live path), the activations
        solved once: a slider's every position, ahead of the finger.

            >>> [p.weight_mb for p in planner.plans([700, 800, 900])]  # doctest: +SKIP
        """
        acts = self._acts(act_avg_bits, exact=False)
        out = []
        for mb in budgets_mb:
            t0 = time.perf_counter()
            weights = self._solve("weight", "bytes", mb * 1e6, exact=False)
            out.append(self.evaluate(Allocation(weights, acts), solve_ms=(time.perf_counter() - t0) * 1e3,
                                     with_acts=act_avg_bits is not None))
        return out

    def _acts(self, act_avg_bits: float | None, exact: bool) -> dict[str, Bits]:
        if act_avg_bits is None:
            return {}
        return self._solve("activation", "bits", act_avg_bits * self.act_elements.sum(), exact)

    def evaluate(self, allocation: Allocation, exact: bool = False, solve_ms: float = 0.0,
                 with_acts: bool = True) -> Plan:
        """Cost and damage of any allocation under this planner's objective."""
        wbits = [allocation.weight_bits(n) for n in self.profile.names]
        abits = [allocation.act_bits(n) for n in self.profile.names]
        weight_damage = self._damage("weight", wbits)
        act_damage = self._damage("activation", abits) if with_acts else 0.0
        weight_bytes = packed_weight_bytes(self.params, self.out_channels, bits_array(wbits),
                                           self.config.weight.symmetric)
        return Plan(
            allocation=allocation,
            layers=tuple(self.profile.names),
            avg_bits=average_bits(wbits, self.params),
            weight_mb=float(weight_bytes.sum() / 1e6),
            damage=weight_damage + act_damage,
            weight_damage=weight_damage,
            act_damage=act_damage,
            act_avg_bits=average_bits(abits, self.act_elements) if with_acts else None,
            exact=exact,
            solve_ms=solve_ms,
        )

    def _damage(self, kind: Kind, bits: list[Bits]) -> float:
        table = self.table(kind)
        index = {b: j for j, b in enumerate(table.options)}
        columns = np.array([index.get(b, -1) for b in bits])
        rows = np.arange(len(columns))
        missing = (columns < 0) | ~table.measured[rows, columns]
        if missing.any():
            i = int(np.argmax(missing))
            raise ConfigError(f"{self.profile.names[i]}: {kind} {bits[i]}-bit was not measured in this profile")
        return float(sum(table.damage[rows, columns].tolist()))  # in layer order, as plans always summed

    def pareto(self, kind: Kind = "weight", unit: Unit = "bytes") -> pd.DataFrame:
        """Damage against memory over the whole budget range: every breakpoint of the frontier
        (each one an optimal allocation for its own cost)."""
        cost, damage = self.frontier(kind, unit).points()
        df = pd.DataFrame({"damage": damage})
        if unit == "bytes":
            df.insert(0, "weight_mb", cost / 1e6)
        else:
            df.insert(0, "avg_bits", cost / self.size(kind).sum())
        return df


__all__ = ["Plan", "Planner"]
