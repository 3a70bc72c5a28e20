"""Errors a user can fix. Each message says what went wrong and what to do about it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MixDQError(Exception):
    """Base class: a problem in the user's input, model or environment (not a bug in mixdq)."""


class UnknownLayerError(MixDQError, ValueError):
    def __init__(self, names: Iterable[str], known: Iterable[str]):
        names, known = sorted(set(names)), list(known)
        hints = []
        for name in names[:5]:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        super().__init__(
            f"unknown layer name{'s' if len(names) > 1 else ''}: {', '.join(hints)}{more}. "
            f"The model has {len(known)} quantizable layers; list them with "
            "`python -m mixdq inventory MODEL` (names are UNet module names, with or without 'model.')."
        )
        self.names = names


class UnsupportedBitsError(MixDQError, ValueError):
    def __init__(self, what: str, bits: object, choices: Iterable[int], layer: str | None = None):
        where = f" for layer '{layer}'" if layer else ""
        valid = ", ".join(str(b) for b in choices)
        super().__init__(
            f"{what} bit-width {bits!r}{where} is not supported; choose one of {valid}, "
            "or 'fp' (None) to keep it in floating point."
        )


class NotCalibratedError(MixDQError, RuntimeError):
    pass


class ModelNotFoundError(MixDQError, FileNotFoundError):
    pass


class UnsupportedModelError(MixDQError, TypeError):
    pass


class ConfigError(MixDQError, ValueError):
    pass


class InfeasibleBudgetError(ConfigError):
    """A budget below the cheapest allowed allocation. Carries the numbers in the caller's unit."""

    def __init__(self, budget: float, smallest: float, unit: str = ""):
        self.budget, self.smallest, self.unit = budget, smallest, unit
        sep = " " if unit and unit[0].isalnum() else ""
        super().__init__(
            f"budget {budget:,.4g}{sep}{unit} is below the smallest feasible {smallest:,.4g}{sep}{unit} "
            "(every layer at its cheapest allowed option, locks included); raise the budget, allow "
            "lower bit-widths, or unlock layers"
        )


class DeployedModelError(MixDQError, RuntimeError):
    """A verb that switches bits was called on a deployed (really low-bit, fixed) model."""

    def __init__(self, verb: str):
        super().__init__(
            f"mixdq.{verb}() cannot change a deployed model: its layers hold packed integer weights "
            "and their float weights are gone, so its bits are fixed. For a switchable model, load "
            "the floating-point model again (mixdq.load_pipeline(...)) and quantize that; deploy a "
            "copy only when the allocation is final."
        )


class InsufficientMemoryError(MixDQError, MemoryError):
    """Work that would not fit in the memory this machine has free; the message says what it needs."""
