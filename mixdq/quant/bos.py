"""The BOS token of the text embedding, as MixDQ treats it.

In cross-attention `to_k`/`to_v` the input is the text embedding, and its first token (BOS) is
the same for every prompt of a causal text encoder while carrying outliers far larger than any
other token's. So it stays in floating point and out of activation calibration; the rest of the
sequence is quantized as usual.
"""

from __future__ import annotations

import re

import torch

# Cross-attention key/value projections: their input is the text embedding, token 0 is BOS.
BOS_LAYER_PATTERN = re.compile(r"(^|\.)attn2\.to_[kv]$")


def is_bos_layer(name: str) -> bool:
    return bool(BOS_LAYER_PATTERN.search(name))


def has_bos(x: torch.Tensor) -> bool:
    """A (batch, tokens, features) text embedding with a BOS token and at least one more."""
    return x.dim() == 3 and x.shape[1] > 1


def split_bos(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(BOS token, the other tokens) of a text embedding: (B, 1, C) and (B, T-1, C)."""
    return x[:, :1], x[:, 1:]
