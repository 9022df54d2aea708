"""Take the README's screenshot of ``vaekit serve``: the explorer on a run, in headless Chromium.

    vaekit demo && python scripts/screenshot_explorer.py runs/demo docs/images/explorer.png

Starts the explorer on a free port, clicks the map, sets an interpolation, draws a "3" and reads
it, then saves a screenshot (the map with its legend and axis titles). Needs Playwright's Python
package and Chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from vaekit.serve.app import create_app
from vaekit.serve.explorer import Explorer
from vaekit.serve.server import BackgroundServer

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    server = BackgroundServer(create_app(Explorer.open(args.run)))
    with server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        box = page.locator("#map").bounding_box()

        def at(fx: float, fy: float) -> tuple[float, float]:
            return box["x"] + fx * box["width"], box["y"] + fy * box["height"]

        page.mouse.click(*at(0.15, 0.75))
        page.click("#set-a")
        page.mouse.click(*at(0.8, 0.3))
        page.click("#set-b")
        page.click("#interpolate")
        page.wait_for_selector("#strip:not([hidden])")
        page.mouse.click(*at(0.55, 0.4))
        page.locator("#draw").scroll_into_view_if_needed()
        canvas = page.locator("#draw").bounding_box()
        x0, y0 = canvas["x"], canvas["y"]
        stroke = [(80, 60), (170, 50), (200, 95), (140, 135), (205, 180), (170, 230), (80, 225)]
        page.mouse.move(x0 + stroke[0][0], y0 + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(x0 + x, y0 + y, steps=8)
        page.mouse.up()
        page.click("#read")
        page.wait_for_function("document.querySelector('#score').textContent.includes('nats')")
        page.wait_for_function("!inFlight")  # the last decode of the map click is on the page
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        print(f"wrote {args.out}: {page.text_content('#score')}")
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
