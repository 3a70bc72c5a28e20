"""The math of uniform quantization: a range becomes a scale and zero-point on an integer grid.

    q = clamp(round(x / scale) + zero_point, qmin, qmax)        x_hat = (q - zero_point) * scale

Weights use one range per output channel (axis 0), activations one per tensor. Everything is
computed in float32, whatever the input dtype, and returned in the input's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mixdq.quant.config import WeightQuantConfig

# Smallest scale we allow: keeps an all-zero channel finite without touching any other channel.
_MIN_SCALE = 1e-12


@dataclass(frozen=True)
class QParams:
    """Scale and zero-point, broadcastable against the tensor they quantize."""

    scale: torch.Tensor
    zero_point: torch.Tensor
    qmin: int
    qmax: int


def int_grid(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer range for `bits`: signed for symmetric, unsigned for asymmetric."""
    if symmetric:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def qparams_from_range(lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool) -> QParams:
    """Scale and zero-point that cover [lo, hi] (elementwise: one pair per channel if batched).

    The range is widened to contain 0 so that zero (padding, ReLU-like outputs) is exact.
    """
    lo = torch.clamp(lo.float(), max=0.0)
    hi = torch.clamp(hi.float(), min=0.0)
    qmin, qmax = int_grid(bits, symmetric)
    if symmetric:
        scale = torch.maximum(-lo, hi) / qmax
        zero_point = torch.zeros_like(scale)
    else:
        scale = (hi - lo) / (qmax - qmin)
        zero_point = torch.clamp(torch.round(qmin - lo / scale.clamp(min=_MIN_SCALE)), qmin, qmax)
    return QParams(scale.clamp(min=_MIN_SCALE), zero_point, qmin, qmax)


def quantize(x: torch.Tensor, qp: QParams) -> torch.Tensor:
    """Integer codes (as float32 values) of `x`."""
    return torch.clamp(torch.round(x.float() / qp.scale) + qp.zero_point, qp.qmin, qp.qmax)


def dequantize(q: torch.Tensor, qp: QParams, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return ((q - qp.zero_point) * qp.scale).to(dtype)


def fake_quantize(x: torch.Tensor, qp: QParams) -> torch.Tensor:
    """Quantize and dequantize: the value the integer model would compute with."""
    return dequantize(quantize(x, qp), qp, x.dtype)


def _channel_range(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = w.detach().float().reshape(w.shape[0], -1)
    lo, hi = flat.aminmax(dim=1)
    shape = (-1,) + (1,) * (w.dim() - 1)
    return lo.reshape(shape), hi.reshape(shape)


def weight_qparams(w: torch.Tensor, bits: int, config: WeightQuantConfig) -> QParams:
    """Per-output-channel qparams for weight `w` ([out, in] or [out, in, kh, kw])."""
    lo, hi = _channel_range(w)
    if config.range_method == "minmax":
        return qparams_from_range(lo, hi, bits, config.symmetric)
    return _mse_search(w, lo, hi, bits, config)


def _mse_search(w, lo, hi, bits, config: WeightQuantConfig) -> QParams:
    """Per channel, the clipping ratio with the least squared error, searched on a grid."""
    wf = w.detach().float()
    reduce_dims = tuple(range(1, w.dim()))
    best_err = torch.full_like(lo, float("inf"))
    best_lo, best_hi = lo.clone(), hi.clone()
    for ratio in torch.linspace(1.0, config.mse_min_ratio, config.mse_grid).tolist():
        qp = qparams_from_range(lo * ratio, hi * ratio, bits, config.symmetric)
        err = (fake_quantize(wf, qp) - wf).square().sum(dim=reduce_dims, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_lo = torch.where(better, lo * ratio, best_lo)
        best_hi = torch.where(better, hi * ratio, best_hi)
    return qparams_from_range(best_lo, best_hi, bits, config.symmetric)


def fake_quantize_weight(w: torch.Tensor, bits: int, config: WeightQuantConfig) -> torch.Tensor:
    return fake_quantize(w, weight_qparams(w, bits, config))


def act_qparams(lo: float, hi: float, bits: int) -> QParams:
    """Per-tensor asymmetric qparams for an activation observed in [lo, hi]."""
    return qparams_from_range(torch.tensor(lo), torch.tensor(hi), bits, symmetric=False)
