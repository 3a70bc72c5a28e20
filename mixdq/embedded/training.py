"""A resumable training loop: deterministic batches by step, atomic checkpoints, a progress bar.

Batches are a pure function of (seed, step), and the checkpoint holds the model, the optimizer
and the torch RNG, so a run killed at any point resumes to the same result as an unbroken one.
Checkpoints are our own files, read with `torch.load(weights_only=True)` (no code runs).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm


def save_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cosine_lr(step: int, total: int, base: float, warmup: int = 200) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train(
    name: str,
    model: torch.nn.Module,
    loss_fn: Callable[[int], torch.Tensor],
    steps: int,
    checkpoint: Path,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    every: int = 100,
    log: Callable[[str], None] = print,
) -> torch.nn.Module:
    """Minimise `loss_fn(step)` for `steps` steps, resuming from `checkpoint` if it exists."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    start = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
        log(f"{name}: resuming at step {start}/{steps}")
    model.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=name)
    t0, running = time.time(), None
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, lr)
        loss = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}")
        if (step + 1) % every == 0 or step + 1 == steps:
            save_atomic(
                {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "rng": torch.get_rng_state(), "step": step + 1},
                checkpoint,
            )
            log(f"{name}: step {step + 1}/{steps} loss {running:.4f} ({time.time() - t0:.0f} s)")
    model.eval()
    return model
