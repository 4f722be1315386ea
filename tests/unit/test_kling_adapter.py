"""Kling's side of the adapter contract, and what only Kling does (docs/wire-formats.md §5).

The HTTP seam is an ``httpx.MockTransport`` answering the JSON examples of §5; JWTs are checked
with ``hmac`` directly. The last section runs the adapter against the simulator's Kling router
in-process. What every adapter does alike runs over ``CONTRACT`` in
tests/unit/test_adapter_contract.py.

Over 300 lines because Kling alone signs JWTs, keeps a family per task, answers errors inside
200s and reconciles by external_task_id, and its simulator checks JWTs and bodies the way Kling
does: all of that is Kling's alone. (The simulator-only cases at the end would sit as well in
tests/unit/test_simulator.py.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from config.providers import ApiKey
from tests.support.adapter_contract import (
    CALLBACK_TOKEN,
    CALLBACK_URL,
    JOB_ID,
    PNG_URI,
    FakeClock,
    answer,
    assert_classified,
    simulated,
    verified_jwt,
)
from tests.support.contracts.kling import (
    ACCESS,
    BASE,
    CONTRACT,
    KEY,
    NOW,
    PNG_B64,
    PROCESSING,
    SECRET,
    SUBMIT_OK,
    T2V_TASK,
    TWO,
    error_body,
)
from workers.domain import errors
from workers.domain.errors import ConfigError, PermanentError, RetryableError
from workers.domain.jobs import JobSpec, ProviderStatus
from workers.providers.base import ProviderTask

C = CONTRACT

P, R = PermanentError, RetryableError


def spec(**fields: Any) -> JobSpec:
    return C.spec(**fields)


# --- auth -------------------------------------------------------------------------------------


def test_requests_carry_an_hs256_jwt_signed_with_the_secret_key() -> None:
    request = C.submitted(spec(prompt="p"), clock=FakeClock(NOW).time)
    header, claims = verified_jwt(request, SECRET)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims == {"iss": ACCESS, "exp": int(NOW) + 1800, "nbf": int(NOW) - 5}


def test_the_token_is_reused_then_renewed_before_it_expires() -> None:
    clock, sent = FakeClock(NOW), []
    provider = C.provider(answer(200, PROCESSING), sent, clock=clock.time)
    provider.poll(T2V_TASK, KEY)
    clock.advance(1499)
    provider.poll(T2V_TASK, KEY)
    clock.advance(1)
    provider.poll(T2V_TASK, KEY)
    tokens = [request.headers["authorization"] for request in sent]
    assert tokens[0] == tokens[1] != tokens[2]
    assert verified_jwt(sent[2], SECRET)[1]["exp"] == int(NOW) + 1500 + 1800


def test_each_key_signs_its_own_tokens() -> None:
    sent: list[httpx.Request] = []
    provider = C.provider(answer(200, PROCESSING), sent)
    provider.poll(T2V_TASK, KEY)
    provider.poll(T2V_TASK, ApiKey(id="KLING_API_KEY_2", secret="AK-2:SK-2"))
    assert verified_jwt(sent[0], SECRET)[1]["iss"] == ACCESS
    assert verified_jwt(sent[1], "SK-2")[1]["iss"] == "AK-2"


@pytest.mark.parametrize("value", ["no-colon-here", ":secret-only", "access-only:"])
def test_a_key_without_access_and_secret_is_a_config_error_naming_the_variable(value: str) -> None:
    sent: list[httpx.Request] = []
    provider = C.provider(answer(200, SUBMIT_OK), sent)
    with pytest.raises(
        ConfigError, match="KLING_API_KEY must hold ACCESS_KEY:SECRET_KEY"
    ) as caught:
        provider.submit(JOB_ID, spec(prompt="p"), ApiKey(id="KLING_API_KEY", secret=value))
    # It also fails the job at once, as a permanent error the pipeline understands.
    assert isinstance(caught.value, PermanentError)
    assert value not in str(caught.value)
    assert sent == []


# --- submit -----------------------------------------------------------------------------------

OPTIONS = {
    "mode": "pro",
    "aspect_ratio": "9:16",
    "cfg_scale": 0.7,
    "watermark_info": {"enabled": True},
}
OPTIONS |= {"camera_control": {"type": "simple", "config": {"zoom": 5, "pan": 0}}}
OPTIONS |= {"callback_url": "https://hooks.example.com/kling"}
# What a spec sets → the body besides the model name and the job id (external_task_id).
BODIES = {
    "text-to-video": ({"prompt": "a cat surfing"}, {"prompt": "a cat surfing"}),
    "every-field": (
        {
            "model": "kling-v1-6",
            "prompt": "p",
            "negative_prompt": "blur",
            "duration": 10,
            "options": OPTIONS,
        },
        {"prompt": "p", "negative_prompt": "blur", "duration": "10", **OPTIONS},
    ),
    "duration-as-a-string": ({"prompt": "p", "duration": 5}, {"prompt": "p", "duration": "5"}),
    "v2-6-sound-on": (
        {"model": "kling-v2-6", "prompt": "p", "with_audio": True},
        {"prompt": "p", "sound": "on"},
    ),
    "v2-6-sound-off": (
        {"model": "kling-v2-6", "prompt": "p", "with_audio": False},
        {"prompt": "p", "sound": "off"},
    ),
    "older-models-no-sound": ({"prompt": "p", "with_audio": False}, {"prompt": "p"}),
    "data-prefix-stripped": (
        {"model": "kling-v1-5", "image": PNG_URI, "prompt": "move"},
        {"prompt": "move", "image": PNG_B64},
    ),
    "image-and-tail": (
        {"model": "kling-v2-1", "image": [TWO[0], PNG_URI]},
        {"image": TWO[0], "image_tail": PNG_B64},
    ),
    "own-webhook-never-sent": (
        {"prompt": "p", "callback_url": "https://producer.example.com/hook"},
        {"prompt": "p"},
    ),
}


@pytest.mark.parametrize(("fields", "body"), BODIES.values(), ids=BODIES.keys())
def test_the_body_holds_the_spec_and_the_job_id_as_external_task_id(
    fields: dict[str, Any], body: dict[str, Any]
) -> None:
    job = spec(**fields)
    request = C.submitted(job)
    family = "image2video" if job.images else "text2video"
    assert str(request.url) == f"{BASE}/v1/videos/{family}"
    assert json.loads(request.content) == {
        "model_name": job.model,
        **body,
        "external_task_id": JOB_ID,
    }


def test_a_task_remembers_the_family_it_was_created_in() -> None:
    task = C.provider(answer(200, SUBMIT_OK)).submit(JOB_ID, spec(image=PNG_URI), KEY)
    assert task == ProviderTask(id="CjhMgWd5", extra={"family": "image2video"})


def test_a_nonzero_code_in_a_200_answer_is_an_error() -> None:
    body = error_body(1303, "parallel task over resource pack limit")
    with pytest.raises(RetryableError) as caught:
        C.provider(answer(200, body)).submit(JOB_ID, spec(prompt="p"), KEY)
    assert caught.value.code == errors.CONCURRENCY_LIMITED
    assert caught.value.message == "kling: 1303: parallel task over resource pack limit (HTTP 200)"


def test_an_error_inside_a_200_never_shows_the_secret_key() -> None:
    body = error_body(1002, f"token signed with {SECRET} is invalid")
    with pytest.raises(PermanentError) as caught:
        C.provider(answer(200, body)).poll(T2V_TASK, KEY)
    assert SECRET not in caught.value.message and "[redacted]" in caught.value.message


@pytest.mark.parametrize("code", [1201, f"bad:{CALLBACK_TOKEN}"])
def test_an_error_inside_a_200_never_shows_the_callback_url(code: int | str) -> None:
    """Kling's envelope errors (a non-zero ``code`` in a 200) are redacted like error answers,
    their code too, should it echo the request."""
    body = {"code": code, "message": f"callback_url {CALLBACK_URL} unreachable"}
    with pytest.raises(PermanentError) as caught:
        C.provider(answer(200, body)).submit(
            JOB_ID, spec(prompt="p"), KEY, callback_url=CALLBACK_URL
        )
    assert CALLBACK_TOKEN not in str(caught.value) and "[redacted]" in str(caught.value)


def test_an_unknown_nonzero_code_in_a_200_answer_is_a_protocol_error() -> None:
    assert_classified(C, 200, error_body(4242), PermanentError, errors.PROVIDER_PROTOCOL)


def test_1203_is_a_missing_model_on_submit_and_a_missing_task_on_poll() -> None:
    provider = C.provider(answer(404, error_body(1203)))
    with pytest.raises(PermanentError) as on_submit:
        provider.submit(JOB_ID, spec(prompt="p"), KEY)
    assert on_submit.value.code == errors.MODEL_NOT_FOUND
    assert_classified(C, 404, error_body(1203), P, errors.INVALID_REQUEST, poll_only=True)


@pytest.mark.parametrize(("header", "low", "high"), [(None, 1.0, 3.0), ("9", 9.0, 9.0)])
def test_concurrency_limit_backs_off_at_least_a_second(
    header: str | None, low: float, high: float
) -> None:
    handler = answer(429, error_body(1303), {"Retry-After": header} if header else None)
    for _ in range(20):
        with pytest.raises(RetryableError) as caught:
            C.provider(handler).submit(JOB_ID, spec(prompt="p"), KEY)
        assert caught.value.retry_after_s is not None
        assert low <= caught.value.retry_after_s <= high


# --- poll and reconcile -----------------------------------------------------------------------


def test_an_image_task_is_polled_in_image2video() -> None:
    sent: list[httpx.Request] = []
    C.provider(answer(200, PROCESSING), sent).poll(
        ProviderTask(id="C1", extra={"family": "image2video"}), KEY
    )
    assert str(sent[0].url) == f"{BASE}/v1/videos/image2video/C1"


def test_poll_without_a_recorded_family_is_a_permanent_protocol_error() -> None:
    sent: list[httpx.Request] = []
    with pytest.raises(PermanentError) as caught:
        C.provider(answer(200, PROCESSING), sent).poll(ProviderTask(id="x"), KEY)
    assert (caught.value.code, sent) == (errors.PROVIDER_PROTOCOL, [])


def listing(*items: dict[str, Any]) -> dict[str, Any]:
    return {"code": 0, "message": "SUCCEED", "request_id": "r", "data": list(items)}


def item(task_id: str, external: str | None) -> dict[str, Any]:
    info = {"external_task_id": external} if external else {}
    return {"task_id": task_id, "task_status": "processing", "task_info": info}


def test_reconcile_queries_each_family_by_external_task_id() -> None:
    sent: list[httpx.Request] = []
    assert C.provider(answer(200, listing()), sent).reconcile(JOB_ID, KEY) is None
    assert [str(request.url) for request in sent] == [
        f"{BASE}/v1/videos/{family}?external_task_id={JOB_ID}&pageNum=1&pageSize=500"
        for family in ("text2video", "image2video")
    ]
    verified_jwt(sent[0], SECRET)


def test_reconcile_finds_the_task_in_a_filtered_or_unfiltered_list() -> None:
    body = listing(item("other", "job-other"), item("t-1", None), item("mine", JOB_ID))
    found = C.provider(answer(200, body)).reconcile(JOB_ID, KEY)
    assert found == ProviderTask(id="mine", extra={"family": "text2video"})


def test_reconcile_accepts_a_single_task_object_and_checks_it_is_the_job() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        family = request.url.path.rsplit("/", 1)[1]
        data = item("mine", JOB_ID if family == "image2video" else "someone-else")
        return httpx.Response(200, json={"code": 0, "data": data})

    found = C.provider(handler).reconcile(JOB_ID, KEY)
    assert found == ProviderTask(id="mine", extra={"family": "image2video"})


def test_reconcile_raises_what_the_provider_answers() -> None:
    with pytest.raises(RetryableError):
        C.provider(answer(500, error_body(5000))).reconcile(JOB_ID, KEY)


# --- against the simulator --------------------------------------------------------------------

SIM_KEY = C.sim_key
SIM_KEY_1 = ApiKey(id="SIM_KLING_KEY_1", secret="sim-kling-access-1:sim-kling-secret-1")
SIM_SECRET = SIM_KEY.secret.split(":")[1]


def test_the_simulator_runs_an_image_task_and_counts_external_task_ids() -> None:
    with simulated(C) as sim:
        sim.provider.submit("job-text", spec(prompt="p", duration=5), SIM_KEY)
        image = sim.provider.submit(
            "job-image", spec(model="kling-v2-1", image=[PNG_URI, PNG_URI]), SIM_KEY
        )
        sim.clock.advance(3)
        assert sim.provider.poll(image, SIM_KEY).status is ProviderStatus.RUNNING
        sim.clock.advance(8)
        done = sim.provider.poll(image, SIM_KEY)
        assert done.video_url is not None
        video = sim.client.get(done.video_url).content
        assert (
            hashlib.sha256(video).hexdigest()
            == sim.client.get(f"/_sim/tasks/{image.id}/sha256").json()["video"]
        )
        stats = sim.client.get("/_sim/stats").json()
        assert stats["submissions_by_key"] == {"sim-kling-access": 2}
        assert stats["request_ids"] == {"job-text": 1, "job-image": 1}


def test_the_simulator_finds_a_task_only_under_its_own_family() -> None:
    with simulated(C) as sim:
        task = sim.provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
        with pytest.raises(PermanentError):
            sim.provider.poll(ProviderTask(id=task.id, extra={"family": "image2video"}), SIM_KEY)


def test_the_simulator_reconciles_by_external_task_id_per_key() -> None:
    with simulated(C) as sim:
        sim.provider.submit("job-a", spec(prompt="p"), SIM_KEY)
        task = sim.provider.submit(JOB_ID, spec(image=PNG_URI), SIM_KEY)
        sim.provider.submit("job-b", spec(prompt="p"), SIM_KEY)
        assert sim.provider.reconcile(JOB_ID, SIM_KEY) == task
        assert sim.provider.reconcile("job-never-sent", SIM_KEY) is None
        assert sim.provider.reconcile(JOB_ID, SIM_KEY_1) is None  # another account's task list


def test_the_simulator_refuses_and_counts_a_repeated_external_task_id() -> None:
    with simulated(C) as sim:
        sim.provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
        with pytest.raises(PermanentError) as caught:
            sim.provider.submit(JOB_ID, spec(prompt="p"), SIM_KEY)
        assert caught.value.code == errors.INVALID_REQUEST
        stats = sim.client.get("/_sim/stats").json()
        assert (stats["duplicate_request_ids"], stats["request_ids"]) == (1, {JOB_ID: 1})


def test_the_simulator_limits_concurrency_per_access_key_with_1303() -> None:
    with simulated(C, concurrency_limit=1) as sim:
        sim.provider.submit("job-1", spec(prompt="p"), SIM_KEY)
        sim.provider.submit("job-2", spec(prompt="p"), SIM_KEY_1)
        with pytest.raises(RetryableError) as caught:
            sim.provider.submit("job-3", spec(prompt="p"), SIM_KEY)
        assert caught.value.code == errors.CONCURRENCY_LIMITED
        sim.clock.advance(11)
        sim.provider.submit("job-3", spec(prompt="p"), SIM_KEY)


def sign(claims: dict[str, Any], secret: str = SIM_SECRET, alg: str = "HS256") -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    head = part({"alg": alg, "typ": "JWT"}) + "." + part(claims)
    digest = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()
    return "Bearer " + head + "." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


WALL, ISS = 1_800_000_000, "sim-kling-access"
JWTS = {
    "missing": (None, 1001),
    "empty": ("Bearer ", 1001),
    "garbage": ("Bearer not.a.jwt", 1002),
    "bad-signature": (sign({"iss": ISS, "exp": WALL + 60, "nbf": WALL - 5}, "wrong"), 1002),
    "unknown-iss": (sign({"iss": "stranger", "exp": WALL + 60, "nbf": WALL - 5}, "x"), 1002),
    "wrong-alg": (sign({"iss": ISS, "exp": WALL + 60}, alg="HS512"), 1002),
    "not-yet": (sign({"iss": ISS, "exp": WALL + 60, "nbf": WALL + 30}), 1003),
    "expired": (sign({"iss": ISS, "exp": WALL - 1, "nbf": WALL - 60}), 1004),
}


@pytest.mark.parametrize(("authorization", "code"), JWTS.values(), ids=JWTS.keys())
def test_the_simulator_checks_the_jwt(authorization: str | None, code: int) -> None:
    with simulated(C) as sim:
        headers = {"Authorization": authorization} if authorization else {}
        reply = sim.client.get("/kling/v1/videos/text2video", headers=headers)
    assert (reply.status_code, reply.json()["code"]) == (401, code)
    assert set(reply.json()) == {"code", "message", "request_id"}


def test_the_simulator_accepts_registered_key_pairs() -> None:
    with simulated(C) as sim:
        sim.client.post("/kling/_sim/keys", json={"access_key": "ak-new", "secret_key": "sk-new"})
        task = sim.provider.submit(JOB_ID, spec(prompt="p"), ApiKey(id="K", secret="ak-new:sk-new"))
        assert sim.client.get("/_sim/stats").json()["submissions_by_key"] == {"ak-new": 1}
        assert task.extra == {"family": "text2video"}


REFUSED = [
    ("text2video", {"prompt": "p", "duration": 5}, 400, 1201),
    ("text2video", {"model_name": "kling-v9", "prompt": "p"}, 404, 1203),
    ("text2video", {"negative_prompt": "n"}, 400, 1201),
    ("image2video", {"image": PNG_URI}, 400, 1201),
    ("image2video", {"prompt": "p"}, 400, 1201),
    ("text2video", {"model_name": "kling-v2-master", "prompt": "p", "cfg_scale": 0.5}, 400, 1201),
    ("text2video", {"prompt": "p", "sound": "on"}, 400, 1201),
    (
        "text2video",
        {"prompt": "p", "camera_control": {"type": "simple", "config": {"zoom": 1, "pan": 1}}},
        400,
        1201,
    ),
    (
        "image2video",
        {"image": PNG_B64, "image_tail": PNG_B64, "camera_control": {"type": "down_back"}},
        400,
        1201,
    ),
    ("text2image", {"prompt": "p"}, 404, 1202),
]


@pytest.mark.parametrize(("family", "body", "status", "code"), REFUSED)
def test_the_simulator_refuses_bad_bodies_with_klings_codes(
    family: str, body: dict[str, Any], status: int, code: int
) -> None:
    with simulated(C) as sim:
        headers = {"Authorization": f"Bearer {sim.provider.token(SIM_KEY)}"}
        reply = sim.client.post(f"/kling/v1/videos/{family}", json=body, headers=headers)
    assert (reply.status_code, reply.json()["code"]) == (status, code)
