"""Distances between a floating-point output and a quantized one."""

from __future__ import annotations

import math
from enum import StrEnum

import torch


class Metric(StrEnum):
    """How a probe's damage is scored: image SSIM against floating point (content layers, by
    default) or the SQNR of the UNet's output (quality layers)."""

    SSIM = "ssim"
    SQNR = "sqnr"


METRICS: tuple[Metric, ...] = tuple(Metric)


SQNR_CAP_DB = 300.0  # identical outputs: float64 cannot resolve more, and JSON has no infinity


def sqnr_db(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio, 10*log10(|ref|^2 / |ref - test|^2), in dB."""
    ref = reference.detach().double()
    noise = (ref - test.detach().double()).square().sum().item()
    signal = ref.square().sum().item()
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def psnr_db(reference: torch.Tensor, test: torch.Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio of images in [0, data_range]."""
    mse = (reference.double() - test.double()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(reference: torch.Tensor, test: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) of N x C x H x W
    images in [0, data_range], averaged over channels and pixels."""
    x, y = reference.double(), test.double()
    c = x.shape[1]
    g = _gaussian_window().to(x.device)
    win = (g[:, None] * g[None, :]).expand(c, 1, -1, -1)

    def blur(t):
        return torch.nn.functional.conv2d(t, win, groups=c)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3))  # float64: single-layer damage can be below float32 resolution


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples), as FID."""
    a, b = features_a.double(), features_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # tr sqrt(A B) = sum sqrt(eig(sqrt(A) B sqrt(A))), all symmetric PSD: no complex sqrtm needed
    w, v = torch.linalg.eigh(cov_a)
    sqrt_a = (v * w.clamp(min=0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    return ((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross).item()
