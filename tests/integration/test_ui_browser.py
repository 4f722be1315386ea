"""The dashboard (``/ui``) in a real browser against the live stack: log in through the form,
watch enqueued jobs change state without a reload, play a mirrored video, cancel a queued job
from its page, and check one token never sees another's jobs.

Headless Debian Chromium driven by Playwright (``tests.support.browser``; skipped without
``/usr/bin/chromium``). A screenshot of each page is written to ``.artifacts/ui/``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.support import browser as ui
from tests.support.live import API_TOKEN, OTHER_TOKEN, LiveStack

pytestmark = ui.needs_chromium

FLASH = {"provider": "zhipu", "model": "cogvideox-flash"}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with ui.chromium() as browser:
        yield browser


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    context = ui.new_context(chromium)
    yield context
    context.close()


def enqueue(live: LiveStack, token: str, prompt: str, **spec: Any) -> dict[str, Any]:
    """A job sent through the HTTP API with ``token``, as a producer sends it."""
    answer = httpx.post(
        f"{live.api_url}/v1/jobs",
        json={**FLASH, "prompt": prompt, **spec},
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    job: dict[str, Any] = answer.json()
    return job


def api_state(live: LiveStack, token: str, job_id: str) -> str:
    answer = httpx.get(
        f"{live.api_url}/v1/jobs/{job_id}",
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )
    answer.raise_for_status()
    state: str = answer.json()["state"]
    return state


def card_state(page: Page, job_id: str) -> str | None:
    card = page.locator(f'a.job-card[data-job-id="{job_id}"]')
    return card.get_attribute("data-state", timeout=1000) if card.count() else None


def logged_in(context: BrowserContext, live: LiveStack, token: str = API_TOKEN) -> Page:
    page = context.new_page()
    ui.login(page, live.api_url, token)
    ui.wait_ready(page)
    return page


def test_login_goes_through_the_form_and_sets_a_strict_http_only_cookie(
    live: LiveStack, context: BrowserContext
) -> None:
    # Given no session: the dashboard sends the browser to the login form
    page = context.new_page()
    page.goto(f"{live.api_url}/ui")
    assert "/ui/login" in page.url
    assert page.locator("input#token").get_attribute("type") == "password"
    ui.screenshot(page, "login")
    # When a wrong token is sent, the form comes back with an error naming the problem
    page.fill("input#token", "not-a-token")
    with page.expect_navigation() as sent:
        page.click("button#login-submit")
    response = sent.value
    assert response is not None
    assert response.status == 401
    assert page.locator("#login-error").inner_text().strip()
    assert not [c for c in context.cookies() if c["name"] == "vq_session"]
    # When the right token is sent, the jobs page opens with a session cookie
    page.fill("input#token", API_TOKEN)
    with page.expect_navigation():
        page.click("button#login-submit")
    assert page.url.endswith("/ui/jobs"), page.url
    ui.wait_ready(page)
    [cookie] = [c for c in context.cookies() if c["name"] == "vq_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    for nav in ("a#nav-jobs", "a#nav-queue", "button#logout"):
        assert page.locator(nav).count() == 1, nav
    # And logging out ends the session
    with page.expect_navigation():
        page.click("button#logout")
    page.goto(f"{live.api_url}/ui/jobs")
    assert "/ui/login" in page.url


def test_jobs_appear_and_change_state_live_until_succeeded(
    idle_stack: LiveStack, context: BrowserContext
) -> None:
    # Given the jobs page, open and connected to the live stream
    live = idle_stack
    page = logged_in(context, live)
    page.wait_for_selector('#live[data-connected="true"]')
    first_load = ui.loads(page)
    # When jobs are enqueued through the API
    tag = uuid.uuid4().hex[:8]
    ids = [enqueue(live, API_TOKEN, f"ui live {tag} #{i}")["id"] for i in range(3)]
    # Then their cards appear, and are seen in at least one state before succeeded
    seen: dict[str, set[str]] = {job_id: set() for job_id in ids}

    def all_succeeded() -> bool:
        for job_id in ids:
            state = card_state(page, job_id)
            if state is not None:
                seen[job_id].add(state)
        return all("succeeded" in states for states in seen.values())

    ui.wait_until(all_succeeded, 60, f"cards of {ids} to reach succeeded: {seen}")
    assert ui.loads(page) == first_load, "the page reloaded instead of updating live"
    assert all(len(states) >= 2 for states in seen.values()), seen
    for job_id in ids:
        card = page.locator(f'a.job-card[data-job-id="{job_id}"]')
        assert card.get_attribute("href") == f"/ui/jobs/{job_id}"
        for part in ("span.state-badge", ".provider-model", ".prompt", ".age", ".duration"):
            assert card.locator(part).count() == 1, part
        assert "cogvideox-flash" in card.locator(".provider-model").inner_text()
        assert tag in card.locator(".prompt").inner_text()
        assert api_state(live, API_TOKEN, job_id) == "succeeded"
    page.wait_for_selector(f'a.job-card[data-job-id="{ids[0]}"] img.cover')
    ui.screenshot(page, "jobs")


def test_a_succeeded_job_page_plays_its_mirrored_video(
    idle_stack: LiveStack, context: BrowserContext
) -> None:
    # Given a job that succeeded (its video mirrored into S3)
    live = idle_stack
    job_id = enqueue(live, API_TOKEN, "ui video: a paper boat on a pond")["id"]
    [record] = live.wait_all([job_id], timeout_s=60)
    assert record.state.value == "succeeded"
    # When its page is opened
    page = logged_in(context, live)
    page.goto(f"{live.api_url}/ui/jobs/{job_id}")
    ui.wait_ready(page)
    # Then the player has loaded the mirrored file far enough to show frames
    page.wait_for_function(
        "() => document.querySelector('video#player').readyState >= 2", timeout=20_000
    )
    video = page.evaluate(
        """() => { const v = document.querySelector('video#player');
                   return {ready: v.readyState, duration: v.duration, width: v.videoWidth,
                           error: v.error && v.error.code, src: v.currentSrc}; }"""
    )
    assert video["ready"] >= 2 and video["duration"] > 0, video
    assert video["width"] > 0 and video["error"] is None, video
    assert page.locator("#job-state").get_attribute("data-state") == "succeeded"
    assert page.locator("a#download").get_attribute("href") == f"/v1/jobs/{job_id}/video"
    assert page.locator("ol#event-list > li").count() >= 3
    phases = page.locator("#timeline-bar .segment").evaluate_all(
        "nodes => nodes.map(n => n.dataset.phase)"
    )
    assert len(phases) >= 3, phases
    assert "a paper boat" in page.locator("pre#job-spec").inner_text()
    assert page.locator("button#cancel").is_hidden()
    # And it plays: frames are decoded and time advances (muted, as autoplay rules allow)
    played = page.evaluate(
        """async () => { const v = document.querySelector('video#player');
              v.muted = true; await v.play();
              while (v.currentTime < 0.5 && !v.ended) await new Promise(r => setTimeout(r, 50));
              v.pause();
              const frames = v.getVideoPlaybackQuality().totalVideoFrames;
              return {time: v.currentTime, frames: frames}; }"""
    )
    assert played["time"] >= 0.5 and played["frames"] > 0, played
    ui.screenshot(page, "job")


def test_a_queued_job_is_cancelled_from_its_page(
    idle_stack: LiveStack, context: BrowserContext
) -> None:
    # Given the three Zhipu slots busy with slow generations, and a fourth job waiting
    live = idle_stack
    live.set_sim(gen_time_s=5.0, gen_jitter_s=0)
    busy = [enqueue(live, API_TOKEN, f"ui cancel: busy {i}")["id"] for i in range(3)]
    waiting = enqueue(live, API_TOKEN, "ui cancel: a job that never runs")["id"]
    assert api_state(live, API_TOKEN, waiting) == "queued"
    page = logged_in(context, live)
    page.goto(f"{live.api_url}/ui/jobs/{waiting}")
    ui.wait_ready(page)
    assert page.locator("#job-state").get_attribute("data-state") == "queued"
    # When it is cancelled with the page's button (accepting the confirmation)
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.type)
        dialog.accept()

    page.on("dialog", accept)
    # (the session cookie alone, without the page's CSRF token, may not cancel it)
    refused = page.evaluate(
        f"() => fetch('/v1/jobs/{waiting}', {{method: 'DELETE'}})"
        ".then(async r => [r.status, (await r.json()).error.code])"
    )
    assert refused == [403, "csrf_failed"], refused
    assert api_state(live, API_TOKEN, waiting) == "queued"
    page.click("button#cancel")
    # Then the page shows it cancelled, as the API does, and it never reached the provider
    page.wait_for_selector('#job-state[data-state="cancelled"]')
    assert asked == ["confirm"]
    assert api_state(live, API_TOKEN, waiting) == "cancelled"
    assert page.locator("button#cancel").is_hidden()
    live.wait_all(busy, timeout_s=60)
    assert waiting not in live.sim_stats()["request_ids"]


def test_a_second_token_sees_none_of_the_first_tokens_jobs(
    live: LiveStack, chromium: Browser
) -> None:
    # Given a job of each token
    tag = uuid.uuid4().hex[:8]
    theirs = enqueue(live, API_TOKEN, f"ui private {tag}: the first token's job")["id"]
    ours = enqueue(live, OTHER_TOKEN, f"ui private {tag}: the second token's job")["id"]
    other = ui.new_context(chromium)
    try:
        page = logged_in(other, live, OTHER_TOKEN)
        # Then the second token's grid shows its own job, not the first token's
        page.wait_for_selector(f'a.job-card[data-job-id="{ours}"]')
        assert page.locator(f'a.job-card[data-job-id="{theirs}"]').count() == 0
        assert f"ui private {tag}: the first" not in page.content()
        # Nor does the other job's page show anything of it, and the API says 404
        page.goto(f"{live.api_url}/ui/jobs/{theirs}")
        page.wait_for_load_state("networkidle")
        assert "the first token's job" not in page.content()
        assert page.locator("video#player").count() == 0
        status = page.evaluate(f"fetch('/v1/jobs/{theirs}').then(r => r.status)")
        assert status == 404
        ui.screenshot(page, "job-of-another-token")
    finally:
        other.close()


def test_the_queue_page_shows_keys_and_charts(live: LiveStack, context: BrowserContext) -> None:
    page = logged_in(context, live)
    page.click("a#nav-queue")
    page.wait_for_url("**/ui/queue")
    ui.wait_ready(page)
    rows = page.locator("table#queue-table tr.key-row")
    providers = rows.evaluate_all("rows => rows.map(r => r.dataset.provider)")
    assert "zhipu" in providers, providers
    assert page.locator("table#tenant-table").count() == 1
    metrics = page.locator("div.chart").evaluate_all("nodes => nodes.map(n => n.dataset.metric)")
    assert {"finished", "detection_lag_s", "submit_delay_s", "throttled", "errors"} <= set(
        metrics
    ), metrics
    ui.screenshot(page, "queue")
