"""Every position of the budget slider, solved before the finger gets there.

A control change (content weight, candidate bits, FP16, activations, locks, another model) solves
the live integer-program answer at each slider position once and sends them to the page as one
table (`table`, a JSON string in a hidden textbox). Dragging then redraws the bits map, the Pareto
marker and the summary in the browser (`DRAW_JS`), with no server call per move; letting go still
asks the server for the exact PuLP solve and its gap. Each position is what `views.solve` answers
there: the same `Planner` live path (`Planner.plans`), the same summary text.

MixDQ's own mode solves two integer programs (CBC) per position, too slow to do ahead for every
position: there the page draws on release only, and `table` is empty.
"""

from __future__ import annotations

import json
import math

from mixdq.core.bits import format_bits

from . import plots, views
from .registry import ModelEntry

MAX_POSITIONS = 200  # solved in about 1.5 s on 2 cores (SDXL-Turbo's 794 layers: 192 positions)
NICE_STEPS = (1, 2, 2.5, 5, 10)


def step_for(lo: float, hi: float) -> float:
    """The slider's step over [lo, hi]: the smallest round number (1, 2, 2.5 or 5 x 10^k) that
    leaves at most `MAX_POSITIONS` positions: 10 MB on SDXL-Turbo, 0.025 MB on the embedded model."""
    if hi - lo <= 1e-6:
        return 0.01
    raw = (hi - lo) / (MAX_POSITIONS - 1)  # n positions span n - 1 steps
    scale = 10.0 ** math.floor(math.log10(raw))
    return next(round(m * scale, 12) for m in NICE_STEPS if m * scale >= raw * (1 - 1e-9))


def inner(lo: float, hi: float, step: float) -> tuple[float, float]:
    """The first and last multiples of `step` inside [lo, hi]: where the slider starts and ends."""
    return math.ceil(lo / step - 1e-9) * step, math.floor(hi / step + 1e-9) * step


def budgets(lo: float, hi: float) -> list[float]:
    """Every budget the slider can stop at (MB), as the slider sends them."""
    step = step_for(lo, hi)
    first, last = inner(lo, hi, step)
    return [round(first + i * step, 6) for i in range(int(round((last - first) / step)) + 1)]


def table(entry: ModelEntry, controls: views.Controls, lo: float, hi: float) -> str:
    """The page's table of every position for `controls` (JSON), or "" in MixDQ mode. Kept per
    model and controls, so a control set back, or the tab shown again, costs nothing."""
    if controls.mode == "mixdq":
        return ""
    return entry.memo(_key(controls, lo, hi), lambda: _table(entry, controls, lo, hi))


def cached(entry: ModelEntry, controls: views.Controls, lo: float, hi: float) -> str | None:
    """`table`'s answer when it costs nothing now (made before, or MixDQ mode), else None."""
    return "" if controls.mode == "mixdq" else entry.memoized(_key(controls, lo, hi))


def _key(controls: views.Controls, lo: float, hi: float) -> tuple:
    return ("positions", controls, lo, hi)


def _table(entry: ModelEntry, controls: views.Controls, lo: float, hi: float) -> str:
    at = budgets(lo, hi)
    plans = entry.planner(controls.plan_config()).plans(at, act_avg_bits=controls.act_bits)
    grid, prefix, suffix = views.layer_grid(entry), views.hover_prefix(entry), views.act_suffix(plans[0])
    level = {b: i for i, b in enumerate(plots.BITS_LEVELS)}
    names = plans[0].layers
    codes = ["".join(str(level[b]) for b in views.weight_bits_of(p).values()) for p in plans]
    return json.dumps(dict(
        min=at[0], step=step_for(lo, hi), count=len(at), shape=[len(grid.roles), len(grid.places)],
        cells=[grid.cell[n] for n in names], prefix=[prefix[n] for n in names], suffix=[suffix[n] for n in names],
        labels=[format_bits(None if b == 16 else b) for b in plots.BITS_LEVELS],
        colours=[plots.BITS_COLOURS[b] for b in plots.BITS_LEVELS], boundaries=grid.boundaries, codes=codes,
        mb=[p.weight_mb for p in plans], damage=[p.weight_damage for p in plans],
        summary=[views.plan_summary(entry, p) for p in plans],
    ), separators=(",", ":"))


