"""The new-api gateway's side of the adapter contract, and what only it does (wire-formats §3).

The HTTP seam is an ``httpx.MockTransport`` answering §3's examples (the OpenAI-style submit
answer and its older ``{"task_id","status"}`` shape, the ``{"code":"success","data":TaskDto}``
poll envelope, task and middleware errors); the last section runs the adapter against the
in-process simulator. What every adapter does alike runs over ``CONTRACT`` in
tests/unit/test_adapter_contract.py.

Over 300 lines because the gateway fronts five vendors: its bodies, error codes and validation
rules come in one table per vendor family, all of them the gateway's alone.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.support.adapter_contract import JOB_ID, answer, simulated
from tests.support.contracts.gateway import (
    BASE,
    CONTRACT,
    DTO,
    IMAGES,
    KEY,
    SATURATED,
    SEEDANCE,
    SUBMIT_OK,
    SUBMIT_OLD,
    TASK_ID,
    VENDOR_URL,
    envelope,
    task_error,
)
from workers.domain import errors
from workers.domain.errors import PermanentError, RetryableError, SubmitOutcomeUnknown
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.base import ProviderTask

C = CONTRACT

# docs/wire-formats.md §3: the submit answer of current builds, and the older documented shape.
# A TaskDto with every field §3 lists (Aug-2026 build).
P, R = PermanentError, RetryableError


def spec(**fields: Any) -> JobSpec:
    return C.spec(**fields)


def poll_with(body: Any, status: int = 200) -> Any:
    return C.provider(answer(status, body)).poll(C.task, KEY)


# --- submit -----------------------------------------------------------------------------------

CAMERA = {"type": "simple", "config": {"horizontal": 1.0, "vertical": 0, "zoom": 0.5}}
KLING, NEGATIVE = {"cfg_scale": 0.8, "camera_control": CAMERA}, {"negative_prompt": "blur"}
DOUBAO = {"resolution": "1080p", "camera_fixed": False}
# What a spec sets → the submit body, vendor fields in ``metadata`` (the prompt is "a cat").
BODIES = {
    "kling-metadata-and-job-id": (
        {"size": "1920x1080", "duration": 5, **NEGATIVE, "options": KLING},
        {
            "size": "1920x1080",
            "duration": 5,
            "metadata": {**KLING, **NEGATIVE, "external_task_id": JOB_ID},
        },
    ),
    "kling-first-and-last-frame": (
        {"model": "kling-v2-master", "image": IMAGES},
        {"image": IMAGES[0], "metadata": {"image_tail": IMAGES[1], "external_task_id": JOB_ID}},
    ),
    "vidu-seed-in-metadata": (
        {"model": "viduq1", "image": IMAGES[0], "seed": 0, "options": {"bgm": True}},
        {"image": IMAGES[0], "metadata": {"bgm": True, "seed": 0}},
    ),
    "doubao-images-and-generate-audio": (
        {"model": SEEDANCE, "image": IMAGES, "with_audio": True, "duration": 10, "options": DOUBAO},
        {"images": IMAGES, "duration": 10, "metadata": {**DOUBAO, "generate_audio": True}},
    ),
    "jimeng-no-metadata": ({"model": "jimeng_vgfm_t2v_l20"}, {}),
    "sora-seconds-and-input-reference": (
        {"model": "sora-2", "duration": 8, "size": "1280x720", "image": IMAGES[0]},
        {"input_reference": IMAGES[0], "size": "1280x720", "seconds": "8"},
    ),
    "unknown-model-options-as-metadata": (
        {"model": "hailuo-02", "options": {"prompt_optimizer": False}},
        {"metadata": {"prompt_optimizer": False}},
    ),
}


@pytest.mark.parametrize(("fields", "body"), BODIES.values(), ids=BODIES.keys())
def test_the_body_has_the_generic_fields_and_vendor_ones_in_metadata(
    fields: dict[str, Any], body: dict[str, Any]
) -> None:
    job = spec(**fields)
    assert C.body_sent(job) == {"model": job.model, "prompt": "a cat", **body}


@pytest.mark.parametrize(
    "body",
    [SUBMIT_OLD, {k: v for k, v in SUBMIT_OK.items() if k != "task_id"}],
    ids=["older-shape", "id-when-task-id-is-missing"],
)
def test_submit_reads_the_task_id_from_any_documented_shape(body: dict[str, Any]) -> None:
    assert C.provider(answer(200, body)).submit(JOB_ID, spec(), KEY) == C.task


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (
            500,
            task_error("do_request_failed", "upstream error"),
            SubmitOutcomeUnknown,
            errors.SUBMIT_UNKNOWN,
        ),
        (504, None, SubmitOutcomeUnknown, errors.SUBMIT_UNKNOWN),
        (
            429,
            task_error("fail_to_fetch_task", SATURATED),
            RetryableError,
            errors.CONCURRENCY_LIMITED,
        ),
    ],
    ids=["lost-upstream", "gateway-timeout", "saturated-group"],
)
def test_a_submit_is_judged_by_what_may_have_reached_the_upstream(
    status: int, body: Any, kind: type[Exception], code: str
) -> None:
    handler = answer(status, body, {"Retry-After": "3"})
    with pytest.raises(kind) as caught:
        C.provider(handler).submit(JOB_ID, spec(), KEY)
    assert caught.value.code == code  # type: ignore[attr-defined]
    if kind is RetryableError:
        assert caught.value.retry_after_s == 3.0  # type: ignore[attr-defined]


# --- poll -------------------------------------------------------------------------------------


def test_progress_is_read_from_its_percent_string() -> None:
    assert poll_with(envelope(progress="30%")).progress == 30.0
    assert poll_with(envelope(progress="")).progress is None


@pytest.mark.parametrize(
    "body",
    [
        {
            "code": "success",
            "data": {k: v for k, v in DTO.items() if k != "result_url"}
            | {"status": "SUCCESS", "fail_reason": VENDOR_URL},
        },
        {
            "code": "success",
            "data": {
                "task_id": TASK_ID,
                "status": "succeeded",
                "url": VENDOR_URL,
                "format": "mp4",
                "metadata": None,
                "error": None,
            },
        },
        {"task_id": TASK_ID, "status": "completed", "metadata": {"url": VENDOR_URL}},
    ],
    ids=["older-builds-in-fail-reason", "gemini-simple-shape", "flat-documented-shape"],
)
def test_the_video_url_is_found_wherever_a_build_puts_it(body: dict[str, Any]) -> None:
    result = poll_with(body)
    assert (result.status, result.video_url) == (ProviderStatus.SUCCEEDED, VENDOR_URL)


def test_success_without_any_url_falls_back_to_the_content_proxy() -> None:
    result = poll_with(envelope(status="SUCCESS", result_url="", fail_reason=""))
    assert result.video_url == f"{BASE}/v1/videos/{TASK_ID}/content"


def test_a_200_envelope_with_an_error_code_is_classified() -> None:
    with pytest.raises(PermanentError) as caught:
        poll_with({"code": "task_not_exist", "message": "task_not_exist", "data": None})
    assert caught.value.code == errors.PROVIDER_FAILED
    with pytest.raises(RetryableError):
        poll_with({"code": "get_task_failed", "message": "db down", "data": None})


# --- against the simulator --------------------------------------------------------------------


def test_a_sora_video_comes_through_the_gateways_proxy_which_needs_the_token() -> None:
    with simulated(C) as sim:
        task = sim.provider.submit(JOB_ID, spec(model="sora-2", image="https://a/1.png"), KEY)
        assert task.id.startswith("task_")
        sim.clock.advance(5)
        assert sim.provider.poll(task, KEY).progress == 50.0
        sim.clock.advance(5)
        done = sim.provider.poll(task, KEY)
        assert done.video_url and sim.client.get(done.video_url).status_code == 401
        video = sim.client.get(
            done.video_url, headers=sim.provider.download_headers(done.video_url, KEY)
        )
        expected = sim.client.get(f"/_sim/tasks/{task.id}/sha256").json()["video"]
        assert hashlib.sha256(video.content).hexdigest() == expected


def test_the_simulator_counts_kling_external_task_ids_and_refuses_a_repeat() -> None:
    with simulated(C) as sim:
        sim.provider.submit(JOB_ID, spec(), KEY)
        with pytest.raises(PermanentError):
            sim.provider.submit(JOB_ID, spec(), KEY)
        stats = sim.client.get("/_sim/stats").json()
        assert (stats["request_ids"], stats["duplicate_request_ids"]) == ({JOB_ID: 1}, 1)


def test_the_simulator_answers_an_unknown_task_with_task_not_exist() -> None:
    with simulated(C) as sim, pytest.raises(PermanentError) as caught:
        sim.provider.poll(ProviderTask(id="task_nope"), KEY)
    assert "task_not_exist" in caught.value.message
