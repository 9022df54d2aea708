"""The explorer in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright):
load the page, click and drag on the map and see the decoded image change, sample, interpolate,
draw a digit and read its score, use the sliders and label picker of a conditional model, and
see a colour run of named classes spoken of in its own words (names, split, drawing in colour).

Screenshots go to ``test-artifacts/serve/``. Without Chromium the tests are skipped, unless
``VAEKIT_REQUIRE_BROWSER=1`` (as in CI), where a missing browser is a failure.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import explorer_runs, folder_run
from vaekit.data import classes
from vaekit.runs.loading import open_run
from vaekit.serve.app import create_app
from vaekit.serve.explorer import Explorer
from vaekit.serve.server import BackgroundServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "serve"
REQUIRED = os.environ.get("VAEKIT_REQUIRE_BROWSER") == "1"
#: Limit of every wait in these tests: a guard against a deadlock, never a pass/fail criterion.
GUARD_MS = 600_000

if not Path(CHROMIUM).exists():
    if REQUIRED:
        raise RuntimeError(f"VAEKIT_REQUIRE_BROWSER=1 but there is no Chromium at {CHROMIUM}")
    pytest.skip("no Chromium on this machine", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")


#: Class names that break HTML unless shown as text.
#: Class folders whose names are HTML (the page must show them as text; a folder name holds no
#: "/"). Sorted, as codes are.
NAMES = ("<b>bag", "T-shirt top", "coat & <i>hat")


def Server(run: Path) -> BackgroundServer:
    return BackgroundServer(create_app(Explorer.open(run)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return explorer_runs(tmp_path_factory.mktemp("browser"), epochs=3, hidden=64)


@pytest.fixture(scope="module")
def clothes(tmp_path_factory):
    """A conditional run of a 3-class folder of 32×32 colour images (a validation split only),
    its class folders named :data:`NAMES`."""
    run = folder_run(tmp_path_factory.mktemp("clothes"), 3, 20, "--conditional", names=NAMES)
    assert classes.load(run) == NAMES
    return run


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


#: Every frame, from the first: an <img> on screen must have a src and be fully decoded.
WATCH_IMAGES = """
window.imageFaults = [];
const watchImages = () => {
  for (const img of document.images) {
    if (!img.checkVisibility()) continue;
    if (!img.getAttribute("src")) imageFaults.push(`#${img.id} shown without a src`);
    else if (!img.complete || img.naturalWidth === 0) imageFaults.push(`#${img.id} broken`);
  }
  requestAnimationFrame(watchImages);
};
requestAnimationFrame(watchImages);
"""


def new_page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(GUARD_MS)  # every wait is a deadlock guard, never a criterion
    page.add_init_script(WATCH_IMAGES)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def open_page(browser, url: str):
    page, errors = new_page(browser)
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("#decoded[data-z]", state="attached")  # the first decode is in
    return page, errors


def image_faults(page) -> list[str]:
    """What the frame watcher saw, and the <img>s now: none shown without a src, none broken."""
    now = page.evaluate(
        """() => Array.from(document.images).filter((img) =>
            (img.checkVisibility() && !img.getAttribute("src")) ||
            (img.getAttribute("src") && img.complete && img.naturalWidth === 0)
        ).map((img) => img.id)"""
    )
    return page.evaluate("imageFaults") + [f"#{name} now" for name in now]


def decoded_pixels(page, selector: str = "#decoded") -> list[int]:
    """The pixels of a loaded <img>, read back through a canvas (waiting while it loads)."""
    deadline = time.monotonic() + GUARD_MS / 1000
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
    page.wait_for_function("old => document.querySelector('#decoded').dataset.z !== old", arg=old)
    return page.get_attribute("#decoded", "data-z")


def click_map(page, fx: float, fy: float) -> None:
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])


def test_map_click_drag_sample_interpolate_and_draw(browser, runs):
    with Server(runs["plain"]) as server:
        page, errors = open_page(browser, server.url)
        assert "2-d latent" in page.text_content("#about")
        assert page.text_content("#draw-title") == "Draw a digit"
        assert "Dots are test images' posterior means" in page.text_content("#map-hint")
        assert not page.is_visible("#pen")  # a grey run draws in white
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
        page.wait_for_function("document.querySelector('#score').textContent.includes('nats')")
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
        assert errors == [] and image_faults(page) == []
        page.close()


def test_sliders_and_label_picker_of_a_conditional_model(browser, runs):
    with Server(runs["conditional"]) as server:
        page, errors = open_page(browser, server.url)
        assert page.locator("#sliders input").count() == 4
        ranges = page.eval_on_selector_all(
            "#sliders input", "sliders => sliders.map((s) => [Number(s.min), Number(s.max)])"
        )
        # the run's class prior: the least 0.1% and the greatest 99.9% quantile over the z_k
        lows, highs = open_run(runs["conditional"]).prior.quantile(np.array([0.001, 0.999]))
        assert ranges == [pytest.approx([lows.min(), highs.max()], abs=1e-4)] * 4
        assert page.is_visible("#label")
        first_z = page.get_attribute("#decoded", "data-z")
        before = decoded_pixels(page)
        page.select_option("#label", "7")
        deadline = time.monotonic() + GUARD_MS / 1000
        while decoded_pixels(page) == before:
            assert time.monotonic() < deadline, "the label picker did not change the image"
            time.sleep(0.1)
        slider = page.locator("#sliders input").nth(2)
        slider.fill("2.5")
        z = wait_for_new_z(page, first_z)
        assert z.split(",")[2] == "2.5000"
        page.screenshot(path=ARTIFACTS / "04-conditional-sliders.png", full_page=True)
        assert page.text_content("#axis-u") == "principal axis 1 of E[z|x] →"
        assert page.text_content("#axis-v") == "principal axis 2 of E[z|x] →"
        assert page.locator("#sliders .dim").all_text_contents() == ["z₁", "z₂", "z₃", "z₄"]
        assert errors == [] and image_faults(page) == []
        page.close()


def test_the_legend_matches_the_dots_and_the_axes_are_named(browser, runs):
    with Server(runs["plain"]) as server:
        page, errors = open_page(browser, server.url)
        labels = page.evaluate("state.map.labels")
        legend = page.locator("#legend li")
        assert legend.all_text_contents() == [str(v) for v in sorted(set(labels))]
        assert legend.count() == 10  # mnist-small's test set has every digit
        assert page.text_content("#axis-u") == "z₁ →"
        assert page.text_content("#axis-v") == "z₂ →"
        # per label, a dot standing alone (no other dot, marker or axis line within reach):
        # its centre pixel is the legend swatch's colour at the swatch's opacity over white
        seen = page.evaluate(
            """() => {
                const c = document.getElementById("map"), ctx = c.getContext("2d");
                const at = state.map.points.map(([u, v]) => toCanvas(u, v));
                const [ox, oy] = toCanvas(0, 0), [zx, zy] = toCanvas(...positionOf(state.z));
                const alone = (p, i) => Math.abs(p[0] - ox) > 3 && Math.abs(p[1] - oy) > 3 &&
                    Math.hypot(p[0] - zx, p[1] - zy) > 12 &&
                    at.every((q, j) => j === i || Math.max(Math.abs(p[0] - q[0]),
                                                           Math.abs(p[1] - q[1])) > 4);
                const seen = {};
                at.forEach((p, i) => {
                    const l = state.map.labels[i];
                    if (l in seen || !alone(p, i)) return;
                    const px = ctx.getImageData(Math.floor(p[0]), Math.floor(p[1]), 1, 1).data;
                    seen[l] = Array.from(px.slice(0, 3));
                });
                return seen;
            }"""
        )
        swatches = page.evaluate(
            """() => Array.from(document.querySelectorAll("#legend li")).map((li) => {
                const style = getComputedStyle(li.querySelector(".swatch"));
                return [li.dataset.label, style.backgroundColor, Number(style.opacity)];
            })"""
        )
        assert len(seen) == 10, seen
        for label, colour, opacity in swatches:
            rgb = [int(v) for v in colour.removeprefix("rgb(").removesuffix(")").split(",")]
            want = [round(opacity * v + (1 - opacity) * 255) for v in rgb]
            got = seen[label]
            assert all(abs(g - w) <= 2 for g, w in zip(got, want, strict=True)), (label, got, want)
        page.locator("#map").screenshot(path=ARTIFACTS / "05-map-legend.png")
        assert errors == [] and image_faults(page) == []
        page.close()


def drawn_image(body: str) -> np.ndarray:
    """The pixels of the image in an /api/analyse JSON body (a PNG data URL), (H, W, 3)."""
    from PIL import Image

    payload = json.loads(body)["image"].split(",", 1)[1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def test_a_colour_run_is_spoken_of_in_its_own_words(browser, clothes):
    with Server(clothes) as server:
        page, errors = open_page(browser, server.url)
        labels = page.evaluate("state.map.labels")
        legend = page.locator("#legend li").all_text_contents()
        assert legend == [NAMES[v] for v in sorted(set(labels))]
        assert page.locator("#label option").all_text_contents() == list(NAMES)
        tags = "#legend b, #legend i, #label b, #label i, #about b"
        assert page.locator(tags).count() == 0  # the names are text, never markup
        assert page.text_content("#draw-title") == "Draw or upload an image"
        hint = page.text_content("#map-hint")
        assert "Dots are validation images' posterior means" in hint and "test" not in hint
        assert "clothes" in page.text_content("#about")
        assert "32×32" in page.text_content("#upload-what")

        # draw in red: the page sends a 32×32 colour image and shows a 32×32 reconstruction
        page.select_option("#label", "1")
        page.fill("#pen", "#ff0000")
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.post_data) if "/api/analyse" in r.url else 0)
        page.locator("#draw").scroll_into_view_if_needed()
        canvas = page.locator("#draw").bounding_box()
        x0, y0 = canvas["x"], canvas["y"]
        page.mouse.move(x0 + 60, y0 + 140)
        page.mouse.down()
        page.mouse.move(x0 + 220, y0 + 140, steps=10)
        page.mouse.up()
        page.click("#read")
        page.wait_for_function("document.querySelector('#score').textContent.includes('nats')")
        image = drawn_image(sent[-1])
        assert image.shape == (32, 32, 3)
        red = (image[..., 0] > 200) & (image[..., 1] < 60) & (image[..., 2] < 60)
        assert red.sum() > 20 and json.loads(sent[-1])["label"] == 1
        assert len(decoded_pixels(page, "#reconstruction")) == 32 * 32
        page.screenshot(path=ARTIFACTS / "07-colour-names.png", full_page=True)
        assert errors == [] and image_faults(page) == []
        page.close()


def test_no_broken_image_while_the_images_load(browser, runs):
    """Each image route is held until the test lets it go, so the loading states are seen for
    certain: a placeholder, never an <img> without a src or a broken one."""
    with Server(runs["plain"]) as server:
        page, errors = new_page(browser)
        held = []

        def hold(pattern: str) -> None:
            page.route(pattern, lambda route: held.append(route))

        def release() -> None:
            deadline = time.monotonic() + GUARD_MS / 1000  # a deadlock guard only
            while not held:
                assert time.monotonic() < deadline, "the request never came"
                page.wait_for_timeout(20)  # lets Playwright deliver the route
            held.pop().continue_()
            page.unroute_all()
            assert not held

        hold("**/api/decode?*")
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        assert page.is_visible("#decoded-wait") and not page.is_visible("#decoded")
        assert page.get_attribute("#decoded", "src") is None
        page.screenshot(path=ARTIFACTS / "06-loading.png", full_page=True)
        assert image_faults(page) == []
        release()
        page.wait_for_selector("#decoded[data-z]", state="visible")
        assert not page.is_visible("#decoded-wait")

        hold("**/api/interpolate?*")
        page.click("#set-a")
        click_map(page, 0.8, 0.2)
        page.click("#set-b")
        page.click("#interpolate")
        assert not page.is_visible("#strip")
        assert image_faults(page) == []
        release()
        page.wait_for_selector("#strip", state="visible")

        hold("**/api/analyse")
        page.click("#read")
        page.wait_for_function("document.querySelector('#score').textContent === 'reading…'")
        assert not page.is_visible("#reconstruction")
        assert image_faults(page) == []
        release()
        page.wait_for_selector("#reconstruction", state="visible")
        assert len(decoded_pixels(page, "#reconstruction")) == 28 * 28
        assert errors == [] and image_faults(page) == []
        page.close()
