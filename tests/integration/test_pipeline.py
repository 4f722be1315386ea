"""The whole path on the real stack: Redis, a Celery worker and beat, SeaweedFS, the simulator."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import httpx

from tests.support.live import LiveStack
from workers.domain.jobs import State

TEXT = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a paper boat in the rain"}


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _states_seen(live: LiveStack, job_id: str) -> list[str]:
    return [e["state"] for e in live.client.events(job_id) if e.get("state")]


def test_a_job_goes_from_queued_to_succeeded_with_its_video_in_s3(idle_stack: LiveStack) -> None:
    # Given the live stack and a text-to-video job with a 3 MB video
    live = idle_stack
    live.set_sim(video_bytes=3_000_000)
    # When it is enqueued and finishes
    job = live.client.enqueue(TEXT)
    assert job.state == State.QUEUED
    [done] = live.wait_all([job.id])
    # Then it went queued → submitting → running → mirroring → succeeded
    assert done.state == State.SUCCEEDED, done.error
    assert _states_seen(live, job.id) == [
        "queued",
        "submitting",
        "running",
        "mirroring",
        "succeeded",
    ]
    assert done.provider_task_id and done.polls >= 1 and done.attempts == 1
    assert done.submitted_at and done.provider_finished_at and done.completed_at
    # And the S3 object's bytes are the simulator's bytes, by sha256
    expected = live.sim("GET", f"/_sim/tasks/{done.provider_task_id}/sha256")
    assert done.result is not None
    video, cover = done.result["video"], done.result["cover"]
    assert video["key"] == f"videos/{job.id}/video.mp4"
    assert (video["sha256"], video["size"]) == (expected["video"], expected["video_size"])
    assert cover["key"] == f"videos/{job.id}/cover.png" and cover["sha256"] == expected["cover"]
    downloaded = httpx.get(video["url"], timeout=30)
    assert downloaded.status_code == 200
    assert hashlib.sha256(downloaded.content).hexdigest() == expected["video"]
    assert video["content_type"] == "video/mp4"


def test_forty_jobs_never_exceed_a_cap_of_three(idle_stack: LiveStack) -> None:
    # Given a provider capped at 3 per key, and a simulator that answers 429 above 3
    live = idle_stack
    live.set_sim(concurrency_limit=3, gen_time_s=0.4, gen_jitter_s=0.2, video_bytes=4096)
    # When 40 jobs are enqueued at once
    ids = [live.client.enqueue({**TEXT, "labels": {"n": str(i)}}).id for i in range(40)]
    records = live.wait_all(ids, timeout_s=120)
    # Then all succeed, the simulator never saw more than 3 in flight, and never said 429
    assert {r.state for r in records} == {State.SUCCEEDED}
    stats = live.sim_stats()
    assert stats["max_in_flight_by_key"]["sim-key-zhipu-test"] == 3
    assert stats["rate_limited_429"] == 0
    assert stats["submissions"] == 40


def test_a_provider_fail_ends_the_job_failed_with_an_error_code(idle_stack: LiveStack) -> None:
    live = idle_stack
    live.set_sim(fail_rate=1.0, gen_time_s=0.3)
    [done] = live.wait_all([live.client.enqueue(TEXT).id])
    assert done.state == State.FAILED
    assert done.error is not None and done.error.code == "provider_failed"
    assert done.result is None


def test_provider_5xx_on_polls_are_retried_until_the_job_succeeds(idle_stack: LiveStack) -> None:
    live = idle_stack
    # Six jobs at 70 %: a job the learned schedule polls only once still meets an error among
    # them (all six spared: 0.3 ** 6, under one run in a thousand).
    live.set_sim(poll_error_rate=0.7, gen_time_s=1.5, gen_jitter_s=0)
    ids = [live.client.enqueue(TEXT).id for _ in range(6)]
    records = live.wait_all(ids)
    assert {r.state for r in records} == {State.SUCCEEDED}
    events = [e["event"] for i in ids for e in live.client.events(i)]
    assert any("poll error: provider_unavailable" in e for e in events)


def test_a_job_past_its_deadline_fails_with_timeout(idle_stack: LiveStack) -> None:
    # Given a provider whose deadline (3 s) is shorter than the generation (6 s)
    live = idle_stack
    live.set_sim(gen_time_s=6.0, gen_jitter_s=0)
    [done] = live.wait_all([live.client.enqueue({**TEXT, "provider": "solo"}).id], 30)
    assert done.state == State.FAILED
    assert done.error is not None and done.error.code == "timeout"
    # And the slot is free again: the next job of that provider gets submitted
    live.set_sim(gen_time_s=0.3)
    [second] = live.wait_all([live.client.enqueue({**TEXT, "provider": "solo"}).id], 30)
    assert second.state == State.SUCCEEDED


def test_a_sigkilled_worker_loses_no_job_and_submits_none_twice(idle_stack: LiveStack) -> None:
    # Given 12 jobs running on worker1
    live = idle_stack
    live.set_sim(gen_time_s=2.0, gen_jitter_s=0.5)
    ids = [live.client.enqueue({**TEXT, "labels": {"n": str(i)}}).id for i in range(12)]
    # (first wave at the provider, its polls scheduled inside worker1; no submit under way,
    # since a submit cut off mid-request is rightly parked as submit_unknown, not re-sent)
    _wait_for(lambda: live.sim_stats()["submissions"] == 3, 10)
    time.sleep(0.3)
    # When worker1 is SIGKILLed mid-run and worker2 starts in its place
    live.stack.kill("worker1")
    live.stack.start_worker("worker2")
    try:
        records = live.wait_all(ids, timeout_s=150)
    finally:
        live.stack.stop("worker2")
        live.stack.start_worker("worker1")
    # Then every job succeeded, and the provider saw exactly one submission per job
    assert {r.state for r in records} == {State.SUCCEEDED}
    stats = live.sim_stats()
    assert [stats["request_ids"].get(i) for i in ids] == [1] * 12
    assert stats["duplicate_request_ids"] == 0
    assert stats["max_in_flight_by_key"]["sim-key-zhipu-test"] <= 3
