"""The studio in a real browser: Debian's chromium, driven by playwright (never `playwright install`).
Screenshots go to out/screenshots/ (what a person would see, for a look after a run); the
README's (docs/images/studio.png) is made here too, written when missing or with
MIXDQ_UPDATE_SCREENSHOT=1."""

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect, sync_playwright

import mixdq
from app.registry import default_models
from app.studio import THEME, build_demo
from app.tabs import budget

from support import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "out" / "screenshots"
README_SHOT = ROOT / "docs" / "images" / "studio.png"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page():
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is missing: `./run.sh test` installs it (apt-get install chromium)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    demo = build_demo()
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, theme=THEME)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(demo.local_url)
        yield page
        browser.close()
    demo.close()


def _shown_mb(page) -> float:
    text = page.locator("#plan-summary").inner_text()
    return float(re.search(r"([\d,.]+) MB of UNet weights", text)[1].replace(",", ""))


def test_heatmap_renders_on_the_embedded_model(page):
    expect(page.get_by_text("132 layers of embedded")).to_be_visible(timeout=60_000)
    expect(page.locator("#sensitivity-map .js-plotly-plot")).to_be_visible()
    page.screenshot(path=SHOTS / "1-sensitivity-embedded.png", full_page=True)


def test_picking_a_layer_shows_it_alone_as_images_with_its_scores(page):
    page.get_by_role("tab", name="Sensitivity").click()
    expect(page.locator("#sensitive-table")).to_be_visible(timeout=30_000)
    cell = page.locator('#sensitive-table [data-testid="cell-2-0"]')  # the third row's layer
    name = cell.inner_text().strip()
    cell.click()
    expect(page.locator("#see-scores")).to_contain_text(name, timeout=30_000)
    expect(page.locator("#see-scores")).to_contain_text("profiled")
    for image in ("#see-fp", "#see-quantized", "#see-difference"):
        expect(page.locator(f"{image} img")).to_be_visible()
    page.screenshot(path=SHOTS / "1b-see-one-layer.png", full_page=True)
    page.locator("#see-images").scroll_into_view_if_needed()
    page.get_by_label("group").check()  # a whole group quantized at once
    page.locator("#see-images").click()
    expect(page.locator("#see-scores")).to_contain_text("never profiled as a whole", timeout=30_000)


def test_clicking_a_heatmap_cell_picks_its_layer_and_shows_it_alone(page):
    """A content cell: its group's trace lies under the quality one, whose gaps must not take the click."""
    page.get_by_role("tab", name="Sensitivity").click()
    expect(page.locator("#sensitivity-map .js-plotly-plot")).to_be_visible(timeout=30_000)
    cell = page.evaluate("""() => {
      const plot = document.querySelector('#sensitivity-map .js-plotly-plot');
      const content = plot.data.find((trace) => trace.name === 'content');
      const box = plot.querySelector('.nsewdrag').getBoundingClientRect();
      for (let r = 0; r < content.customdata.length; r++)
        for (let c = 0; c < content.customdata[r].length; c++)
          if (content.customdata[r][c]) return {name: content.customdata[r][c],
            x: box.left + plot._fullLayout.xaxis.l2p(c), y: box.top + plot._fullLayout.yaxis.l2p(r)};
    }""")
    page.mouse.click(cell["x"], cell["y"])
    expect(page.locator("#see-scores")).to_contain_text(cell["name"], timeout=30_000)
    expect(page.locator("#see-quantized img")).to_be_visible()


# the page's own answer for the slider's value: the positions table DRAW_JS reads (app.positions)
POSITION_JS = """() => {
  const t = JSON.parse(document.querySelector('#budget-positions textarea').value);
  const value = Number(document.querySelector('#budget-slider input[type=range]').value);
  const i = Math.round((value - t.min) / t.step);
  return {i, mb: t.mb[i], codes: t.codes[i], summary: t.summary[i].split('\\n')[0].replace('### ', ''),
          overlay: document.querySelectorAll('#bits-map canvas.mixdq-overlay').length,
          figure: ((z) => Array.isArray(z) && t.cells.every(([r, c], n) => z[r][c] === t.codes[i].charCodeAt(n) - 48))(
            document.querySelector('#bits-map .js-plotly-plot').data[0].z)};
}"""


@contextmanager
def _server_calls(page) -> Iterator[list[str]]:
    """The calls the page makes to the server meanwhile (each event it sends joins the queue)."""
    calls = []

    def seen(request):
        if "/queue/join" in request.url:
            calls.append(request.post_data)

    page.on("request", seen)
    try:
        yield calls
    finally:
        page.remove_listener("request", seen)