# (budget, summary, table) -> the summary to show. Parses a new table once; then each move paints
# the bits map's cells on a canvas laid over its plot area and moves the Pareto marker's SVG point
# (a few ms: a Plotly restyle of the map and the marker costs 30-45 ms, measured). When the finger
# rests, Plotly's own figures are brought up to date (hover texts included) and the canvas goes.
# A figure from the server (release: the exact solve) replaces the whole plot, overlay and all.
DRAW_JS = """
(mb, summary, text) => {
  if (!text) return summary;  // MixDQ mode, or the table is on its way: the release answers
  const S = window.mixdqSlider || (window.mixdqSlider = {});
  if (S.text !== text) { S.text = text; S.t = JSON.parse(text); }
  const t = S.t;
  const i = Math.min(t.count - 1, Math.max(0, Math.round((Number(mb) - t.min) / t.step)));
  const map = document.querySelector('#bits-map .js-plotly-plot');
  const pareto = document.querySelector('#pareto .js-plotly-plot');
  const ready = (gd) => gd && gd._fullLayout && gd._fullLayout.xaxis && gd.data;

  const paint = () => {
    const L = map._fullLayout, xa = L.xaxis, ya = L.yaxis, size = L._size;
    let canvas = map.querySelector('canvas.mixdq-overlay');
    if (!canvas) {
      canvas = document.createElement('canvas');
      canvas.className = 'mixdq-overlay';
      canvas.style.cssText = 'position:absolute;pointer-events:none';
      const container = map.querySelector('.svg-container');
      container.insertBefore(canvas, container.querySelectorAll('svg.main-svg')[1] || null);  // under the hover labels
      if (!map.dataset.mixdqOverlay) {  // any plot of the figure (a sync, a server figure) makes it current
        map.dataset.mixdqOverlay = '1';
        map.on('plotly_afterplot', () => map.querySelectorAll('canvas.mixdq-overlay').forEach((c) => c.remove()));
      }
    }
    const ratio = window.devicePixelRatio || 1;
    const px = (v) => v + 'px';
    Object.assign(canvas.style, { left: px(size.l), top: px(size.t), width: px(size.w), height: px(size.h) });
    if (canvas.width !== Math.round(size.w * ratio)) canvas.width = Math.round(size.w * ratio);
    if (canvas.height !== Math.round(size.h * ratio)) canvas.height = Math.round(size.h * ratio);
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.fillStyle = L.plot_bgcolor;
    g.fillRect(0, 0, size.w, size.h);
    // bricks as Plotly's heatmap draws them (xgap = ygap = 1): edges rounded from the first one, the
    // gap on the right and bottom, so that the figure does not shift when Plotly takes over again
    const [rows, cols] = t.shape, codes = t.codes[i];
    const left = xa.c2p(-0.5), top = Math.min(ya.c2p(-0.5), ya.c2p(rows - 0.5));
    const xs = Array.from({ length: cols + 1 }, (_, c) => left + Math.round(xa.c2p(c - 0.5) - left));
    const ys = Array.from({ length: rows + 1 }, (_, r) => top + Math.round(ya.c2p(r - 0.5) - top));
    for (let n = 0; n < t.cells.length; n++) {
      const [r, c] = t.cells[n];
      const x0 = Math.min(xs[c], xs[c + 1]), y0 = Math.min(ys[r], ys[r + 1]);
      g.fillStyle = t.colours[codes.charCodeAt(n) - 48];
      g.fillRect(x0, y0, Math.abs(xs[c + 1] - xs[c]) - 1, Math.abs(ys[r + 1] - ys[r]) - 1);
    }
    g.strokeStyle = '#999'; g.lineWidth = 1; g.setLineDash([3, 3]); g.beginPath();  // the blocks' dotted lines
    for (const b of t.boundaries) { const x = xa.c2p(b); g.moveTo(x, size.h); g.lineTo(x, 0); }
    g.stroke();
  };

  const mark = () => {
    const L = pareto._fullLayout, last = pareto.data.length - 1;
    const trace = pareto.querySelectorAll('g.scatterlayer g.trace')[last];
    const point = trace && trace.querySelector('path.point');
    if (point) point.setAttribute('transform', `translate(${L.xaxis.c2p(t.mb[i])},${L.yaxis.c2p(t.damage[i])})`);
  };

  const sync = () => {  // Plotly's own state: hover texts, the marker's data; skipped if the server drew since
    const [m, p] = ['#bits-map', '#pareto'].map((s) => document.querySelector(s + ' .js-plotly-plot'));
    if (m !== S.map || p !== S.pareto || (m && m.data !== S.mapData) || (p && p.data !== S.paretoData)) return;
    if (ready(m)) {
      const [rows, cols] = t.shape, codes = t.codes[i];
      const z = Array.from({ length: rows }, () => new Array(cols).fill(null));
      const hover = Array.from({ length: rows }, () => new Array(cols).fill(null));
      for (let n = 0; n < t.cells.length; n++) {
        const [r, c] = t.cells[n], code = codes.charCodeAt(n) - 48;
        z[r][c] = code;
        hover[r][c] = t.prefix[n] + t.labels[code] + t.suffix[n];
      }
      window.Plotly.restyle(m, { z: [z], text: [hover] }, [0]);
    }
    if (ready(p)) window.Plotly.restyle(p, { x: [[t.mb[i]]], y: [[t.damage[i]]] }, [p.data.length - 1]);
  };

  if (S.map !== map || S.pareto !== pareto || !map || map.data !== S.mapData) {  // a new figure since the last move
    Object.assign(S, { map, pareto, mapData: map && map.data, paretoData: pareto && pareto.data });
  }
  if (ready(map)) paint();
  if (ready(pareto)) mark();
  S.drawn = (S.drawn || 0) + 1;  // what a benchmark waits for
  clearTimeout(S.timer);
  S.timer = setTimeout(sync, 300);
  return t.summary[i];
}
"""
