"""Provider callbacks on the real stack (docs/callbacks.md): the simulator calls back to the
API as Kling, Ark and the gateway's Kling, Vidu and Doubao families do; a callback makes
vidqueue poll the job at once, and a lost one costs at most the safety interval (6 s here).

The providers ``kling_cb``, ``ark_cb`` and ``gateway_cb`` of ``tests.support.live`` have
callbacks armed; the same kinds without the suffix do not.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.support.live import API_TOKEN, CALLBACK_SECRET, LiveStack
from workers.domain import callbacks
from workers.domain.jobs import JobRecord, State, parse_iso

PROMPT = "a kite over the dunes"
ARMED = [
    {"provider": "kling_cb", "model": "kling-v2-6", "prompt": PROMPT},
    {"provider": "ark_cb", "model": "doubao-seedance-1-0-pro-250528", "prompt": PROMPT},
    {"provider": "gateway_cb", "model": "kling-v1", "prompt": PROMPT, "duration": 5},
    {"provider": "gateway_cb", "model": "viduq1", "prompt": PROMPT},
    {"provider": "gateway_cb", "model": "doubao-seedance-1-0-pro-250528", "prompt": PROMPT},
]
SAFETY_S = 6.0


def _outcomes(live: LiveStack) -> Counter[str]:
    counts: Counter[str] = Counter()
    for provider in ("kling_cb", "ark_cb", "gateway_cb"):
        counts.update(live.client.deps.store.callback_counts(provider))
    return counts


def _run(live: LiveStack, specs: list[dict[str, Any]]) -> list[JobRecord]:
    ids = [live.client.enqueue(spec).id for spec in specs]
    return sorted(live.wait_all(ids, timeout_s=60), key=lambda r: ids.index(r.id))


def _seen_after_s(record: JobRecord) -> float:
    """From the submit to the poll that saw the provider finish."""
    assert record.submitted_at and record.provider_finished_at
    seen = parse_iso(record.provider_finished_at) - parse_iso(record.submitted_at)
    return seen.total_seconds()


def _running(live: LiveStack, spec: dict[str, Any]) -> str:
    """Enqueue a job and wait until the provider has it (state running)."""
    job_id = live.client.enqueue(spec).id
    deadline = time.monotonic() + 20
    while (record := live.client.get(job_id)) is None or record.state != State.RUNNING:
        assert time.monotonic() < deadline, record
        time.sleep(0.05)
    return job_id


def _callback(live: LiveStack, provider: str, job_id: str, token: str) -> httpx.Response:
    url = f"{live.api_url}{callbacks.ROUTE}/{provider}/{job_id}/{token}"
    return httpx.post(url, json={"task_status": "succeed"}, timeout=10)


def test_with_callbacks_each_job_is_polled_once_when_its_provider_says_so(
    idle_stack: LiveStack,
) -> None:
    # Given five jobs on the three kinds that call back (generations of ~1 s)
    live = idle_stack
    before = _outcomes(live)
    # When they run
    records = _run(live, ARMED)
    # Then each succeeded on one poll, brought forward by its final callback
    for record in records:
        assert record.state == State.SUCCEEDED, record.error
        assert record.callbacks_armed
        assert record.polls == 1, record
        assert _seen_after_s(record) < SAFETY_S * 0.9
    seen = _outcomes(live) - before
    assert seen["hastened"] == len(ARMED), seen
    assert seen["forged"] == 0
    assert live.sim_stats()["callbacks"]["sent"] >= len(ARMED)
    # And operators see them counted on /metrics
    metrics = httpx.get(f"{live.api_url}/metrics", timeout=10).text
    assert 'vidqueue_callbacks_total{outcome="hastened",provider="ark_cb"} ' in metrics


def test_with_every_callback_lost_the_safety_poll_still_finishes_each_job(
    idle_stack: LiveStack,
) -> None:
    # Given a provider that loses every callback
    live = idle_stack
    live.set_sim(callback_loss_rate=1.0)
    before = _outcomes(live)
    # When jobs run on each kind that calls back
    records = _run(live, ARMED[:3])
    # Then each still succeeds: seen by its safety poll, nothing brought forward
    for record in records:
        assert record.state == State.SUCCEEDED, record.error
        assert _seen_after_s(record) >= SAFETY_S * 0.85
    assert (_outcomes(live) - before)["hastened"] == 0
    assert live.sim_stats()["callbacks"]["lost"] >= len(records)


def test_duplicated_and_reordered_callbacks_change_nothing_but_counters(
    idle_stack: LiveStack,
) -> None:
    # Given a provider that sends every callback twice, newest first
    live = idle_stack
    live.set_sim(callback_dup_rate=1.0, callback_reorder=True)
    before = _outcomes(live)
    # When jobs run
    records = _run(live, ARMED[:2])
    # Then each succeeded on one poll: the duplicates found the poll out, or too soon
    for record in records:
        assert record.state == State.SUCCEEDED, record.error
        assert record.polls == 1, record
    seen = _outcomes(live) - before
    assert seen["hastened"] == len(records)
    assert seen["in_flight"] + seen["too_soon"] + seen["finished"] + seen["working"] >= 1


def test_forged_and_replayed_callbacks_change_nothing(idle_stack: LiveStack) -> None:
    # Given a job waiting on its safety poll (its callbacks lost), and a finished job
    live = idle_stack
    done = _run(live, [{"provider": "kling", "model": "kling-v2-6", "prompt": PROMPT}])[0]
    live.set_sim(callback_loss_rate=1.0, gen_time_s=30.0, gen_jitter_s=0)
    waiting = _running(live, ARMED[0])
    before = _outcomes(live)
    # When callbacks come with a wrong token, another job's token, or for another provider
    other = callbacks.token(CALLBACK_SECRET, "kling_cb", done.id)
    assert _callback(live, "kling_cb", waiting, "not-the-token").status_code == 404
    assert _callback(live, "kling_cb", waiting, other).status_code == 404
    right = callbacks.token(CALLBACK_SECRET, "kling_cb", waiting)
    assert _callback(live, "ark_cb", waiting, right).status_code == 404
    assert _callback(live, "nope", waiting, right).status_code == 404
    # Then nothing brought the waiting job's poll forward (HASTEN marks every job it moves),
    # and only counters moved
    assert "hastened" not in live.client.deps.store.fields(waiting)
    assert (_outcomes(live) - before)["forged"] == 3
    # And a valid callback for a job whose callbacks are not armed, or a finished one, is
    # answered 200 and changes nothing either
    done_token = callbacks.token(CALLBACK_SECRET, "kling", done.id)
    replay = _callback(live, "kling", done.id, done_token)
    assert replay.status_code == 200 and replay.json()["outcome"] == "not_armed"
    again = live.client.get(done.id)
    assert again is not None
    assert (again.state, again.polls, again.completed_at) == (
        done.state,
        done.polls,
        done.completed_at,
    )
    live.client.cancel(waiting)


def test_a_valid_callback_brings_a_long_wait_forward_without_a_second_chain(
    idle_stack: LiveStack,
) -> None:
    # Given a job whose callbacks were lost, waiting 6 s for its safety poll
    live = idle_stack
    live.set_sim(callback_loss_rate=1.0, gen_time_s=0.5, gen_jitter_s=0)
    job_id = _running(live, ARMED[1])
    time.sleep(1.0)  # the generation is over; the safety poll is ~5 s away
    # When the provider's callback finally gets through, twice
    token = callbacks.token(CALLBACK_SECRET, "ark_cb", job_id)
    first = _callback(live, "ark_cb", job_id, token).json()["outcome"]
    second = _callback(live, "ark_cb", job_id, token).json()["outcome"]
    # Then the job is polled now, once, and finishes well before its safety poll
    [done] = live.wait_all([job_id], timeout_s=30)
    assert (first, done.state) == ("hastened", State.SUCCEEDED)
    assert second in ("in_flight", "too_soon", "finished")
    assert done.polls == 1
    assert _seen_after_s(done) < SAFETY_S * 0.8


def test_a_flood_of_callbacks_is_refused_before_it_starves_the_api(
    idle_stack: LiveStack,
) -> None:
    # Given many senders hammering the callback route with forged callbacks
    live = idle_stack
    statuses: Counter[int] = Counter()
    # Until the limit refuses some (its burst drains at the API's rate minus the refill rate:
    # seconds on a busy machine), at least 3 s, at most 30 s.
    started = time.monotonic()

    def hammer() -> None:
        with httpx.Client(timeout=10) as http:
            while True:
                ran = time.monotonic() - started
                if ran > 30 or (ran > 3 and statuses[429]):
                    return
                url = f"{live.api_url}{callbacks.ROUTE}/kling_cb/some-job/forged"
                statuses[http.post(url, content=b"{}").status_code] += 1

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for thread in threads:
        thread.start()
    # When a producer reads its jobs meanwhile
    time.sleep(1.0)
    auth = {"authorization": f"Bearer {API_TOKEN}"}
    listing = httpx.get(f"{live.api_url}/v1/jobs?limit=5", headers=auth, timeout=10)
    health = httpx.get(f"{live.api_url}/healthz", timeout=10)
    for thread in threads:
        thread.join()
    # Then the producer was served, and the flood beyond the limit got 429s
    assert listing.status_code == 200 and health.status_code == 200
    assert set(statuses) <= {404, 429}
    assert statuses[429] > 0, statuses


def test_a_producers_own_provider_callback_is_refused_where_vidqueue_sets_it(
    live: LiveStack,
) -> None:
    auth = {"authorization": f"Bearer {API_TOKEN}"}
    spec = {**ARMED[0], "options": {"callback_url": "https://example.com/hook"}}
    answer = httpx.post(f"{live.api_url}/v1/jobs", json=spec, headers=auth, timeout=10)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["field"] == "options.callback_url"
    assert "vidqueue sets kling_cb's callback URL itself" in error["message"]


@pytest.mark.parametrize("provider", ["kling", "ark"])
def test_without_a_public_base_url_nothing_is_armed(live: LiveStack, provider: str) -> None:
    model = "kling-v2-6" if provider == "kling" else "doubao-seedance-1-0-pro-250528"
    [record] = _run(live, [{"provider": provider, "model": model, "prompt": PROMPT}])
    assert record.state == State.SUCCEEDED and not record.callbacks_armed