def _settle(page) -> None:
    """Wait until the page has sent nothing for a second (events of an earlier test, chained ones)."""
    for _ in range(20):
        with _server_calls(page) as calls:
            page.wait_for_timeout(1_000)
        if not calls:
            return
    pytest.fail("the page kept calling the server")


def _follows(page, position) -> None:
    """The summary shown is the table's for the slider's value, the map drawn over by the page."""
    expect(page.locator("#plan-summary h3")).to_have_text(position["summary"], timeout=5_000)


def test_dragging_the_budget_is_drawn_in_the_page_without_a_server_call_per_move(page):
    page.get_by_role("tab", name="Budget").click()
    expect(page.locator("#plan-summary")).to_contain_text("MB of UNet weights", timeout=30_000)
    expect(page.locator("#bits-map .js-plotly-plot")).to_be_visible()
    page.wait_for_function("() => (document.querySelector('#budget-positions textarea') || {}).value", timeout=30_000)
    before = _shown_mb(page)
    slider = page.locator("#budget-slider input[type=range]")
    box = slider.bounding_box()
    y = box["y"] + box["height"] / 2
    _settle(page)
    with _server_calls(page) as calls:
        page.mouse.move(box["x"] + 0.3 * box["width"], y)
        page.mouse.down()
        seen = []
        for step in range(1, 13):  # a finger moving right, 12 stops
            page.mouse.move(box["x"] + (0.3 + 0.04 * step) * box["width"], y)
            position = page.evaluate(POSITION_JS)
            _follows(page, position)
            assert position["overlay"] == 1  # drawn in the page over the map
            seen.append(position["i"])
        assert calls == []  # not one server call while the finger moved
        assert len(set(seen)) >= 10 and seen == sorted(seen)
        page.mouse.up()  # the release: the exact integer program, on the server
        expect(page.locator("#plan-summary")).to_contain_text("Exact solve (PuLP/CBC", timeout=30_000)
        assert len(calls) >= 1 and _shown_mb(page) > before
    expect(page.locator("#bits-map canvas.mixdq-overlay")).to_have_count(0)  # the server's figure took over


def test_arrow_keys_step_the_budget_and_plotly_catches_up_when_they_rest(page):
    page.get_by_role("tab", name="Budget").click()
    page.wait_for_function("() => (document.querySelector('#budget-positions textarea') || {}).value", timeout=30_000)
    slider = page.locator("#budget-slider input[type=range]")
    slider.focus()
    _settle(page)
    with _server_calls(page) as calls:
        for _ in range(5):
            first = page.evaluate(POSITION_JS)["i"]
            page.keyboard.press("ArrowLeft")
            position = page.evaluate(POSITION_JS)
            assert position["i"] == first - 1
            _follows(page, position)
    assert calls == []
    # at rest, the figure itself holds the position's bits (its hover texts too), and the overlay is gone
    expect(page.locator("#bits-map canvas.mixdq-overlay")).to_have_count(0, timeout=5_000)
    assert page.evaluate(POSITION_JS)["figure"]
    page.screenshot(path=SHOTS / "2-budget.png", full_page=True)
    # the README's: the page's top down to the bits map (the viewport is 800 px high)
    page.screenshot(path=SHOTS / "readme-studio.png", full_page=True, clip=dict(x=0, y=0, width=1280, height=1120))
    if os.environ.get("MIXDQ_UPDATE_SCREENSHOT") == "1" or not README_SHOT.exists():
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHOTS / "readme-studio.png", README_SHOT)


def test_compare_opens_on_a_pair_and_the_header_says_where_images_run(page):
    expect(page.locator("#hardware")).to_contain_text("Images on cpu", timeout=60_000)
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#fp-image img")).to_be_visible(timeout=60_000)  # before any button is pressed
    expect(page.locator("#q-image img")).to_be_visible()
    expect(page.locator("#compare-metrics")).to_contain_text("PSNR")
    expect(page.locator("#hardware")).to_contain_text("loaded: embedded")


def test_generate_shows_two_images(page):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#generate").click()
    expect(page.locator("#compare-metrics")).to_contain_text("PSNR", timeout=60_000)
    expect(page.locator("#fp-image img")).to_be_visible()
    expect(page.locator("#q-image img")).to_be_visible()
    page.screenshot(path=SHOTS / "3-compare.png", full_page=True)
    page.get_by_role("button", name="Grid: 8 held-out captions").click()
    expect(page.locator("#compare-metrics")).to_contain_text("8 held-out captions", timeout=60_000)
    expect(page.locator("#grid-image img")).to_be_visible()


