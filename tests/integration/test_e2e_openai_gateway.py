"""The OpenAI and gateway adapters on the real stack: Redis, Celery, SeaweedFS, the simulator.

Each job goes through submit, polls and the mirror; the S3 object's sha256 must be the
simulator's. OpenAI's result is only reachable with the API key, so a succeeded job also proves
the worker sent the key to the content endpoint (and the simulator refuses it without one).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.support.live import KEYS, LiveStack
from workers.domain.jobs import JobRecord, State

PROMPT = "a paper boat in the rain"


def _demo_png_uri(live: LiveStack) -> str:
    image = httpx.get(f"{live.sim_url}/_sim/image.png", timeout=10)
    image.raise_for_status()
    return "data:image/png;base64," + base64.b64encode(image.content).decode()


def _run(live: LiveStack, specs: list[dict[str, Any]]) -> list[JobRecord]:
    ids = [live.client.enqueue(spec).id for spec in specs]
    by_id = {record.id: record for record in live.wait_all(ids, timeout_s=60)}
    return [by_id[job_id] for job_id in ids]


def _assert_mirrored(live: LiveStack, done: JobRecord, *, cover: bool) -> None:
    """Succeeded, with the simulator's exact bytes in S3 (video, and the cover if any)."""
    assert done.state == State.SUCCEEDED, done.error
    assert done.provider_task_id and done.result is not None
    expected = live.sim("GET", f"/_sim/tasks/{done.provider_task_id}/sha256")
    video = done.result["video"]
    assert video["key"] == f"videos/{done.id}/video.mp4"
    assert (video["sha256"], video["size"]) == (expected["video"], expected["video_size"])
    if cover:
        assert done.result["cover"]["sha256"] == expected["cover"]
    else:
        assert "cover" not in done.result


def test_openai_jobs_are_mirrored_with_the_key_sent_to_the_content_endpoint(
    idle_stack: LiveStack,
) -> None:
    # Given the live stack, a text-to-video job and an image-to-video job (a data: URI image,
    # which goes as a multipart file upload)
    live = idle_stack
    text = {"provider": "openai", "model": "sora-2", "prompt": PROMPT, "duration": 4}
    image = text | {"image": _demo_png_uri(live), "size": "1280x720"}
    # When both run
    records = _run(live, [text, image])
    # Then both succeed with the simulator's bytes, cover (thumbnail) included
    for done in records:
        _assert_mirrored(live, done, cover=True)
        assert done.provider_task_id and done.provider_task_id.startswith("video_")
    # And the content endpoint refuses a download without the key
    content = f"{live.sim_url}/openai/v1/videos/{records[0].provider_task_id}/content"
    assert httpx.get(content, timeout=10).status_code == 401
    stats = live.sim_stats()
    assert stats["submissions_by_key"] == {KEYS["SIM_OPENAI_KEY"]: 2}
    assert (stats["downloads"], stats["cover_downloads"]) == (2, 2)
    assert stats["request_ids"] == {}  # OpenAI takes no idempotency id


def test_gateway_jobs_are_mirrored_from_vendor_urls_and_the_content_proxy(
    idle_stack: LiveStack,
) -> None:
    # Given a Kling text-to-video job, a Vidu image-to-video job (an http image URL) and a Sora
    # job, whose result only the gateway's authenticated content proxy serves
    live = idle_stack
    kling = {"provider": "gateway", "model": "kling-v1", "prompt": PROMPT, "duration": 5}
    vidu = {
        "provider": "gateway",
        "model": "viduq1",
        "prompt": PROMPT,
        "image": f"{live.sim_url}/_sim/image.png",
        "seed": 7,
    }
    sora = {"provider": "gateway", "model": "sora-2", "prompt": PROMPT, "duration": 4}
    # When the three run
    records = _run(live, [kling, vidu, sora])
    # Then all succeed with the simulator's bytes (the gateway hands out no cover)
    for done in records:
        _assert_mirrored(live, done, cover=False)
        assert done.provider_task_id and done.provider_task_id.startswith("task_")
    # And the Kling job carried its job id upstream as external_task_id
    stats = live.sim_stats()
    assert stats["request_ids"] == {records[0].id: 1}
    assert stats["submissions_by_key"] == {KEYS["SIM_GATEWAY_KEY"]: 3}
    assert stats["downloads"] == 3
    proxy = f"{live.sim_url}/gateway/v1/videos/{records[2].provider_task_id}/content"
    assert httpx.get(proxy, timeout=10).status_code == 401
