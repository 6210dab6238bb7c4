"""The statistics page in a real browser: Debian's Chromium, headless, driven by Playwright.

Playwright's own browser download cannot be relied on (its host may be unreachable), so the system's Chromium
is used by path; `make test` installs it. Also a command: `python -m tests.support.browser PAGE.html SHOT.png [MAX_HEIGHT]`.
"""

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import sync_playwright

# Debian names the binary chromium; other systems chromium-browser or google-chrome.
_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    """Return the system Chromium's path; fail naming the package when it is missing."""
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Chromium: `make test` installs Debian's chromium package (apt-get install chromium)")


@dataclass
class Rendered:
    """What the browser saw of a page: its console errors, its charts' bar widths, its cards and tables."""

    errors: list[str] = field(default_factory=list)
    bars: dict[str, list[float]] = field(default_factory=dict)
    cards: int = 0
    tables: int = 0
    title: str = ""


def render(page_path: Path, screenshot: Path | None = None, max_height: int | None = None) -> Rendered:
    """Open a local page in headless Chromium with the network refused, measure its charts, and optionally screenshot it.

    The screenshot is of the whole page, or of its top `max_height` pixels.
    """
    seen = Rendered()
    with sync_playwright() as playwright:
        # Chromium refuses its sandbox to root, which test containers and CI runners often are.
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 900})
            # The page must be self-contained: any request beyond the file itself is refused and shows as an error.
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
            page.on("console", lambda message: seen.errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: seen.errors.append(str(error)))
            page.on("requestfailed", lambda request: seen.errors.append(f"request failed: {request.url}"))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            seen.title = page.title()
            # Measured as laid out, not as written: a bar the browser draws 0 wide is no mark.
            seen.bars = page.evaluate(
                """() => Object.fromEntries([...document.querySelectorAll('svg.chart')].map(svg =>
                       [svg.dataset.chart, [...svg.querySelectorAll('rect.bar')].map(bar => bar.getBoundingClientRect().width)]))"""
            )
            seen.cards = page.locator(".card").count()
            seen.tables = page.locator("section table").count()
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                height = page.evaluate("document.documentElement.scrollHeight")
                clip = {"x": 0, "y": 0, "width": 1180, "height": min(height, max_height or height)}
                page.screenshot(path=str(screenshot), full_page=True, clip=clip)
        finally:
            browser.close()
    return seen


if __name__ == "__main__":
    rendered = render(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
    print(f"{sys.argv[2]}: {rendered.cards} figures, {len(rendered.bars)} charts, console errors: {rendered.errors or 'none'}")