def test_unknown_words_are_a_message_and_the_next_request_works(page):
    page.locator("#prompt textarea").fill("a purple zebra")
    page.locator("#generate").click()
    expect(page.get_by_text("never saw 'zebra'").first).to_be_visible(timeout=30_000)
    page.screenshot(path=SHOTS / "4-unknown-word.png", full_page=True)
    page.locator("#prompt textarea").fill("a small blue square at the top, yellow background")
    page.locator("#generate").click()
    expect(page.locator("#compare-metrics")).to_contain_text("PSNR", timeout=60_000)


def test_content_against_quality_shows_both_sides_beside_fp_and_says_what_is_measured(page):
    page.get_by_role("tab", name="Content vs quality").click()
    scores = page.locator("#contrast-scores")
    expect(scores).to_contain_text("quality", timeout=60_000)  # the page opened on the defaults, shown
    for image in ("#contrast-fp", "#contrast-a-image", "#contrast-b-image", "#contrast-a-diff", "#contrast-b-diff"):
        expect(page.locator(f"{image} img")).to_be_visible()
    expect(page.locator("#contrast-teaching")).to_contain_text("On the embedded model")
    expect(page.locator("#contrast-profile")).to_contain_text("embedded's profile")
    page.screenshot(path=SHOTS / "3b-content-vs-quality.png", full_page=True)
    page.get_by_role("button", name="All content layers against all quality layers").click()
    expect(scores).to_contain_text("group content (42 layers)", timeout=30_000)
    expect(scores).to_contain_text("group quality (90 layers)")
    # a layer the model lacks: a message, and what is shown stays
    shown = page.locator("#contrast-a-image img").get_attribute("src")
    page.locator("#contrast-a-by").get_by_label("layer").check()
    which = page.locator("#contrast-a input")
    which.fill("conv_inn")
    which.press("Enter")
    expect(page.get_by_text("did you mean").first).to_be_visible(timeout=30_000)
    assert page.locator("#contrast-a-image img").get_attribute("src") == shown


def test_switching_to_sdxl_turbo_shows_its_794_layers(page):
    page.get_by_role("tab", name="Sensitivity").click()
    page.locator("#model-picker input").click()
    page.get_by_role("option", name="sdxl-turbo", exact=True).click()
    expect(page.get_by_text("794 layers of sdxl-turbo")).to_be_visible(timeout=60_000)
    page.screenshot(path=SHOTS / "5-sensitivity-sdxl-turbo.png", full_page=True)
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#weights-note")).to_contain_text("python app.py --model sdxl-turbo", timeout=30_000)
    page.get_by_role("tab", name="Budget").click()
    expect(page.locator("#plan-summary")).to_contain_text("0.", timeout=30_000)
    page.screenshot(path=SHOTS / "6-budget-sdxl-turbo.png", full_page=True)


def test_a_link_opens_the_page_in_its_state(page):
    from urllib.parse import urlencode

    base = page.url.split("?")[0]
    query = urlencode(dict(model="sdxl-turbo", budget="1500", cw="0.8", prompt="a small blue square at the top, "
                           "yellow background", seed="7"))
    page.goto(f"{base}?{query}")
    expect(page.get_by_text("794 layers of sdxl-turbo")).to_be_visible(timeout=60_000)
    page.get_by_role("tab", name="Budget").click()
    expect(page.locator("#plan-summary")).to_contain_text("1,500 MB of UNet weights", timeout=30_000)
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#prompt textarea")).to_have_value("a small blue square at the top, yellow background")
    page.get_by_role("button", name="Link to this view").click()
    expect(page.locator("#state-link textarea")).to_have_value(re.compile(r"model=sdxl-turbo&budget=1500&cw=0.8"))
    page.screenshot(path=SHOTS / "7-link.png", full_page=True)


def _probes(text: str) -> int:
    return int(re.search(r"(\d+) probes", text)[1])


def test_a_sweep_from_the_page_shows_progress_cancels_and_resumes(page):
    page.goto(page.url.split("?")[0])
    expect(page.get_by_text("132 layers of embedded")).to_be_visible(timeout=60_000)
    page.get_by_role("tab", name="Analyse").click()
    regex = r"^down_blocks\.1\."
    layers = sum(bool(re.search(regex, n)) for n in mixdq.load_inventory(None).names)
    page.locator("#sweep-layers textarea").fill(regex)  # x 4 bit-widths (2, 4, 8 weights; 8 activations)
    page.locator("#sweep-start").click()
    expect(page.locator("#sweep-status")).to_contain_text(re.compile(r"\d+/\d+ probe"), timeout=60_000)  # tqdm's bar
    page.screenshot(path=SHOTS / "8-sweep-running.png", full_page=True)
    page.locator("#sweep-cancel").click()
    expect(page.locator("#sweep-status")).to_contain_text("cancelled", timeout=60_000)
    kept = _probes(page.locator("#sweep-status").inner_text())
    assert kept > 0
    page.locator("#sweep-start").click()
    expect(page.locator("#sweep-status")).to_contain_text("resumed from the journal", timeout=120_000)
    status = page.locator("#sweep-status").inner_text()
    total, resumed = _probes(status), int(re.search(r"\((\d+) resumed", status)[1])
    assert resumed >= kept and total == layers * 4
    assert "embedded · sweep-" in status and f"Only {layers} of 132 layers" in status  # kept, not switched to
    expect(page.locator("#model-picker input")).to_have_value("embedded")
    page.screenshot(path=SHOTS / "9-sweep-done.png", full_page=True)


