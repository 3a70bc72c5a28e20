"""Do content layers change *what* is drawn and quality layers *how cleanly*? MixDQ says so for
SDXL-Turbo; this measures it on the embedded model, through the studio's own code path.

Every layer's weights are quantized alone at 2, 3 and 4 bits (everything else floating point) on
--prompts held-out captions (caption i with seed i), against the FP images of the same captions:

- SSIM loss (1 - SSIM of the images), what MixDQ judges content layers by;
- SQNR of the UNet output over every step (dB), what it judges quality layers by;
- caption alignment of the quantized images (the embedded model's attribute classifier: the share
  of a caption's attributes it reads back), and its drop from FP's.

Per group (content: attn2 and ff; quality: the rest) and width: the mean of each, and whether the
measure separates the groups: the share of (content, quality) layer pairs in which the content
layer is hurt more (`app.contrast.worse_share`; 0.5: no separation; from 0.7, or up to 0.3, it
tells the groups apart). Also, within each
group, how alike SSIM loss and SQNR rank its layers (Spearman). The studio's "Content vs
quality" tab says what these figures show (`app/texts/content_quality.md`, rendered from them).

    .venv/bin/python bench/content_quality.py [--prompts 16]

Figures: bench/results/content_quality-DATE.json (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse

import pandas as pd
from machine import save, start
from tqdm import tqdm

from app import contrast, images, isolated
from app.pipelines import Job
from app.registry import default_models

WIDTHS = (2, 3, 4)
# measure -> (its column, "worse" is higher: True, or lower: False, its name in words, its format)
MEASURES = {
    "ssim_loss": ("ssim_loss", True, "SSIM loss", "{:.4f}"),
    "sqnr_db": ("sqnr_db", False, "SQNR of the UNet output", "{:.1f} dB"),
    "alignment_drop": ("alignment_drop", True, "caption-alignment drop", "{:.3f}"),
}


def per_layer(entry, captions: list[str], chunk: int = 12) -> pd.DataFrame:
    rows = []
    names = entry.profile.names
    with tqdm(total=len(WIDTHS) * len(names), desc="layers x widths") as bar:
        for bits in WIDTHS:
            for start_at in range(0, len(names), chunk):
                part = names[start_at: start_at + chunk]
                jobs = [Job(tuple(captions), 0)] + [
                    Job(tuple(captions), 0, isolated.allocation(entry, isolated.Selection("layer", n), "weight", bits))
                    for n in part]
                fp, *quantized = entry.rendered(jobs)  # the FP images come from the cache after the first
                for name, q in zip(part, quantized):
                    s = images.scores(entry, fp, q, captions)
                    rows.append(dict(layer=name, group=entry.profile[name].group, bits=bits, ssim_loss=1 - s["ssim"],
                                     sqnr_db=s["sqnr_db"], alignment=s["alignment_quantized"],
                                     alignment_drop=s["alignment_fp"] - s["alignment_quantized"]))
                bar.update(len(part))
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> tuple[list[dict], dict]:
    groups, verdicts = [], {}
    for bits, at in frame.groupby("bits"):
        for group, rows in at.groupby("group"):
            worst = rows.loc[rows["ssim_loss"].idxmax()]  # means hide that a few layers do most of the damage
            groups.append(dict(setting=f"{bits} bits, {group}", bits=int(bits), group=group, layers=len(rows),
                               ssim_loss=rows["ssim_loss"].mean(), sqnr_db=rows["sqnr_db"].mean(),
                               alignment=rows["alignment"].mean(), alignment_drop=rows["alignment_drop"].mean(),
                               worst_layer=worst["layer"], worst_ssim_loss=worst["ssim_loss"]))
        content, quality = at[at["group"] == "content"], at[at["group"] == "quality"]
        parts = []
        for key, (column, higher, words, form) in MEASURES.items():
            share = contrast.worse_share(content[column], quality[column], higher)
            says = contrast.verdict(share)
            parts.append(f"{words} {form.format(content[column].mean())} (content) against "
                         f"{form.format(quality[column].mean())} (quality) on average, the content layer hurt more "
                         f"in {share:.0%} of pairs: **{says}**")
            verdicts.setdefault(str(int(bits)), {})[key] = dict(share=share, says=says)
        verdicts[str(int(bits))]["text"] = "; ".join(parts)
    return groups, verdicts


def conclusion(verdicts: dict) -> str:
    """What the verdicts add up to, in one sentence the studio can teach."""
    apart = [f"{MEASURES[key][2]} at {bits} bits ({v[key]['says']})" for bits, v in verdicts.items()
             for key in MEASURES if v[key]["says"] != contrast.verdict(0.5)]
    if not apart:
        return ("none of the three measures (SSIM loss, SQNR of the UNet output, caption alignment) tells content "
                "from quality layers at 2, 3 or 4 bits. The split decides how each layer is *measured*; the images "
                "do not show content layers changing what is drawn more than quality layers do.")
    return "the groups come apart by " + "; ".join(apart) + ", and by nothing else measured here."


def rank_agreement(frame: pd.DataFrame) -> list[dict]:
    """Within each group and width, Spearman's rho of SSIM loss against SQNR loss (-SQNR): 1 when
    both measures order the layers alike."""
    rows = []
    for (bits, group), at in frame.groupby(["bits", "group"]):
        rho = at["ssim_loss"].corr(-at["sqnr_db"], method="spearman")
        rows.append(dict(setting=f"{bits} bits, {group}", bits=int(bits), group=group, spearman=float(rho)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=16)
    args = parser.parse_args()
    start(2)
    entry = default_models()["embedded"]
    captions = images.held_out_captions(args.prompts)
    frame = per_layer(entry, captions)
    groups, verdicts = summary(frame)
    agreement = rank_agreement(frame)
    for row in groups:
        print(f"{row['setting']:>18} ({row['layers']} layers): SSIM loss {row['ssim_loss']:.4f}, SQNR "
              f"{row['sqnr_db']:.1f} dB, alignment {row['alignment']:.3f} (drop {row['alignment_drop']:.3f}); "
              f"worst {row['worst_layer']} (SSIM loss {row['worst_ssim_loss']:.4f})")
    for bits, v in verdicts.items():
        print(f"{bits} bits: {v['text']}")
    for row in agreement:
        print(f"{row['setting']}: SSIM loss and SQNR rank the layers with Spearman rho {row['spearman']:.2f}")
    print(conclusion(verdicts))
    save("content_quality", dict(model="embedded", prompts=args.prompts, widths=list(WIDTHS), groups=groups,
                                 verdicts=verdicts, conclusion=conclusion(verdicts), rank_agreement=agreement,
                                 layers=frame.round(6).to_dict(orient="records")))


if __name__ == "__main__":
    main()
