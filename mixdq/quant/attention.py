"""Self-attention's query and key on a low-bit grid: an option beyond MixDQ.

MixDQ quantizes the inputs of Linear and Conv2d layers only; the attention products Q·Kᵀ and
softmax·V stay in floating point. NNCF's post-training quantization also puts the query and key
of attention on an int8 grid, which is what lets OpenVINO's CPU plugin run the large
self-attention (4,096 image tokens at 512x512) on its int8 kernels. `QuantConfig.
self_attention_bits` does the same here: the outputs of every self-attention's `attn1.to_q` and
`attn1.to_k` (the query and key, before the heads are split: a per-tensor grid commutes with
that reshape) are fake-quantized on one symmetric, calibrated grid each. Cross-attention stays
float: its key holds the text embedding's BOS token, and at 77 tokens it costs little.
"""

from __future__ import annotations

import re

import torch

from mixdq.quant.affine import QParams, qparams_from_range

QK_LAYER_PATTERN = re.compile(r"(^|\.)attn1\.to_[qk]$")


def is_qk_layer(name: str) -> bool:
    """Whether layer `name` computes a self-attention's query or key."""
    return bool(QK_LAYER_PATTERN.search(name))


def qk_qparams(lo: float, hi: float, bits: int) -> QParams:
    """Symmetric per-tensor qparams (signed codes, zero-point 0) for a query or key observed in
    [lo, hi]: queries and keys are centred on zero, and the int8 matmul wants signed codes."""
    return qparams_from_range(torch.tensor(lo), torch.tensor(hi), bits, symmetric=True)
