"""The explorer in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright):
load the page, click and drag on the map and see the decoded image change, sample, interpolate,
draw a digit and read its score, use the sliders and label picker of a conditional model.

Screenshots go to ``test-artifacts/serve/``. Without Chromium the tests are skipped, unless
``VAEKIT_REQUIRE_BROWSER=1`` (as in CI), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import explorer_runs
from vaekit.serve.app import create_app
from vaekit.serve.explorer import Explorer
from vaekit.serve.server import BackgroundServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "serve"
REQUIRED = os.environ.get("VAEKIT_REQUIRE_BROWSER") == "1"

if not Path(CHROMIUM).exists():
    if REQUIRED:
        raise RuntimeError(f"VAEKIT_REQUIRE_BROWSER=1 but there is no Chromium at {CHROMIUM}")
    pytest.skip("no Chromium on this machine", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")


def Server(run: Path) -> BackgroundServer:
    return BackgroundServer(create_app(Explorer.open(run)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return explorer_runs(tmp_path_factory.mktemp("browser"), epochs=3, hidden=64)


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    page.wait_for_selector("#decoded[data-z]", state="attached")  # the first decode is in
    return page, errors


def decoded_pixels(page, selector: str = "#decoded") -> list[int]:
    """The pixels of a loaded <img>, read back through a canvas (waiting while it loads)."""
    deadline = time.monotonic() + 10
    while True:
        pixels = page.evaluate(
            """s => {
                const img = document.querySelector(s);
                if (!img.complete || img.naturalWidth === 0) return null;
                const c = document.createElement("canvas");
                c.width = img.naturalWidth; c.height = img.naturalHeight;
                const ctx = c.getContext("2d");
                ctx.drawImage(img, 0, 0);
                return Array.from(ctx.getImageData(0, 0, c.width, c.height).data).filter(
                    (_, i) => i % 4 === 0);
            }""",
            selector,
        )
        if pixels is not None:
            return pixels
        assert time.monotonic() < deadline, f"{selector} never loaded"
        time.sleep(0.05)


def wait_for_new_z(page, old: str) -> str:
    page.wait_for_function(
        "old => document.querySelector('#decoded').dataset.z !== old", arg=old, timeout=10_000
    )
    return page.get_attribute("#decoded", "data-z")


def click_map(page, fx: float, fy: float) -> None:
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])


def test_map_click_drag_sample_interpolate_and_draw(browser, runs):
    with Server(runs["plain"]) as server:
        page, errors = open_page(browser, server.url)
        assert "2-d latent" in page.text_content("#about")
        start_z = page.get_attribute("#decoded", "data-z")
        start = decoded_pixels(page)
        assert len(start) == 28 * 28
        page.screenshot(path=ARTIFACTS / "01-loaded.png", full_page=True)

        # click the map: the decoded image changes
        click_map(page, 0.2, 0.25)
        z_click = wait_for_new_z(page, start_z)
        clicked = decoded_pixels(page)
        assert clicked != start
        # drag across the map: decoding follows the pointer
        box = page.locator("#map").bounding_box()
        page.mouse.move(box["x"] + 0.8 * box["width"], box["y"] + 0.7 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.7 * box["width"], box["y"] + 0.3 * box["height"], steps=8)
        page.mouse.up()
        z_drag = wait_for_new_z(page, z_click)
        assert decoded_pixels(page) != clicked
        page.screenshot(path=ARTIFACTS / "02-map-clicked.png", full_page=True)

        # sample from the prior
        page.click("#sample")
        z_sample = wait_for_new_z(page, z_drag)

        # interpolate: A here, move, B there, walk
        page.click("#set-a")
        click_map(page, 0.85, 0.15)
        wait_for_new_z(page, z_sample)
        page.click("#set-b")
        page.click("#interpolate")
        page.wait_for_selector("#strip:not([hidden])")
        strip = decoded_pixels(page, "#strip")
        assert len(strip) == 10 * 28 * 28

        # draw a "7" and read it
        page.locator("#draw").scroll_into_view_if_needed()
        canvas = page.locator("#draw").bounding_box()
        x0, y0 = canvas["x"], canvas["y"]
        page.mouse.move(x0 + 60, y0 + 60)
        page.mouse.down()
        page.mouse.move(x0 + 220, y0 + 60, steps=10)
        page.mouse.move(x0 + 120, y0 + 240, steps=12)
        page.mouse.up()
        page.click("#read")
        page.wait_for_function(
            "document.querySelector('#score').textContent.includes('nats')", timeout=10_000
        )
        score = page.text_content("#score")
        assert "log p(x) ≈ -" in score and any(w in score for w in ("typical", "unusual")), score
        assert len(decoded_pixels(page, "#reconstruction")) == 28 * 28
        page.screenshot(path=ARTIFACTS / "03-drawn-and-read.png", full_page=True)

        # an upload of the wrong size: one clear message on the page
        wrong = ARTIFACTS / "wrong-size.png"
        from PIL import Image

        Image.new("L", (40, 30)).save(wrong)
        page.set_input_files("#upload", str(wrong))
        page.wait_for_selector("#error:not([hidden])")
        assert "takes 28×28" in page.text_content("#error")
        assert errors == []
        page.close()


def test_sliders_and_label_picker_of_a_conditional_model(browser, runs):
    with Server(runs["conditional"]) as server:
        page, errors = open_page(browser, server.url)
        assert page.locator("#sliders input").count() == 4
        assert page.is_visible("#label")
        first_z = page.get_attribute("#decoded", "data-z")
        before = decoded_pixels(page)
        page.select_option("#label", "7")
        deadline = time.monotonic() + 10
        while decoded_pixels(page) == before:
            assert time.monotonic() < deadline, "the label picker did not change the image"
            time.sleep(0.1)
        slider = page.locator("#sliders input").nth(2)
        slider.fill("2.5")
        z = wait_for_new_z(page, first_z)
        assert z.split(",")[2] == "2.5000"
        page.screenshot(path=ARTIFACTS / "04-conditional-sliders.png", full_page=True)
        assert errors == []
        page.close()
