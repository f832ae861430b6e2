"""The operator's page in a real headless Chromium: Playwright for Python driving Debian's `chromium`
(/usr/bin/chromium, installed by `make browser`; never a browser Playwright downloads), and axe-core
(vendored from npm into .local/vendor by `make browser`) for the accessibility check.

One call loads the page three ways: as a phone with JavaScript off (the page must say everything
without it; its text and a screenshot are kept), as a phone with JavaScript on (no horizontal scroll
of the page itself), and on a desktop with axe-core injected (WCAG 2.1 A/AA and best practices).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
VENDOR = ROOT / ".local" / "vendor"
PHONE: ViewportSize = {"width": 390, "height": 844}
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


class BrowserMissing(RuntimeError):
    pass


@dataclass
class PageCheck:
    url: str
    status: int
    text: str  # what a reader sees with JavaScript off
    load_ms: float
    page_width: int  # the document's width on a 390 px phone: > 390 means the page scrolls sideways
    violations: list[dict[str, Any]] = field(default_factory=list)  # axe-core's
    screenshot: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"url": self.url, "status": self.status, "load_ms": round(self.load_ms), "page_width": self.page_width,
                "axe_violations": [f"{v['id']} ({v['impact']}): {len(v['nodes'])} node(s)" for v in self.violations],
                "screenshot": self.screenshot}


def axe_script() -> Path:
    found = sorted(VENDOR.glob("axe-core-*/axe.min.js"))
    if not CHROMIUM.exists() or not found:
        raise BrowserMissing(f"{CHROMIUM} or axe-core under {VENDOR} is missing: run `make browser`")
    return found[-1]


def check_page(url: str, screenshot: Path | None = None) -> PageCheck:
    from playwright.sync_api import sync_playwright

    axe = axe_script()
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            phone = browser.new_context(java_script_enabled=False, viewport=PHONE, is_mobile=True)
            page = phone.new_page()
            started = time.monotonic()
            answer = page.goto(url, wait_until="load")
            load_ms = (time.monotonic() - started) * 1000
            text = page.inner_text("body")
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            scripted = browser.new_context(viewport=PHONE, is_mobile=True).new_page()
            scripted.goto(url, wait_until="load")
            width = int(scripted.evaluate("document.documentElement.scrollWidth"))
            desktop = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            desktop.goto(url, wait_until="load")
            desktop.add_script_tag(path=str(axe))
            result = desktop.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
        finally:
            browser.close()
    return PageCheck(url, answer.status if answer else 0, text, load_ms, width, list(result["violations"]),
                     str(screenshot) if screenshot else None)


def snapshot(api_url: str, out: Path) -> list[str]:
    """`make run`'s look at the operator's page: out/status-page.png beside the report, what the browser saw in
    out/status-page.json; returns what is wrong with the page (an accessibility violation, a sideways scroll)."""
    check = check_page(api_url + "/ops/status", out / "status-page.png")
    (out / "status-page.json").write_text(json.dumps(check.summary(), indent=2) + "\n")
    problems = [f"status page: axe {v}" for v in check.summary()["axe_violations"]]
    if check.status != 200 or check.page_width > PHONE["width"]:
        problems.append(f"status page: HTTP {check.status}, {check.page_width} px wide on a {PHONE['width']} px phone")
    return problems
