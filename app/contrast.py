"""Content layers against quality layers: MixDQ's split, measured rather than asserted.

MixDQ judges content layers (cross-attention `attn2`, feed-forward `ff`) by the SSIM of the
images, because they change *what* is drawn, and the other, quality, layers by the SQNR of the
UNet output, because they change *how cleanly*. Here two selections are quantized alone and shown
side by side against FP (`isolated.see_each`), and a profile's own figures say how far each
measure tells the groups apart (`separation`): the share of (content, quality) layer pairs in
which the content layer is hurt more, 0.5 when the measure does not tell them apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mixdq
from mixdq.models.inventory import GROUPS
from mixdq.planning.damage import damage

from .isolated import Seen, Selection
from .registry import ModelEntry

SEPARATES = 0.7  # a share of pairs this far from 0.5, either way, tells the groups apart
# what the sweep measured, as shown: (its name, the value shown, whether higher is worse, format)
SHOWN = {"ssim": ("SSIM loss", lambda v: 1 - v, True, "{:.4f}"),
         "sqnr": ("SQNR of the UNet output", lambda v: v, False, "{:.1f} dB")}


def worse_share(content, quality, higher_is_worse: bool = True) -> float:
    """The share of (content, quality) pairs in which the content value is the worse (ties count
    half): the area under the ROC curve of "is a content layer" scored by the value."""
    c, q = np.asarray(content, float), np.asarray(quality, float)
    if not higher_is_worse:
        c, q = -c, -q
    diff = c[:, None] - q[None, :]
    if not diff.size:
        raise mixdq.ConfigError("comparing the groups needs measurements of at least one content and one quality layer")
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def verdict(share: float) -> str:
    if share >= SEPARATES:
        return "content layers are hurt more"
    if share <= 1 - SEPARATES:
        return "quality layers are hurt more"
    return "it does not tell the groups apart"


def most_damaging(entry: ModelEntry, kind: str, bits: int) -> tuple[Selection, Selection]:
    """The content layer its images suffer from most (SSIM) and the quality layer the UNet output
    suffers from most (SQNR), each alone at `bits`: MixDQ's own measures for each group."""
    picks = []
    for group, metric in (("content", "ssim"), ("quality", "sqnr")):
        scored = [(damage(metric, layer.scores(kind)[metric][bits]), layer.name) for layer in entry.profile
                  if layer.group == group and bits in layer.scores(kind).get(metric, {})]
        if not scored:
            raise mixdq.ConfigError(f"{entry.key}'s profile has no {group} layer measured by {metric.upper()} at "
                                    f"{bits} bits; choose a width the sensitivity view offers")
        picks.append(Selection("layer", max(scored)[1]))
    return picks[0], picks[1]


def separation(entry: ModelEntry, kind: str, bits: int) -> str:
    """What the loaded model's profile says about the groups at `bits`, per measure, in words."""
    parts = []
    for metric, (words, shown, higher_is_worse, form) in SHOWN.items():
        values = {g: [shown(layer.scores(kind)[metric][bits]) for layer in entry.profile
                      if layer.group == g and bits in layer.scores(kind).get(metric, {})] for g in GROUPS}
        if not all(values.values()):
            missing = [g for g in GROUPS if not values[g]]
            parts.append(f"{words}: not measured for {' or '.join(missing)} layers at {bits} bits")
            continue
        share = worse_share(values["content"], values["quality"], higher_is_worse)
        parts.append(f"{words}: content {form.format(np.mean(values['content']))}, quality "
                     f"{form.format(np.mean(values['quality']))} on average; the content layer is hurt more in "
                     f"{share:.0%} of pairs, so **{verdict(share)}**")
    return (f"**{entry.key}'s profile, each layer's {kind}s alone at {bits} bits** (what the sensitivity sweep "
            f"measured): " + "; ".join(parts) + ".")


def scores_table(entry: ModelEntry, selections: list[Selection], seen: list[Seen]) -> pd.DataFrame:
    """One row per selection: what it is, and its scores now against FP beside the profiled ones."""
    rows = []
    for selection, s in zip(selections, seen):
        m, p = s.metrics, s.profiled or {}
        rows.append({
            "quantized alone": selection.label(entry), "group": selection.group(entry), "layers": s.layers,
            "SSIM vs FP": m["ssim"], "PSNR dB": m["psnr_db"], "SQNR of UNet output dB": m["sqnr_db"],
            "caption alignment": (f"{m['alignment_fp']:.2f} -> {m['alignment_quantized']:.2f}"
                                  if "alignment_fp" in m else "n/a (free text)" if entry.embedded else "n/a"),
            "profiled SSIM": round(p.get("ssim", np.nan), 4), "profiled SQNR dB": round(p.get("sqnr", np.nan), 1),
        })
    return pd.DataFrame(rows)
