"""Plain plotly builders: engine results in, figures out (no Gradio, no state).

Every per-layer figure uses one layout, the UNet drawn left to right along the forward pass
(`mixdq.models.inventory.position`): a column per place (a transformer block, a resnet, an attention's
projections, a sampler, a stem layer), a row per role (`attn2.to_k`, `conv1`, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mixdq.models.inventory import Position

ROLES = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
         "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out",
         "conv1", "time_emb_proj", "conv2", "conv_shortcut", "conv", "stem")
BITS_COLOURS = {2: "#b2182b", 3: "#ef8a62", 4: "#fddbc7", 5: "#d1e5f0", 6: "#67a9cf", 8: "#2166ac",
                16: "#4d4d4d"}
BITS_LEVELS = tuple(sorted(BITS_COLOURS))  # the bits map's z is an index into these (16: floating point)
GROUP_SCALES = {"content": "Reds", "quality": "Blues"}
FONT = dict(size=12)


class Grid:
    """Where each layer goes in the layer map; built once per model."""

    def __init__(self, positions: Mapping[str, Position]):
        places = sorted({(p.order, p.place) for p in positions.values()})
        self.places = [place for _, place in places]
        present = {p.role for p in positions.values()}
        self.roles = [r for r in ROLES if r in present] + sorted(present - set(ROLES))
        col = {place: i for i, place in enumerate(self.places)}
        row = {role: i for i, role in enumerate(self.roles)}
        self.cell = {name: (row[p.role], col[p.place]) for name, p in positions.items()}
        # one label per block (down0, down1, mid, up0, ...), centred on it: 100+ place names would not
        # be legible. Blocks of a few columns sit close (SDXL's down0/down1, up2/out): a label whose
        # centre is near its neighbour's drops to a second line instead of overlapping it.
        spans: dict[str, list[int]] = {}
        stem = {p.place for p in positions.values() if p.role == "stem"}
        for i, place in enumerate(self.places):
            block = ("in" if i < len(self.places) / 2 else "out") if place in stem else place.split(".")[0]
            spans.setdefault(block, [i, i])[1] = i
        centres = [(first + last) / 2 for first, last in spans.values()]
        near = max(3.0, 0.06 * len(self.places))
        labels, lowered = [], False
        for i, block in enumerate(spans):
            lowered = i > 0 and centres[i] - centres[i - 1] < near and not lowered
            labels.append(f"<br>{block}" if lowered else block)
        self.ticks = (centres, labels)
        self.boundaries = [first - 0.5 for first, _ in list(spans.values())[1:]]

    def matrix(self, values: Mapping[str, float], fill=np.nan) -> np.ndarray:
        z = np.full((len(self.roles), len(self.places)), fill, dtype=object if fill is None else float)
        for name, v in values.items():
            z[self.cell[name]] = v
        return z


def _layer_map_layout(fig: go.Figure, grid: Grid, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=110, r=20, t=40, b=40),
        font=FONT, plot_bgcolor="#f4f4f4", uirevision="layer-map",
        xaxis=dict(tickvals=grid.ticks[0], ticktext=grid.ticks[1], tickangle=0, showgrid=False, zeroline=False,
                   title="UNet, input to output"),
        shapes=[dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1, layer="above",
                     line=dict(color="#999", width=1, dash="dot")) for x in grid.boundaries],
        yaxis=dict(tickvals=list(range(len(grid.roles))), ticktext=grid.roles, autorange="reversed",
                   showgrid=False, zeroline=False),
    )
    return fig


def _hover(grid: Grid, text: Mapping[str, str]) -> np.ndarray:
    return grid.matrix(text, fill=None)


def sensitivity_map(grid: Grid, damage: pd.DataFrame, title: str) -> go.Figure:
    """`damage`: one row per layer with `layer`, `group`, `damage` (NaN: not measured), `hover`.
    Colour is log10 damage, one scale per group so content and quality layers read apart."""
    fig = go.Figure()
    finite = damage["damage"][damage["damage"] > 0]
    # the lowest 2 % are below anything visible anyway; a few near-zero layers must not stretch the scale
    lo = math.floor(np.log10(finite.quantile(0.02))) if len(finite) else -6
    hi = math.ceil(np.log10(finite.max())) if len(finite) else 0
    ticks = list(range(lo, hi + 1, max(1, (hi - lo + 5) // 6)))
    for i, (group, scale) in enumerate(GROUP_SCALES.items()):
        rows = damage[damage["group"] == group]
        z = grid.matrix(dict(zip(rows["layer"], np.log10(rows["damage"].clip(lower=10.0**lo)))))
        fig.add_trace(go.Heatmap(
            z=z, text=_hover(grid, dict(zip(rows["layer"], rows["hover"]))), hovertemplate="%{text}<extra></extra>",
            customdata=_hover(grid, dict(zip(rows["layer"], rows["layer"]))),  # a click names its layer (CLICK_JS)
            hoverongaps=False,  # else the other group's trace, on top, takes the hover (and click) of every cell
            colorscale=scale, zmin=lo, zmax=hi, xgap=1, ygap=1, name=group,
            colorbar=dict(title=dict(text=f"{group}<br>damage", side="top"), tickvals=ticks,
                          ticktext=[f"1e{t}" for t in ticks], x=1.0 + 0.07 * i, len=0.9, thickness=12),
        ))
    fig.update_layout(margin=dict(r=140))
    return _layer_map_layout(fig, grid, title, height=120 + 22 * len(grid.roles))


def bits_map(grid: Grid, bits: Mapping[str, float], hover: Mapping[str, str], title: str) -> go.Figure:
    """Bits per layer (16 = floating point) in one discrete colour per bit-width."""
    index = {b: i for i, b in enumerate(BITS_LEVELS)}
    z = grid.matrix({n: index[int(b)] for n, b in bits.items()})
    n = len(BITS_LEVELS)
    scale = []
    for i, b in enumerate(BITS_LEVELS):
        scale += [(i / n, BITS_COLOURS[b]), ((i + 1) / n, BITS_COLOURS[b])]
    fig = go.Figure(go.Heatmap(
        z=z, text=_hover(grid, hover), hovertemplate="%{text}<extra></extra>", colorscale=scale,
        zmin=-0.5, zmax=n - 0.5, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="bits", side="top"), tickvals=list(range(n)),
                      ticktext=[("FP16" if b == 16 else str(b)) for b in BITS_LEVELS], len=0.9, thickness=12),
    ))
    return _layer_map_layout(fig, grid, title, height=120 + 22 * len(grid.roles))


def pareto_plot(frontier: pd.DataFrame, weight_mb: float, damage: float, *, references: pd.DataFrame | None = None,
                fp16_mb: float | None = None) -> go.Figure:
    """Least predicted damage against packed weight MB (every frontier breakpoint), the current
    allocation marked; `references`: other allocations (uniform bits) as labelled points."""
    if len(frontier) > 400:  # a line of 400 points looks the same and draws several times faster
        frontier = frontier.iloc[np.unique(np.linspace(0, len(frontier) - 1, 400).round().astype(int))]
    fig = go.Figure(go.Scatter(x=frontier["weight_mb"], y=frontier["damage"], mode="lines",
                                 name="best allocation for each budget", line=dict(color="#2166ac"),
                                 hovertemplate="%{x:,.1f} MB<br>damage %{y:.3g}<extra></extra>"))
    if references is not None and len(references):
        # the labels sit above their points, but right of the most damaging one (at the top, under the legend)
        top = references["damage"].to_numpy().argmax()
        where = ["middle right" if i == top else "top center" for i in range(len(references))]
        fig.add_trace(go.Scatter(x=references["weight_mb"], y=references["damage"], mode="markers+text",
                                 text=references["label"], textposition=where, name="uniform bits",
                                 marker=dict(color="#888", size=8, symbol="square"),
                                 hovertemplate="%{text}: %{x:,.1f} MB, damage %{y:.3g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[weight_mb], y=[damage], mode="markers", name="this allocation",
                             marker=dict(color="#b2182b", size=13, symbol="diamond"),
                             hovertemplate="this allocation: %{x:,.1f} MB, damage %{y:.3g}<extra></extra>"))
    if fp16_mb:
        fig.add_vline(x=fp16_mb, line=dict(dash="dot", color="#666"), annotation_text="FP16",
                      annotation_position="top left")
    fig.update_layout(
        height=300, margin=dict(l=60, r=20, t=30, b=40), font=FONT, uirevision="pareto",
        xaxis=dict(title="UNet weights (MB, packed)"), yaxis=dict(title="predicted weight damage", type="log"),
        legend=dict(orientation="h", y=1.12, x=0), showlegend=True,
    )
    return fig


def damage_curve(curves: pd.DataFrame, title: str) -> go.Figure:
    """`curves`: rows of (kind, metric, bits, damage) for one layer: damage falls as bits rise."""
    fig = go.Figure()
    for (kind, metric), rows in curves.groupby(["kind", "metric"], sort=False):
        fig.add_trace(go.Scatter(x=rows["bits"], y=rows["damage"], mode="lines+markers",
                                 name=f"{kind}, {metric.upper()}",
                                 hovertemplate="%{x} bits: damage %{y:.3g}<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=60, r=20, t=40, b=40), font=FONT,
                      title=dict(text=title, font=dict(size=13)), xaxis=dict(title="bits", dtick=1),
                      yaxis=dict(title="damage", type="log"))
    return fig
