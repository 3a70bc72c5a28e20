"""The studio in a real browser: Debian's chromium, driven by playwright (never `playwright install`)."""

import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from app.studio import build_demo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page():
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is missing: `./run.sh test` installs it (apt-get install chromium)")
    demo = build_demo()
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(demo.local_url)
        yield page
        browser.close()
    demo.close()


def test_page_shows_the_embedded_inventory_then_follows_the_dropdown(page):
    expect(page.get_by_text("embedded: ")).to_be_visible(timeout=60_000)
    expect(page.get_by_role("gridcell", name="conv_in").first).to_be_visible()
    page.get_by_label("Model").click()
    page.get_by_role("option", name="sdxl-turbo").click()
    expect(page.get_by_text("794 layers")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("0.501x FP16")).to_be_visible()
    expect(page.get_by_role("gridcell", name="add_embedding.linear_1").first).to_be_visible()
