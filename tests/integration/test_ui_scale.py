"""The dashboard with 10,000 jobs in the store: how soon each page paints and is ready.

A stack of its own (``tests.support.crowded``: Redis, S3, API, no worker, so the jobs stay
queued) keeps the shared ``live`` stack small. The figures are printed (``pytest -s``) and
written to ``.artifacts/ui/timings.json``; nothing asserts on speed beyond a generous sanity
bound, because a loaded CI machine is slow for reasons of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.support import browser as ui
from tests.support.crowded import Crowded, crowded_stack

pytestmark = ui.needs_chromium

JOBS = 10_000
SANITY_S = 10.0  # not a speed target: a page this slow is broken, not slow


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crowded]:
    with crowded_stack(tmp_path_factory.mktemp("crowded"), JOBS) as stack:
        yield stack


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with ui.chromium() as browser:
        yield browser


@pytest.fixture
def session(chromium: Browser, crowded: Crowded) -> Iterator[BrowserContext]:
    """A browser profile logged in to the crowded stack."""
    context = ui.new_context(chromium)
    ui.login(context.new_page(), crowded.api_url, crowded.token)
    yield context
    context.close()


def open_and_time(context: BrowserContext, url: str, *, ready: bool = True) -> Page:
    """Open ``url`` in a new tab and wait for its first render (``ready``) or its load."""
    page = context.new_page()
    page.goto(url)
    if ready:
        ui.wait_ready(page, timeout_s=SANITY_S)
    else:
        page.wait_for_load_state("load")
    page.wait_for_function(
        "() => performance.getEntriesByName('first-contentful-paint').length > 0",
        timeout=SANITY_S * 1000,
    )
    return page


def test_each_page_paints_with_ten_thousand_jobs(
    crowded: Crowded, chromium: Browser, session: BrowserContext, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 10,000 queued jobs of this token
    assert len(crowded.job_ids) == JOBS
    middle = crowded.job_ids[JOBS // 2]
    pages = {
        "login": (f"{crowded.api_url}/ui/login", False),
        "jobs": (f"{crowded.api_url}/ui/jobs", True),
        "job": (f"{crowded.api_url}/ui/jobs/{middle}", True),
        "queue": (f"{crowded.api_url}/ui/queue", True),
    }
    figures: dict[str, dict[str, float | int | None]] = {}
    for name, (url, ready) in pages.items():
        # The login page is timed without a session, as a new visitor sees it
        context = ui.new_context(chromium) if name == "login" else session
        try:
            page = open_and_time(context, url, ready=ready)
            timing: dict[str, float | int | None] = dict(ui.paint_timings(page))
            timing["dom_nodes"] = page.evaluate("() => document.getElementsByTagName('*').length")
            if name == "jobs":
                timing["cards"] = page.locator("a.job-card").count()
            figures[name] = timing
            ui.screenshot(page, f"{name}-10k")
        finally:
            if context is not session:
                context.close()
    # Then every page rendered, the grid shows one page of cards (not all 10,000)
    for name in ("jobs", "job", "queue"):
        ready_ms = figures[name]["ready_ms"]
        assert isinstance(ready_ms, (int, float)) and ready_ms < SANITY_S * 1000, (
            name,
            figures[name],
        )
    cards = figures["jobs"]["cards"]
    assert isinstance(cards, int) and 0 < cards < JOBS
    report = {
        "jobs_in_store": JOBS,
        "fill_s": round(crowded.fill_s, 3),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pages": figures,
    }
    path = ui.write_json("timings.json", report)
    with capsys.disabled():
        print(f"\nfirst paint with {JOBS} jobs (ms from navigation start), also in {path}:")
        for name, timing in figures.items():
            fcp, done = timing["first_contentful_paint_ms"], timing["ready_ms"]
            print(f"  {name:6} first-contentful-paint {_ms(fcp)}  ready {_ms(done)}")


def test_the_grid_pages_through_ten_thousand_jobs(
    crowded: Crowded, session: BrowserContext
) -> None:
    # Given the first page of the grid
    page = open_and_time(session, f"{crowded.api_url}/ui/jobs")
    first = page.locator("a.job-card").evaluate_all("cards => cards.map(c => c.dataset.jobId)")
    assert first and set(first) <= set(crowded.job_ids)
    # When the next page is asked for
    page.click("button#next-page")
    page.wait_for_function(
        "(before) => { const c = document.querySelector('a.job-card');"
        " return c !== null && c.dataset.jobId !== before; }",
        arg=first[0],
    )
    # Then it holds other jobs of the same store, and the previous page comes back
    second = page.locator("a.job-card").evaluate_all("cards => cards.map(c => c.dataset.jobId)")
    assert second and not set(second) & set(first)
    assert set(second) <= set(crowded.job_ids)
    page.click("button#prev-page")
    page.wait_for_function(
        "(want) => { const c = document.querySelector('a.job-card');"
        " return c !== null && c.dataset.jobId === want; }",
        arg=first[0],
    )


def _ms(value: float | int | None) -> str:
    return "   n/a  " if value is None else f"{value:7.0f} ms"


def test_a_filter_narrows_the_grid_and_stays_in_the_url(
    crowded: Crowded, session: BrowserContext
) -> None:
    # Given the grid of 10,000 jobs of six models
    page = open_and_time(session, f"{crowded.api_url}/ui/jobs")
    # When the provider filter is set to kling
    page.select_option("select#filter-provider", "kling")
    page.wait_for_url("**provider=kling**")
    page.wait_for_function(
        "() => { const cards = [...document.querySelectorAll('a.job-card .provider-model')];"
        " return cards.length > 0 && cards.every(c => c.textContent.includes('kling-v2-6')); }"
    )
    # Then only Kling's jobs are shown, and a reload of the URL keeps the filter
    page.reload()
    ui.wait_ready(page)
    assert page.locator("select#filter-provider").input_value() == "kling"
    models = page.locator("a.job-card .provider-model").all_inner_texts()
    assert models and all("kling-v2-6" in text for text in models), models
