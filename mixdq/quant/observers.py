"""Activation range statistics collected during calibration."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mixdq.quant.config import ActQuantConfig


def _call_range(x: torch.Tensor, config: ActQuantConfig) -> tuple[float, float]:
    flat = x.detach().reshape(-1)
    if config.observer == "minmax" or config.percentile >= 100.0:
        lo, hi = flat.aminmax()
        return lo.item(), hi.item()
    flat = flat.float()
    n = flat.numel()
    k_hi = max(1, min(n, round(n * config.percentile / 100.0)))
    k_lo = max(1, n + 1 - k_hi)
    return flat.kthvalue(k_lo).values.item(), flat.kthvalue(k_hi).values.item()


@dataclass
class RangeObserver:
    """Running average of per-call ranges; bit-width independent, so one calibration serves all."""

    config: ActQuantConfig
    lo: float = 0.0
    hi: float = 0.0
    calls: int = 0

    def observe(self, x: torch.Tensor) -> None:
        if x.numel() == 0:
            return
        lo, hi = _call_range(x, self.config)
        self.calls += 1
        m = self.config.momentum
        if self.calls == 1:
            self.lo, self.hi = lo, hi
        elif m is None:
            self.lo += (lo - self.lo) / self.calls
            self.hi += (hi - self.hi) / self.calls
        else:
            self.lo = m * self.lo + (1 - m) * lo
            self.hi = m * self.hi + (1 - m) * hi

    @property
    def range(self) -> tuple[float, float] | None:
        return (self.lo, self.hi) if self.calls else None

    def reset(self) -> None:
        self.lo, self.hi, self.calls = 0.0, 0.0, 0
