"""Distances between a floating-point output and a quantized one."""

from __future__ import annotations

import math

import torch


def sqnr_db(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio, 10*log10(|ref|^2 / |ref - test|^2), in dB."""
    ref = reference.detach().double()
    noise = (ref - test.detach().double()).square().sum().item()
    signal = ref.square().sum().item()
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)
