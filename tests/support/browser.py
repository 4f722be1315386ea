"""A real browser for the dashboard's tests: Debian's Chromium driven by Playwright.

Playwright's own browser downloads (``playwright install``) are not used: the tests drive the
system's ``/usr/bin/chromium`` (``.ci/run`` installs it) and are skipped when it is missing.
Screenshots and figures go to ``.artifacts/ui/`` in the repository root (gitignored), where a
person can look at them after a run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

CHROMIUM: Final = Path("/usr/bin/chromium")
ARGS: Final = [
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ARTIFACTS: Final = Path(__file__).resolve().parents[2] / ".artifacts" / "ui"
VIEWPORT: Final = ViewportSize(width=1280, height=900)

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)

# Runs before any script of every page: records when ``document.body.dataset.ready`` first
# becomes "1" (performance.now(), the same clock as the paint entries), and counts page loads
# in sessionStorage so a test can tell a live update from a reload.
_READY_PROBE: Final = """
(() => {
  const loads = Number(sessionStorage.getItem('vq-test-loads') || '0') + 1;
  sessionStorage.setItem('vq-test-loads', String(loads));
  window.__vqLoads = loads;
  const seen = () => {
    if (window.__vqReadyAt === undefined && document.body && document.body.dataset.ready === '1') {
      window.__vqReadyAt = performance.now();
    }
  };
  new MutationObserver(seen).observe(document, {
    subtree: true, childList: true, attributes: true, attributeFilter: ['data-ready'],
  });
})();
"""


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for the length of the block."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: Browser) -> BrowserContext:
    """A fresh profile (no cookies) with the ready probe installed in every page."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(_READY_PROBE)
    context.set_default_timeout(15_000)
    return context


def login(page: Page, base_url: str, token: str, next_path: str = "/ui/jobs") -> None:
    """Sign in through the dashboard's form and wait until it lands on ``next_path``."""
    page.goto(f"{base_url}/ui/login?next={next_path}")
    page.fill("input#token", token)
    with page.expect_navigation():
        page.click("button#login-submit")
    assert page.url.endswith(next_path), page.url


def wait_ready(page: Page, timeout_s: float = 15) -> None:
    """Wait until the page says its first render is done (``body[data-ready="1"]``).

    Predicates are given as functions: Playwright ``eval``s a bare expression, which the
    dashboard's Content-Security-Policy (no ``unsafe-eval``) refuses."""
    page.wait_for_function(
        "() => document.body && document.body.dataset.ready === '1'", timeout=timeout_s * 1000
    )


def loads(page: Page) -> int:
    """How many documents this tab has loaded (the ready probe counts them)."""
    count: int = page.evaluate("window.__vqLoads")
    return count


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG of ``page`` as ``.artifacts/ui/{name}.png``; returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def paint_timings(page: Page) -> dict[str, float | None]:
    """Milliseconds from navigation start to the first contentful paint and to ``ready``."""
    figures: dict[str, float | None] = page.evaluate(
        """() => {
          const fcp = performance.getEntriesByName('first-contentful-paint')[0];
          const nav = performance.getEntriesByType('navigation')[0];
          return {
            first_contentful_paint_ms: fcp ? fcp.startTime : null,
            ready_ms: window.__vqReadyAt === undefined ? null : window.__vqReadyAt,
            dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
          };
        }"""
    )
    return figures


def write_json(name: str, data: Any) -> Path:
    """``data`` as ``.artifacts/ui/{name}`` (pretty JSON); returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def wait_until(check: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; an ``AssertionError`` naming
    ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval_s)
    return found
