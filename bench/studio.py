"""How live is the studio? Prints, from one run (2 threads):

1. On the server, per control change: the time to solve every budget-slider position ahead
   (`app.positions.table`, what the page then draws from while dragging) and its JSON size, on
   the 794-layer SDXL-Turbo profile and on the embedded model; and the release's exact solve.
2. In a real browser (Debian chromium + playwright), on both models: from a slider input event to
   the bits map repainted, for keyboard steps (arrow keys) and for a mouse drag, median and p95
   over --moves moves each, and the server calls made meanwhile (target: p95 <= 50 ms, no call).
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

from app import images, positions, views
from app.registry import default_models
from app.studio import build_demo
from app.tabs.budget import update


def p95(xs) -> float:
    return float(np.percentile(xs, 95))


def server_side(models) -> list[dict]:
    rows = []
    for key in ("sdxl-turbo", "embedded"):
        entry, controls = models[key], views.Controls()
        lo, hi = views.budget_range(entry, controls)  # planner and frontier built, as on page load
        t = time.perf_counter()
        text = positions.table(entry, controls, lo, hi)
        seconds = time.perf_counter() - t
        exact = []
        for mb in np.random.default_rng(0).uniform(lo, hi, 10):
            t = time.perf_counter()
            update(entry, controls, float(mb), exact=True)
            exact.append(time.perf_counter() - t)
        table = json.loads(text)
        rows.append(dict(setting=key, model=key, layers=len(entry.profile), positions=table["count"], step_mb=table["step"],
                         solve_s=seconds, json_kb=len(text) / 1e3, release_median_ms=statistics.median(exact) * 1e3))
        print(f"[1] {key} ({len(entry.profile)} layers): every slider position ({table['count']}, "
              f"{table['step']:g} MB apart) solved in {seconds:.2f} s, {len(text) / 1e3:.0f} kB of JSON; "
              f"release (exact solve + figures) {statistics.median(exact) * 1e3:.0f} ms median")
    return rows


# a capture listener on window sees the slider's input event before the page's own handlers
MARK_JS = """() => {
  if (!window.mixdqMarked) {
    window.mixdqMarked = true;
    window.addEventListener('input', (e) => {
      if (e.target.closest && e.target.closest('#budget-slider')) window.mixdqInputAt = performance.now();
    }, true);
  }
  window.mixdqDrawn = (window.mixdqSlider || {}).drawn;
  window.mixdqInputAt = null;
}"""
# done when the page has drawn the move (app.positions.DRAW_JS counts) and the frame that shows it
# has been painted: checked in a frame callback, timed in a task queued from it (it runs after that
# frame's paint)
PAINTED_JS = """async () => {
  const t0 = performance.now();
  while (true) {
    await new Promise((r) => requestAnimationFrame(() => r()));
    if (window.mixdqInputAt !== null && (window.mixdqSlider || {}).drawn !== window.mixdqDrawn) break;
    if (performance.now() - t0 > 10000) return NaN;
  }
  await new Promise((r) => setTimeout(r, 0));
  return performance.now() - window.mixdqInputAt;
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


def slider_moves(models, key: str, moves: int) -> list[dict]:
    """Keyboard steps, then a mouse drag, on `key`'s budget slider: input event to repaint."""
    with studio_page(models, key) as (page, url):
        calls = []
        page.on("request", lambda r: calls.append(r.url) if "/queue/join" in r.url else None)
        page.goto(url)
        page.get_by_role("tab", name="Budget").click()
        page.wait_for_function("() => (document.querySelector('#budget-positions textarea') || {}).value", timeout=60_000)
        page.wait_for_timeout(2000)  # the page's opening events have answered
        slider = page.locator("#budget-slider input[type=range]")
        rows = []
        # keyboard: focus the slider, one arrow press per move (a step of the budget)
        slider.focus()
        page.keyboard.press("Home")
        page.wait_for_timeout(300)
        times, before = [], len(calls)
        for i in range(moves):
            page.evaluate(MARK_JS)
            page.keyboard.press("PageUp" if i % 10 == 0 else "ArrowRight")
            times.append(page.evaluate(PAINTED_JS))
            page.wait_for_timeout(60)  # keys repeat at about 30 per second
        rows.append(result(key, "keyboard", times, len(calls) - before))
        # mouse: press on the thumb, move in steps of a few positions, let go at the end
        page.keyboard.press("Home")
        page.wait_for_timeout(300)
        box = slider.bounding_box()
        y, x0 = box["y"] + box["height"] / 2, box["x"] + 8
        width = (box["width"] - 16) / moves
        page.mouse.move(x0, y)
        page.mouse.down()
        times, before = [], len(calls)
        for i in range(1, moves + 1):
            page.evaluate(MARK_JS)
            page.mouse.move(x0 + i * width, y)
            times.append(page.evaluate(PAINTED_JS))
            page.wait_for_timeout(30)
        drag_calls = len(calls) - before
        page.mouse.up()
        rows.append(result(key, "mouse drag", times, drag_calls))
    return rows


def result(model: str, how: str, times: list[float], calls: int) -> dict:
    print(f"[2] browser, {model}, {how}: slider input to bits map painted {statistics.median(times):.1f} ms median, "
          f"{p95(times):.1f} ms p95 over {len(times)} moves; {calls} server calls meanwhile")
    return dict(setting=f"{model}, {how}", model=model, input=how, median_ms=statistics.median(times), p95_ms=p95(times), moves=len(times),
                server_calls=calls)


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
    moves = [row for key in ("sdxl-turbo", "embedded") for row in slider_moves(models, key, args.moves)]
    save("studio", dict(slider_server=server, image_pair=pair, slider_browser=moves,
                        one_layer_browser=one_layer(models, args.clicks)))


if __name__ == "__main__":
    main()
