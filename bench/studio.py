"""How live is the studio? Prints, from one run (2 threads):

1. Server-side time per budget-slider update (live solve + summary + bits map + Pareto plot,
   serialised to JSON as Gradio sends them), median and p95 over 60 budgets, and the JSON size,
   on the 794-layer SDXL-Turbo profile and on the embedded model. Target: p95 <= 60 ms (SDXL-Turbo).
2. In a real browser (Debian chromium + playwright): from a slider input to the allocation plot
   redrawn on screen, median and p95 over 30 moves. Target: p95 <= 300 ms.
3. An FP + quantized image pair on the embedded model with the FP image cached. Target: <= 0.5 s.
4. In chromium, embedded model: from a click on a row of the sensitivity table to that layer's
   three images (FP, quantized alone, difference) and scores painted, p95 over 20 clicks (FP
   cached after the first). Target: p95 <= 0.5 s.

    .venv/bin/python bench/studio.py [--moves 30]

Figures: bench/results/studio-DATE.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from machine import save, start
from playwright.sync_api import sync_playwright

from app import images, views
from app.registry import default_models
from app.studio import build_demo
from app.tabs.budget import update


def p95(xs) -> float:
    return float(np.percentile(xs, 95))


def server_side(models) -> list[dict]:
    rows = []
    for key in ("sdxl-turbo", "embedded"):
        entry, controls = models[key], views.Controls()
        lo, hi = views.budget_range(entry, controls)
        update(entry, controls, (lo + hi) / 2)  # planner and frontier built once, as on page load
        times, sizes = [], []
        for mb in np.random.default_rng(0).uniform(lo, hi, 60):
            t = time.perf_counter()
            summary, *figs = update(entry, controls, float(mb))
            payload = json.dumps([summary, *[f.to_json() for f in figs]])
            times.append(time.perf_counter() - t)
            sizes.append(len(payload))
        rows.append(dict(model=key, layers=len(entry.profile), median_ms=statistics.median(times) * 1e3,
                         p95_ms=p95(times) * 1e3, json_kb=statistics.median(sizes) / 1e3))
        print(f"[1] {key} ({len(entry.profile)} layers): slider update {statistics.median(times) * 1e3:.1f} ms median, "
              f"{p95(times) * 1e3:.1f} ms p95; {statistics.median(sizes) / 1e3:.0f} kB of JSON per update")
    return rows


MOVE_JS = """async (value) => {
  // done when the bits map holds new data (Plotly.react swaps it) and a frame has been painted
  const plotNow = () => document.querySelector('#bits-map .js-plotly-plot');
  const before = plotNow(), data = before && before.data;
  const input = document.querySelector('#budget-slider input[type=range]');
  const t0 = performance.now();
  input.value = value; input.dispatchEvent(new Event('input', {bubbles: true}));
  while (true) {
    await new Promise(r => requestAnimationFrame(() => r()));
    const plot = plotNow();
    if (plot && (plot !== before || plot.data !== data)) break;
    if (performance.now() - t0 > 10000) return NaN;
  }
  await new Promise(r => requestAnimationFrame(() => r()));
  return performance.now() - t0;
}"""


@contextmanager
def studio_page(models, default: str) -> Iterator:
    """The studio opened on `default` in chromium, as a person would see it."""
    demo = build_demo(models, default=default)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            yield b.new_page(viewport={"width": 1280, "height": 800}), demo.local_url
            b.close()
    finally:
        demo.close()


def browser(models, moves: int) -> dict:
    with studio_page(models, "sdxl-turbo") as (page, url):
        page.goto(url)
        page.get_by_role("tab", name="Budget").click()
        page.wait_for_selector("#bits-map .js-plotly-plot", timeout=60_000)
        page.wait_for_timeout(2000)
        slider = page.locator("#budget-slider input[type=range]")
        lo, hi = float(slider.get_attribute("min")), float(slider.get_attribute("max"))
        times = []
        for value in np.random.default_rng(1).uniform(lo, hi, moves):
            times.append(page.evaluate(MOVE_JS, f"{value:.0f}"))
            page.wait_for_timeout(150)  # a hand moving on: let the last update finish
    print(f"[2] browser, SDXL-Turbo: slider input to redrawn allocation plot {statistics.median(times):.0f} ms "
          f"median, {p95(times):.0f} ms p95 over {moves} moves")
    return dict(median_ms=statistics.median(times), p95_ms=p95(times), moves=moves)


SEEN_JS = """([name, before]) => {
  const text = (document.querySelector('#see-scores') || {}).innerText || '';
  const imgs = ['#see-fp', '#see-quantized', '#see-difference'].map((s) => document.querySelector(s + ' img'));
  return text.includes(name + ':') && imgs.every((i) => i && i.complete && i.naturalWidth > 0)
    && imgs[1].src !== before;
}"""


def one_layer(models, clicks: int) -> dict:
    with studio_page(models, "embedded") as (page, url):
        page.goto(url)
        page.wait_for_selector('#sensitive-table [data-testid="cell-0-0"]', timeout=60_000)
        page.wait_for_timeout(2000)  # the page's opening events have answered
        times = []
        for row in range(clicks):
            cell = page.locator(f'#sensitive-table [data-testid="cell-{row}-0"]')
            cell.scroll_into_view_if_needed()
            name = cell.inner_text().strip()
            before = page.evaluate("() => (document.querySelector('#see-quantized img') || {}).src || ''")
            t = time.perf_counter()
            cell.click()
            page.wait_for_function(SEEN_JS, arg=[name, before], timeout=30_000)
            times.append((time.perf_counter() - t) * 1e3)
    print(f"[4] browser, embedded model: table click to one layer's three images painted "
          f"{statistics.median(times):.0f} ms median, {p95(times):.0f} ms p95 over {clicks} clicks")
    return dict(median_ms=statistics.median(times), p95_ms=p95(times), clicks=clicks)


def image_pair(models) -> dict:
    entry = models["embedded"]
    prompt = "a large red circle on the left, white background"
    planner = entry.planner(views.Controls().plan_config())
    images.compare(entry, [prompt], 0, planner.plan(avg_bits=8.0, act_avg_bits=8).allocation)  # load, calibrate, FP
    times = []
    for bits in np.linspace(3, 6, 10):
        allocation = planner.plan(avg_bits=float(bits), act_avg_bits=8).allocation
        t = time.perf_counter()
        images.compare(entry, [prompt], 0, allocation)
        times.append(time.perf_counter() - t)
    print(f"[3] embedded model, FP + quantized image pair (FP cached): {statistics.median(times) * 1e3:.0f} ms median, "
          f"{max(times) * 1e3:.0f} ms max over 10 allocations")
    return dict(median_ms=statistics.median(times) * 1e3, max_ms=max(times) * 1e3, allocations=len(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--clicks", type=int, default=20)
    args = parser.parse_args()
    start(2)
    models = default_models()
    server = server_side(models)
    pair = image_pair(models)
    save("studio", dict(slider_server=server, image_pair=pair, slider_browser=browser(models, args.moves),
                        one_layer_browser=one_layer(models, args.clicks)))


if __name__ == "__main__":
    main()
