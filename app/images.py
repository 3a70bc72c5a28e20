"""FP against quantized images: what the compare view and the `/compare` endpoint compute."""

from __future__ import annotations

import numpy as np
import torch

import mixdq
from mixdq.core.metrics import SQNR_CAP_DB, psnr_db, sqnr_db, ssim
from mixdq.embedded import dataset
from mixdq.embedded.classifier import alignment, scores_against

from .pipelines import Job, Rendered
from .registry import ModelEntry

MAX_SEED = 2**31 - 1


def to_uint8(images: torch.Tensor, scale: int = 1) -> list[np.ndarray]:
    """N x 3 x H x W in [-1, 1] -> HxWx3 uint8 arrays, enlarged `scale` times (nearest: the pixels
    of a 64 px image stay visible)."""
    arr = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [a.repeat(scale, 0).repeat(scale, 1) for a in arr]


def difference(fp: torch.Tensor, q: torch.Tensor, gain: float = 8.0, scale: int = 1) -> np.ndarray:
    """|quantized - FP|, amplified `gain` times, as a heat image: black (identical), red, yellow (at
    or past the top). Not white at the top: a saturated map would look like an empty panel."""
    d = ((q - fp).abs().mean(1, keepdim=True) / 2 * gain).clamp(0, 1)
    heat = torch.cat([(d * 2).clamp(0, 1), (d * 2 - 1).clamp(0, 1), torch.zeros_like(d)], 1)
    return to_uint8(heat * 2 - 1, scale)[0]


def grid(fp: torch.Tensor, q: torch.Tensor, scale: int = 2) -> np.ndarray:
    """FP images in the top row, quantized below, one column per prompt."""
    rows = [np.concatenate(to_uint8(x, scale), axis=1) for x in (fp, q)]
    return np.concatenate(rows, axis=0)


def check_seed(seed) -> int:
    if seed is None or not float(seed).is_integer() or not 0 <= int(seed) <= MAX_SEED:
        raise mixdq.ConfigError(f"the seed must be a whole number from 0 to {MAX_SEED:,}, got {seed}")
    return int(seed)


def check_prompt(entry: ModelEntry, prompt: str, seed) -> tuple[str, int]:
    """The prompt and seed, or an error a person can act on."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise mixdq.ConfigError("the prompt is empty: compose one from the pickers or type one")
    seed = check_seed(seed)
    if entry.embedded:
        check = mixdq.check_prompt(None, prompt)
        if check.unknown_words:
            words = ", ".join(sorted(mixdq.known_words()))
            raise mixdq.ConfigError(
                f"the embedded model never saw {', '.join(repr(w) for w in check.unknown_words)}; "
                f"it knows only these words: {words}"
            )
        if check.truncated:
            raise mixdq.ConfigError(f"{check.message}; use at most {check.max_tokens} tokens")
    return prompt, seed


def compare(entry: ModelEntry, prompts: list[str], seed: int, allocation: mixdq.Allocation,
            bos_aware: bool = True) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """FP (cached) and quantized images of the same prompts and seeds, and how they differ: one
    GPU call at most."""
    fp, q = entry.rendered([Job(tuple(prompts), seed), Job(tuple(prompts), seed, allocation, bos_aware)])
    return fp.images, q.images, scores(entry, fp, q, prompts)


def scores(entry: ModelEntry, fp: Rendered, q: Rendered, prompts: list[str]) -> dict:
    """`image_metrics`, and the SQNR of the quantized UNet's outputs against FP's over every step
    (dB): the two measures of the sensitivity sweep, here on these prompts and seeds."""
    sqnr = round(min(sqnr_db(fp.unet, q.unet), SQNR_CAP_DB), 2)
    return image_metrics(entry, fp.images, q.images, prompts) | {"sqnr_db": sqnr}


def image_metrics(entry: ModelEntry, fp: torch.Tensor, q: torch.Tensor, prompts: list[str]) -> dict:
    """PSNR and SSIM of quantized against FP images (in [-1, 1]); alignment of both with their
    captions where the model has a classifier and the prompts are data-set captions."""
    fp01, q01 = (fp + 1) / 2, (q + 1) / 2
    out = {"psnr_db": round(psnr_db(fp01, q01), 2), "ssim": round(ssim(fp01, q01).mean().item(), 4)}
    if entry.classifier is not None:
        try:
            with torch.no_grad():
                out["alignment_fp"] = round(alignment(entry.classifier, fp, prompts).mean().item(), 3)
                out["alignment_quantized"] = round(alignment(entry.classifier, q, prompts).mean().item(), 3)
        except ValueError:  # free text, not a caption of the data set: no ground truth
            pass
    return out


def metrics_text(label: str, m: dict) -> str:
    text = f"**{label}** · PSNR {m['psnr_db']:.1f} dB · SSIM {m['ssim']:.3f} against FP"
    if "sqnr_db" in m:
        text += f" · SQNR of the UNet output {m['sqnr_db']:.1f} dB"
    if "alignment_fp" in m:
        text += (f" · caption alignment (attribute classifier): FP {m['alignment_fp']:.2f}, "
                 f"quantized {m['alignment_quantized']:.2f}")
    return text


def held_out_captions(n: int = 8) -> list[str]:
    return dataset.evaluation_captions(n)


def compose(size: str, colour: str, shape: str, where: str, background: str) -> str:
    return dataset.Scene(shape, colour, background, where, size).caption


def measure(entry: ModelEntry, allocations: list[mixdq.Allocation], num_prompts: int) -> list[dict]:
    """Each allocation on `num_prompts` held-out captions (caption i with seed i) against FP:
    PSNR, SSIM, and on the embedded model caption alignment and Fréchet distance of classifier
    features. All images come from one GPU call; FP images are cached."""
    if not entry.embedded:
        raise mixdq.ConfigError("measuring needs held-out captions and images: it runs on the embedded model")
    if not 2 <= int(num_prompts) <= 128:
        raise mixdq.ConfigError(f"measure on 2 to 128 prompts, got {num_prompts}")

    captions = tuple(dataset.evaluation_captions(int(num_prompts)))
    fp, *quantized = entry.images([Job(captions, 0), *(Job(captions, 0, a) for a in allocations)])
    rows = []
    for q in quantized:
        with torch.no_grad():
            scores = scores_against(entry.classifier, fp, q, list(captions))
        rows.append({k: round(v, 4) for k, v in scores.items()} | {"num_prompts": int(num_prompts)})
    return rows