def test_every_view_renders(page):
    shows = {"Measure": "#measure", "Export": "#export-deployed", "Analyse": "#agreement .js-plotly-plot",
             "Layers": "#layers-table"}
    for tab, selector in shows.items():
        page.get_by_role("tab", name=tab).click()
        expect(page.locator(selector).first).to_be_visible(timeout=30_000)
        page.screenshot(path=SHOTS / f"view-{tab.lower()}.png", full_page=True)
    page.get_by_role("tab", name="Export").click()
    page.locator("#export-files").click()
    expect(page.locator("#export-status")).to_contain_text("allocation.json", timeout=30_000)
    page.locator("#export-deployed").click()
    expect(page.locator("#export-status")).to_contain_text("MB of weights on disk", timeout=60_000)
    page.screenshot(path=SHOTS / "view-export-deployed.png", full_page=True)
    page.locator("#export-openvino").click()
    expect(page.locator("#export-status")).to_contain_text("OpenVINO IR of the UNet", timeout=60_000)
    expect(page.locator("#export-status")).to_contain_text("Weights stored as")
    expect(page.locator("#export-status")).not_to_contain_text("self-attention")
    page.screenshot(path=SHOTS / "view-export-openvino.png", full_page=True)
    page.locator("#export-self-attention input").check()
    page.locator("#export-openvino").click()
    expect(page.locator("#export-status")).to_contain_text("self-attention's query and key on 8 bits", timeout=60_000)


def test_measuring_the_allocation_plots_it_beside_the_uniform_ones(page):
    page.goto(page.url.split("?")[0])
    expect(page.get_by_text("132 layers of embedded")).to_be_visible(timeout=60_000)
    page.get_by_role("tab", name="Measure").click()
    page.locator("#measure").click()
    expect(page.locator("#measure-table")).to_contain_text("uniform W8A8", timeout=120_000)
    expect(page.locator("#measure-table")).to_contain_text("mixed W", timeout=60_000)
    expect(page.locator("#measure-plot .js-plotly-plot")).to_be_visible()
    page.screenshot(path=SHOTS / "10-measure.png", full_page=True)


def test_each_model_opens_at_its_default_budget_with_no_error_toast(page):
    """Opened on a full-size model (as a Space serving one opens), the page's first events used to
    carry the placeholder budget into the model's range: an error toast on some loads, and the
    slider at its minimum. Every load of every model now opens clean, at the model's default; so
    does a link to a model other than the studio's default, at the link's budget (there the page's
    first reset and the picker's change both reset the budget view, and one of them used to send
    the old model's widths: "Value: '3' ...")."""
    models = default_models()
    browser = page.context.browser  # the module's chromium: one sync playwright at a time
    for default, query, model, expected in (
            ("sdxl-turbo", "", "sdxl-turbo", budget.opening(models["sdxl-turbo"])["value"]),
            ("embedded", "", "embedded", budget.opening(models["embedded"])["value"]),
            ("embedded", "?model=sdxl-turbo&budget=1500", "sdxl-turbo", 1500)):
        demo = build_demo(models, default=default)
        demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, theme=THEME)
        try:
            for _ in range(4):
                fresh = browser.new_page(viewport={"width": 1280, "height": 800})
                fresh.goto(demo.local_url + query)
                fresh.get_by_role("tab", name="Budget").click()
                expect(fresh.locator("#plan-summary")).to_contain_text("MB of UNet weights", timeout=60_000)
                fresh.wait_for_timeout(2_000)  # every event the page sends on opening has answered
                assert fresh.locator(".toast-body.error").count() == 0, fresh.locator(".toast-body").all_inner_texts()
                value = float(fresh.locator("#budget-slider input[type=range]").input_value())
                assert value == pytest.approx(expected), (model, value, expected)
                fresh.close()
        finally:
            demo.close()
