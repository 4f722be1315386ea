"""Ark's (Doubao Seedance) side of the adapter contract, and what only Ark does (§4).

The HTTP seam is an ``httpx.MockTransport`` answering the JSON examples of
docs/wire-formats.md §4; the last section runs the adapter against the simulator's Ark router
in-process. What every adapter does alike runs over ``CONTRACT`` in
tests/unit/test_adapter_contract.py.

Over 300 lines because Ark is the one format with a cancel (a DELETE confirmed by a GET), and
its validation table and the simulator's Ark refusals are long: all of it is Ark's alone.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from config.providers import ApiKey
from tests.support.adapter_contract import JOB_ID, PNG_URI, answer, simulated
from tests.support.contracts.ark import (
    CONTRACT,
    KEY,
    MODEL,
    RUNNING,
    SUCCEEDED,
    TASK_URL,
    TWO,
    error_body,
    poll_answer,
    roles,
)
from workers.domain import errors
from workers.domain.errors import PermanentError, RetryableError
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.ark import QUOTA_RETRY_S, ArkProvider

C = CONTRACT

# The §4 examples, verbatim where the document gives whole bodies.
P, R = PermanentError, RetryableError


def spec(**fields: Any) -> JobSpec:
    return C.spec(**fields)


def poll(body: Any, headers: dict[str, str] | None = None, status: int = 200) -> Any:
    return C.provider(answer(status, body, headers)).poll(C.task, KEY)


# --- submit: the body -------------------------------------------------------------------------

OPTIONS = {"resolution": "1080p", "ratio": "adaptive", "camera_fixed": True, "watermark": False}
OPTIONS |= {"return_last_frame": True, "callback_url": "https://hooks.example.com/ark"}
OPTIONS |= {"service_tier": "flex", "execution_expires_after": 3600}


def text(prompt: str) -> dict[str, str]:
    return {"type": "text", "text": prompt}


def image(url: str, role: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}, "role": role}


# What a spec sets → the body besides the model (the job id has no place in it).
BODIES = {
    "text-item": ({"prompt": "a cat surfing"}, {"content": [text("a cat surfing")]}),
    "every-field": (
        {"prompt": "p", "duration": 12, "seed": 4294967295, "with_audio": True, "options": OPTIONS},
        {
            "content": [text("p")],
            "duration": 12,
            "seed": 4294967295,
            "generate_audio": True,
            **OPTIONS,
        },
    ),
    "frames-replace-duration": (
        {"prompt": "p", "seed": -1, "options": {"frames": 121}},
        {"content": [text("p")], "seed": -1, "frames": 121},
    ),
    "one-image-is-the-first-frame": (
        {"prompt": "move", "image": TWO[0]},
        {"content": [text("move"), image(TWO[0], "first_frame")]},
    ),
    "two-images-first-and-last-data-uri-unchanged": (
        {"image": [TWO[0], PNG_URI]},
        {"content": [image(TWO[0], "first_frame"), image(PNG_URI, "last_frame")]},
    ),
    "image-roles-not-sent-as-a-field": (
        {
            "prompt": "p",
            **roles("reference_image", "reference_image", images=[TWO[0], "asset://a-1"]),
        },
        {
            "content": [
                text("p"),
                image(TWO[0], "reference_image"),
                image("asset://a-1", "reference_image"),
            ]
        },
    ),
}


@pytest.mark.parametrize(("fields", "body"), BODIES.values(), ids=BODIES.keys())
def test_the_body_is_the_model_a_content_list_and_the_options(
    fields: dict[str, Any], body: dict[str, Any]
) -> None:
    assert C.body_sent(spec(**fields)) == {"model": MODEL, **body}


# --- poll and errors: what only Ark answers ---------------------------------------------------


def test_a_task_cancelled_at_ark_carries_the_cancelled_error_code() -> None:
    assert poll(RUNNING | {"status": "cancelled"}).error_code == errors.CANCELLED


def test_a_succeeded_task_with_a_last_frame_uses_it_as_the_cover() -> None:
    content = {"video_url": "https://tos/x.mp4", "last_frame_url": "https://tos/x_last.png"}
    assert poll(SUCCEEDED | {"content": content}).cover_url == "https://tos/x_last.png"


@pytest.mark.parametrize(
    ("code", "header", "wait_s"),
    [
        ("RateLimitExceeded.EndpointRPMExceeded", "7", 7.0),
        *(("QuotaExceeded", h, QUOTA_RETRY_S) for h in (None, "5", "3600")),
    ],
)
def test_rate_limits_honour_retry_after_but_quota_waits_the_longest_countdown(
    code: str, header: str | None, wait_s: float
) -> None:
    with pytest.raises(RetryableError) as caught:
        poll(error_body(code), {"Retry-After": header} if header else None, status=429)
    assert caught.value.retry_after_s == wait_s
    assert QUOTA_RETRY_S == 60.0


# --- cancel -----------------------------------------------------------------------------------


def scripted(*answers: httpx.Response | Exception) -> tuple[ArkProvider, list[httpx.Request]]:
    """A provider whose calls get ``answers`` in order."""
    queue, sent = list(answers), []

    def handler(request: httpx.Request) -> httpx.Response:
        reply = queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return C.provider(handler, sent), sent


def status(raw: str) -> httpx.Response:
    return httpx.Response(200, json=poll_answer(raw))


def deleted(status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={} if status < 400 else error_body("ResourceNotFound"))


def test_cancel_deletes_a_queued_task_and_confirms_it_is_cancelled() -> None:
    provider, sent = scripted(status("queued"), deleted(), status("cancelled"))
    assert provider.cancel(C.task, KEY) is True
    assert [(r.method, str(r.url)) for r in sent] == [
        ("GET", TASK_URL),
        ("DELETE", TASK_URL),
        ("GET", TASK_URL),
    ]
    assert sent[1].headers["authorization"] == f"Bearer {KEY.secret}"


@pytest.mark.parametrize(
    ("answers", "cancelled", "methods"),
    [
        ((status("running"), deleted(204), deleted(404)), True, ["GET", "DELETE", "GET"]),
        ((status("running"), deleted(), status("running")), False, ["GET", "DELETE", "GET"]),
        (
            (status("running"), httpx.Response(400, json=error_body("InvalidParameter"))),
            False,
            ["GET", "DELETE"],
        ),
        ((status("cancelled"),), True, ["GET"]),
        *(((status(raw),), False, ["GET"]) for raw in ("succeeded", "failed", "expired")),
    ],
    ids=[
        "gone-after-delete",
        "runs-on-after-delete",
        "delete-refused",
        "already-cancelled",
        "never-deletes-succeeded",
        "never-deletes-failed",
        "never-deletes-expired",
    ],
)
def test_cancel_is_true_only_once_ark_shows_the_task_cancelled_or_gone(
    answers: tuple[httpx.Response, ...], cancelled: bool, methods: list[str]
) -> None:
    provider, sent = scripted(*answers)
    assert provider.cancel(C.task, KEY) is cancelled
    assert [r.method for r in sent] == methods


@pytest.mark.parametrize(
    "answers",
    [
        (httpx.ConnectError("refused"),),
        (status("queued"), httpx.ReadTimeout("timed out")),
        (status("queued"), deleted(), httpx.ReadTimeout("timed out")),
        (status("queued"), deleted(), httpx.Response(500, text="oops")),
    ],
    ids=["first-get-fails", "delete-times-out", "check-times-out", "check-errors"],
)
def test_cancel_is_false_on_any_doubt_and_never_raises(
    answers: tuple[httpx.Response | Exception, ...],
) -> None:
    provider, _ = scripted(*answers)
    assert provider.cancel(C.task, KEY) is False


# --- against the simulator --------------------------------------------------------------------

SIM_KEY, AUTH = C.sim_key, {"Authorization": f"Bearer {C.sim_key.secret}"}
TASKS = "/ark/api/v3/contents/generations/tasks"


def test_the_simulator_returns_the_last_frame_as_the_cover() -> None:
    with simulated(C) as sim:
        task = sim.provider.submit(
            JOB_ID, spec(prompt="p", options={"return_last_frame": True}), SIM_KEY
        )
        assert task.id.startswith("cgt-")
        sim.clock.advance(3)
        assert sim.provider.poll(task, SIM_KEY).status is ProviderStatus.RUNNING
        sim.clock.advance(8)
        done = sim.provider.poll(task, SIM_KEY)
        assert done.cover_url is not None
        hashes = sim.client.get(f"/_sim/tasks/{task.id}/sha256").json()
        assert hashlib.sha256(sim.client.get(done.cover_url).content).hexdigest() == hashes["cover"]


def test_the_simulator_cancels_a_queued_task_and_frees_its_slot() -> None:
    with simulated(C) as sim:
        queued = sim.provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
        assert sim.provider.cancel(queued, SIM_KEY) is True
        assert sim.provider.poll(queued, SIM_KEY).status is ProviderStatus.CANCELLED
        assert sim.client.get("/_sim/stats").json()["in_flight_by_key"] == {SIM_KEY.secret: 0}


def test_the_simulator_lets_a_running_task_run_on_after_delete() -> None:
    with simulated(C) as sim:
        running = sim.provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
        sim.clock.advance(3)
        assert sim.provider.cancel(running, SIM_KEY) is False
        assert sim.client.get("/_sim/stats").json()["in_flight_by_key"] == {SIM_KEY.secret: 1}
        sim.clock.advance(8)
        assert sim.provider.poll(running, SIM_KEY).status is ProviderStatus.SUCCEEDED


def test_the_simulator_deletes_a_finished_record_on_delete() -> None:
    with simulated(C) as sim:
        task = sim.provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
        sim.clock.advance(11)
        assert sim.client.delete(f"{TASKS}/{task.id}", headers=AUTH).status_code == 200
        assert sim.client.get(f"{TASKS}/{task.id}", headers=AUTH).status_code == 404


TEXT = [{"type": "text", "text": "p"}]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"content": TEXT}, 400, "MissingParameter", "model"),
        ({"model": MODEL, "content": TEXT, "duration": "5"}, 400, "InvalidParameter", "duration"),
        ({"model": MODEL, "content": TEXT, "ratio": "2:1"}, 400, "InvalidParameter", "ratio"),
        ({"model": "sora-2", "content": TEXT}, 404, "InvalidEndpointOrModel.NotFound", ""),
        (
            {"model": MODEL, "content": [image(TWO[0], "last_frame")]},
            400,
            "InvalidParameter",
            "content",
        ),
    ],
)
def test_the_simulator_refuses_bad_bodies_with_arks_codes(
    body: dict[str, Any], status: int, code: str, param: str
) -> None:
    with simulated(C) as sim:
        reply = sim.client.post(TASKS, json=body, headers=AUTH)
    error = reply.json()["error"]
    assert (reply.status_code, error["code"], error["param"]) == (status, code, param)
    assert "Request ID: " in error["message"]
    assert reply.headers["x-request-id"]


@pytest.mark.parametrize("secret", ["", "invalid-key"])
def test_the_simulator_refuses_a_missing_or_invalid_key_with_authentication_error(
    secret: str,
) -> None:
    with simulated(C) as sim, pytest.raises(PermanentError) as caught:
        sim.provider.submit(JOB_ID, spec(prompt="p"), ApiKey(id="K", secret=secret))
    assert caught.value.code == errors.AUTH_FAILED
