"""Ark and Kling jobs on the real stack: Redis, a Celery worker, SeaweedFS and the simulator.

Also the Ark adapter's cancel and the Kling adapter's reconcile against the real simulator
process (the pipeline does not call them yet).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx

from config.providers import ApiKey
from tests.support.live import KEYS, LiveStack
from workers.domain.jobs import JobSpec, ProviderStatus, State
from workers.providers.ark import ArkProvider
from workers.providers.kling import KlingProvider

ARK_KEY_ID, KLING_KEY_ID = "SIM_ARK_KEY", "SIM_KLING_KEY"


def _key(key_id: str) -> ApiKey:
    return ApiKey(id=key_id, secret=KEYS[key_id])


def _assert_mirrored(live: LiveStack, record: Any, *, cover: bool) -> None:
    """The job succeeded and S3 holds exactly the simulator's bytes."""
    assert record.state == State.SUCCEEDED, record.error
    expected = live.sim("GET", f"/_sim/tasks/{record.provider_task_id}/sha256")
    assert record.result is not None
    video = record.result["video"]
    assert video["key"] == f"videos/{record.id}/video.mp4"
    assert (video["sha256"], video["size"]) == (expected["video"], expected["video_size"])
    if cover:
        assert record.result["cover"]["sha256"] == expected["cover"]
    else:
        assert "cover" not in record.result


def test_ark_text_and_image_jobs_end_in_s3_with_the_simulators_bytes(
    idle_stack: LiveStack,
) -> None:
    # Given a text job, and an image job asking for the last frame (Ark's only cover)
    live = idle_stack
    text = {
        "provider": "ark",
        "model": "doubao-seedance-1-0-pro-250528",
        "prompt": "a paper boat in the rain",
        "duration": 5,
        "seed": 42,
        "options": {"resolution": "720p", "ratio": "16:9"},
    }
    image = {
        "provider": "ark",
        "model": "doubao-seedance-1-0-lite-i2v",
        "image": f"{live.sim_url}/_sim/image.png",
        "options": {"return_last_frame": True},
    }
    # When both are enqueued and finish
    ids = [live.client.enqueue(text).id, live.client.enqueue(image).id]
    text_done, image_done = sorted(live.wait_all(ids), key=lambda r: ids.index(r.id))
    # Then both videos are in S3, and the last frame became the image job's cover
    _assert_mirrored(live, text_done, cover=False)
    _assert_mirrored(live, image_done, cover=True)
    assert str(text_done.provider_task_id).startswith("cgt-")
    assert live.sim_stats()["submissions_by_key"] == {"sim-key-ark-test": 2}


def test_kling_text_and_image_jobs_end_in_s3_with_the_simulators_bytes(
    idle_stack: LiveStack,
) -> None:
    # Given a text job with sound (v2.6) and a first+last frame job sent as data URIs
    live = idle_stack
    png = httpx.get(f"{live.sim_url}/_sim/image.png", timeout=10).content
    data_uri = "data:image/png;base64," + base64.b64encode(png).decode()
    text = {
        "provider": "kling",
        "model": "kling-v2-6",
        "prompt": "a paper boat in the rain",
        "duration": 5,
        "with_audio": True,
        "options": {"mode": "std", "aspect_ratio": "16:9"},
    }
    image = {"provider": "kling", "model": "kling-v2-1", "image": [data_uri, data_uri]}
    # When both are enqueued and finish
    ids = [live.client.enqueue(text).id, live.client.enqueue(image).id]
    records = live.wait_all(ids)
    # Then both videos are in S3 (Kling has no cover), each under the family it was made in
    for record in records:
        _assert_mirrored(live, record, cover=False)
    stats = live.sim_stats()
    # And the simulator saw each job id once, as external_task_id, from the access key
    assert stats["request_ids"] == dict.fromkeys(ids, 1)
    assert stats["submissions_by_key"] == {"sim-kling-access": 2}


def test_ark_cancel_frees_a_queued_task_but_not_a_running_one(idle_stack: LiveStack) -> None:
    # Given the Ark adapter talking to the real simulator, with 6 s generations
    live = idle_stack
    live.set_sim(gen_time_s=6.0, gen_jitter_s=0.0)
    key = _key(ARK_KEY_ID)
    spec = JobSpec(provider="ark", model="doubao-seedance-1-0-pro-250528", prompt="p")
    with httpx.Client() as client:
        ark = ArkProvider(live.client.catalogue.get("ark"), client)
        # When a task is cancelled while queued
        queued = ark.submit("job-cancel-1", spec, key)
        assert ark.cancel(queued, key) is True
        # Then it reports cancelled and no longer counts in flight
        assert ark.poll(queued, key).status is ProviderStatus.CANCELLED
        assert live.sim_stats()["in_flight_by_key"]["sim-key-ark-test"] == 0
        # When a task is cancelled once it runs
        running = ark.submit("job-cancel-2", spec, key)
        deadline = time.monotonic() + 5
        while ark.poll(running, key).status is not ProviderStatus.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # Then the cancel is not confirmed and the task still counts
        assert ark.cancel(running, key) is False
        assert live.sim_stats()["in_flight_by_key"]["sim-key-ark-test"] == 1


def test_kling_reconcile_finds_a_submitted_task_by_job_id(idle_stack: LiveStack) -> None:
    live = idle_stack
    key = _key(KLING_KEY_ID)
    with httpx.Client() as client:
        kling = KlingProvider(live.client.catalogue.get("kling"), client)
        task = kling.submit(
            "job-reconcile-1", JobSpec(provider="kling", model="kling-v1", prompt="p"), key
        )
        assert kling.reconcile("job-reconcile-1", key) == task
        assert kling.reconcile("job-never-submitted", key) is None
