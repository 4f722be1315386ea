"""Zhipu's side of the adapter contract, and what only Zhipu does (docs/wire-formats.md §1).

The HTTP seam is an ``httpx.MockTransport``: each test states what Zhipu answers and checks the
exact request sent or the value or error returned. What every adapter does alike runs over
``CONTRACT`` in tests/unit/test_adapter_contract.py.

Over 300 lines because Zhipu's tables (business codes, validation, Vidu bodies) and its legacy
JWT mode are long and Zhipu's alone, so they stay together here.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from config.providers import ApiKey
from tests.support.adapter_contract import (
    JOB_ID,
    PNG_URI,
    FakeClock,
    answer,
    assert_classified,
    verified_jwt,
)
from tests.support.contracts.zhipu import (
    CONTRACT,
    KEY,
    SUBMIT_OK,
    URL_1,
    URL_2,
    VQ1,
    error_body,
)
from workers.domain import errors
from workers.domain.errors import InvalidSpec, PermanentError, RetryableError
from workers.domain.jobs import JobSpec
from workers.providers import validator
from workers.providers.base import ProviderTask
from workers.providers.zhipu import DAILY_LIMIT_RETRY_S, ZhipuProvider

C = CONTRACT

P, R = PermanentError, RetryableError


def spec(**fields: Any) -> JobSpec:
    return C.spec(**fields)


# --- submit: the body ------------------------------------------------------------------------

EVERY = {"quality": "quality", "with_audio": True, "size": "1920x1080", "fps": 60, "duration": 10}
USER = {"user_id": "user-42", "watermark_enabled": False, "off_peak": True}
VIDU = {"style": "anime", "aspect_ratio": "9:16", "movement_amplitude": "large"}
VIDU_IMAGE = {"movement_amplitude": "small", "style": "general", "watermark_enabled": True}
FRAMES = [URL_1, PNG_URI]
# What a spec sets → what the body holds besides the spec's model and the job id (request_id).
BODIES = {
    "every-field": ({"prompt": "p", **EVERY, "options": USER}, {"prompt": "p", **EVERY, **USER}),
    "unset-left-out": ({"model": "cogvideox-flash", "prompt": "p"}, {"prompt": "p"}),
    "image-url": ({"image": URL_1, "prompt": "move"}, {"image_url": URL_1, "prompt": "move"}),
    "data-uri-unchanged": ({"image": PNG_URI}, {"image_url": PNG_URI}),
    "list-of-one-as-a-string": ({"image": [URL_1]}, {"image_url": URL_1}),
    "first-and-last-frame": (
        {"image": FRAMES, "quality": "speed"},
        {"image_url": FRAMES, "quality": "speed"},
    ),
    "vidu-options": (
        {"model": "viduq1-text", "prompt": "p", "duration": 5, "options": VIDU},
        {"prompt": "p", "duration": 5, **VIDU},
    ),
    **{
        f"{model}-first-and-last-frame": (
            {"model": model, "prompt": "p", "image": FRAMES},
            {"prompt": "p", "image_url": FRAMES},
        )
        for model in ("viduq1-start-end", "vidu2-start-end")
    },
    "vidu-image": (
        {"model": "vidu2-image", "image": PNG_URI, "duration": 4, "options": VIDU_IMAGE},
        {"image_url": PNG_URI, "duration": 4, **VIDU_IMAGE},
    ),
}


@pytest.mark.parametrize(("fields", "body"), BODIES.values(), ids=BODIES.keys())
def test_the_body_holds_what_the_spec_sets_and_the_job_id_as_request_id(
    fields: dict[str, Any], body: dict[str, Any]
) -> None:
    job = spec(**fields)
    assert C.body_sent(job) == {"model": job.model, **body, "request_id": JOB_ID}


def test_a_task_id_sent_as_a_json_number_is_taken_as_its_text() -> None:
    task = C.provider(answer(200, SUBMIT_OK | {"id": 8856})).submit(JOB_ID, spec(prompt="p"), KEY)
    assert task == ProviderTask(id="8856")


# --- poll and errors: what only Zhipu answers -------------------------------------------------


def test_a_success_without_a_cover_still_succeeds() -> None:
    body = {"task_status": "SUCCESS", "video_result": [{"url": "https://cdn/x.mp4"}]}
    result = C.provider(answer(200, body)).poll(C.task, KEY)
    assert (result.video_url, result.cover_url) == ("https://cdn/x.mp4", None)


def test_a_duplicate_request_id_matters_only_on_submit() -> None:
    body = error_body("1231")
    assert_classified(C, 400, body, PermanentError, errors.INVALID_REQUEST, poll_only=True)


@pytest.mark.parametrize("code", ["1301", 1301], ids=["string", "int"])
def test_error_envelope_code_may_be_a_string_or_an_int(code: str | int) -> None:
    body = error_body(code, "The content contains sensitive words")
    with pytest.raises(PermanentError) as caught:
        C.provider(answer(400, body)).poll(C.task, KEY)
    assert caught.value.code == errors.CONTENT_POLICY
    assert caught.value.message == "zhipu: 1301: The content contains sensitive words (HTTP 400)"


@pytest.mark.parametrize(
    ("code", "retry_after", "wait_s"),
    [("1302", "Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("1304", "5", DAILY_LIMIT_RETRY_S)],
    ids=["past-http-date-means-now", "daily-limit-waits-long-whatever-retry-after-says"],
)
def test_retry_waits_follow_the_code(code: str, retry_after: str, wait_s: float) -> None:
    handler = answer(429, error_body(code), {"Retry-After": retry_after})
    with pytest.raises(RetryableError) as caught:
        C.provider(handler).poll(C.task, KEY)
    assert caught.value.retry_after_s == wait_s


# --- validation ------------------------------------------------------------------------------

check = validator(C.config())


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"model": "cogvideox-flash", "fps": 30}, "cogvideox-flash does not take it"),
        ({"model": "cogvideox-9"}, "cogvideox-3"),  # the models it knows
        ({"model": "cogvideox-2", "size": "1280x720"}, "720x480"),  # the sizes it takes
        ({**VQ1, "options": {"aspect_ratio": "4:3"}}, "16:9"),
        ({"image": [URL_1, URL_2], "quality": "quality"}, "speed"),
    ],
)
def test_a_refusal_says_what_would_do(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidSpec, match=says):
        check(spec(**({"prompt": "p"} | fields)))


# --- legacy id.secret keys: a JWT instead of the key -------------------------------------------

LEGACY = ApiKey(id="ZHIPUAI_API_KEY", secret="0123456789abcdef0123456789abcdef.AbCdEfGh12345678")
LEGACY_ID, LEGACY_SECRET = LEGACY.secret.split(".")
START = 1_760_000_000.0


def legacy(sent: list[httpx.Request], clock: FakeClock, *, auth: str = "jwt") -> ZhipuProvider:
    """The adapter with ``auth`` (a JWT from ``<id>.<secret>`` keys by default), on ``clock``."""
    handler = answer(200, {"id": "8856", "task_status": "PROCESSING"})
    return C.provider(handler, sent, config=C.config(auth=auth), clock=clock.time)


def test_by_default_even_an_id_dot_secret_key_is_sent_as_it_is() -> None:
    sent: list[httpx.Request] = []
    legacy(sent, FakeClock(START), auth="bearer").poll(C.task, LEGACY)
    assert sent[0].headers["authorization"] == f"Bearer {LEGACY.secret}"


def test_an_id_dot_secret_key_is_sent_as_a_signed_jwt_never_raw() -> None:
    # Given a key of Zhipu's own <id>.<secret> form, and auth = "jwt"
    sent: list[httpx.Request] = []
    # When a poll is sent with it
    legacy(sent, FakeClock(START)).poll(C.task, LEGACY)
    # Then the bearer is a JWT signed with the secret, as the SDK's legacy mode makes it
    header, claims = verified_jwt(sent[0], LEGACY_SECRET)
    assert header == {"alg": "HS256", "sign_type": "SIGN"}
    now_ms = int(START * 1000)
    assert claims == {"api_key": LEGACY_ID, "exp": now_ms + 210_000, "timestamp": now_ms}
    assert LEGACY_SECRET not in sent[0].headers["authorization"]


def test_the_legacy_token_is_cached_and_renewed_before_its_210_s_run_out() -> None:
    sent: list[httpx.Request] = []
    clock = FakeClock(START)
    provider = legacy(sent, clock)
    provider.poll(C.task, LEGACY)
    clock.advance(179)
    provider.submit(JOB_ID, spec(prompt="p"), LEGACY)
    clock.advance(1)
    provider.poll(C.task, LEGACY)
    first, second, third = (request.headers["authorization"] for request in sent)
    assert first == second != third
    assert verified_jwt(sent[2], LEGACY_SECRET)[1]["timestamp"] == int((START + 180) * 1000)


@pytest.mark.parametrize(
    "secret",
    ["sk-SECRET-0123456789.abcdef", "plainkey", "a.b.c", ".secret", "id.", "id.sec ret"],
)
def test_keys_of_any_other_form_are_sent_raw(secret: str) -> None:
    sent: list[httpx.Request] = []
    legacy(sent, FakeClock(START)).poll(C.task, ApiKey(id="K", secret=secret))
    assert sent[0].headers["authorization"] == f"Bearer {secret}"
