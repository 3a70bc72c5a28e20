"""Layers quantized alone, seen as images: one layer (what the sensitivity heatmap measured), a
block, a role, or a whole group, at one bit-width while everything else stays floating point;
their images against FP's, how much they differ, and what the profile predicted."""

from __future__ import annotations

from dataclasses import dataclass

import mixdq

from . import images
from .pipelines import Job
from .registry import ModelEntry

# how a selection names its layers: one layer, a block of the UNet, a role in every block, a group
BY = ("layer", "block", "role", "group")
GAIN = 8  # the difference map's amplification


def block_of(name: str) -> str:
    """The UNet block a layer is in: "down_blocks.1", "mid_block", "up_blocks.0", or "stem" for
    the layers outside the blocks (conv_in, the time embedding, conv_out)."""
    parts = name.split(".")
    if parts[0] in ("down_blocks", "up_blocks"):
        return ".".join(parts[:2])
    return "mid_block" if parts[0] == "mid_block" else "stem"


def choices(entry: ModelEntry, by: str) -> list[str]:
    """What a selection `by` can name on this model, in the UNet's order."""
    names = entry.profile.names
    if by == "layer":
        return list(names)
    if by == "block":
        return list(dict.fromkeys(block_of(n) for n in names))
    if by == "role":
        return sorted({entry.positions[n].role for n in names})
    if by == "group":
        return sorted({layer.group for layer in entry.profile})
    raise mixdq.ConfigError(f"a selection is by {', '.join(BY)}; got {by!r}")


@dataclass(frozen=True)
class Selection:
    """Which layers are quantized: `by` one of BY, `name` what `choices(entry, by)` offers."""

    by: str
    name: str

    def layers(self, entry: ModelEntry) -> list[str]:
        if self.by == "layer":
            entry.profile.check_names([self.name])  # "did you mean" for a layer the model lacks
            return [self.name]
        offered = choices(entry, self.by)
        if self.name not in offered:
            raise mixdq.ConfigError(f"{entry.key} has no {self.by} {self.name!r}; choose one of {', '.join(offered)}")
        match = {"block": lambda n: block_of(n) == self.name, "role": lambda n: entry.positions[n].role == self.name,
                 "group": lambda n: entry.profile[n].group == self.name}[self.by]
        return [n for n in entry.profile.names if match(n)]

    def group(self, entry: ModelEntry) -> str:
        """"content", "quality", or "content and quality" when the selection spans both."""
        groups = {entry.profile[n].group for n in self.layers(entry)}
        return groups.pop() if len(groups) == 1 else " and ".join(sorted(groups))

    def label(self, entry: ModelEntry) -> str:
        count = len(self.layers(entry))
        return self.name if self.by == "layer" else f"{self.by} {self.name} ({count} layer{'s' * (count != 1)})"


def allocation(entry: ModelEntry, selection: Selection, kind: str, bits: int) -> mixdq.Allocation:
    """The selection's `kind` at `bits`, every other layer and tensor floating point. The width must
    be one the profile measured (the heatmap's widths)."""
    measured = entry.profile.bits(kind)
    if bits not in measured:
        raise mixdq.ConfigError(f"{entry.key}'s profile measured {kind}s at {', '.join(map(str, measured))} bits, "
                                f"not {bits}; choose one of those")
    chosen = dict.fromkeys(selection.layers(entry), int(bits))
    return mixdq.Allocation(chosen, {}) if kind == "weight" else mixdq.Allocation({}, chosen)


def waits(entry: ModelEntry, images: int, what: str) -> str | None:
    """None where images take a moment (the embedded model, any model on a GPU): show them at
    once. Else what to press and how long `images` images will take (a full-size model on a CPU),
    or why there are none."""
    if entry.embedded or entry.pipeline.on_gpu():
        return None
    return entry.images_refused() or (f"Press **Show images** to see {what}: {images} images (the FP one unless "
                                      f"cached), {entry.pipeline.expected_seconds(images)}.")


def profiled(entry: ModelEntry, selection: Selection, kind: str, bits: int) -> dict[str, float] | None:
    """What the sensitivity sweep measured for one layer at `bits` (SSIM of its images, SQNR of the
    UNet output), or None for a group, which was never measured as a whole."""
    if selection.by != "layer":
        return None
    scores = entry.profile[selection.name].scores(kind)
    return {metric: by_bits[bits] for metric, by_bits in scores.items() if bits in by_bits}


@dataclass(frozen=True)
class Seen:
    """What the page shows: FP, quantized and their amplified difference (HxWx3 uint8), the
    measured scores against FP, and the profile's scores (None for a group)."""

    fp: object
    quantized: object
    difference: object
    metrics: dict
    profiled: dict | None
    layers: int


def see(entry: ModelEntry, selection: Selection, kind: str, bits: int, prompt: str, seed,
        bos_aware: bool = True) -> Seen:
    """The selection quantized alone, on `prompt` with `seed`: one GPU call at most (the FP image
    is shared with the compare view's cache)."""
    return see_each(entry, [selection], kind, bits, prompt, seed, bos_aware)[0]


def see_each(entry: ModelEntry, selections: list[Selection], kind: str, bits: int, prompt: str, seed,
             bos_aware: bool = True) -> list[Seen]:
    """Each selection quantized alone (not together), against one FP image: one GPU call at most."""
    prompt, seed = images.check_prompt(entry, prompt, seed)
    allocations = [allocation(entry, s, kind, int(bits)) for s in selections]  # every one checked first
    fp, *quantized = entry.rendered([Job((prompt,), seed), *(Job((prompt,), seed, a, bos_aware) for a in allocations)])
    scale = max(1, 256 // fp.images.shape[-1])  # a 64 px image drawn at 256 px, its pixels kept
    shown = images.to_uint8(fp.images, scale)[0]
    return [Seen(shown, images.to_uint8(q.images, scale)[0],
                 images.difference(fp.images[:1], q.images[:1], gain=GAIN, scale=scale),
                 images.scores(entry, fp, q, [prompt]),
                 profiled(entry, s, kind, int(bits)), len(a.names))
            for s, a, q in zip(selections, allocations, quantized)]


def caption(entry: ModelEntry, selection: Selection, kind: str, bits: int, seen: Seen) -> str:
    """The scores in words: measured now against FP, beside what the sweep measured for this layer."""
    what = f"{selection.label(entry)}: {kind}s at {bits} bits, everything else floating point"
    text = f"**{what}.** " + images.metrics_text("Now", seen.metrics)
    if seen.profiled:
        parts = [f"SSIM {seen.profiled['ssim']:.4f}" if "ssim" in seen.profiled else "",
                 f"SQNR of the UNet output {seen.profiled['sqnr']:.1f} dB" if "sqnr" in seen.profiled else ""]
        text += (" · **profiled** (the sweep's prompts and seeds, all images): "
                 + ", ".join(p for p in parts if p))
    elif selection.by != "layer":
        text += " · a group was never profiled as a whole: the budget view adds up its layers' damage"
    return text + f". Difference map: |quantized - FP| x{GAIN}."
