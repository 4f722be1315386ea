"""The HTTP API, through the real uvicorn server of the live stack."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.live import API_TOKEN, LiveStack
from tests.support.records import RECORD_FIELDS

AUTH = {"authorization": f"Bearer {API_TOKEN}"}
GOOD = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a lighthouse at dusk"}


def _post(live: LiveStack, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{live.api_url}/v1/jobs", json=body, headers=headers or AUTH, timeout=10)


def test_post_a_job_returns_202_and_the_record(live: LiveStack) -> None:
    answer = _post(live, GOOD)
    assert answer.status_code == 202
    record = answer.json()
    assert record["state"] in ("queued", "submitting", "running")
    assert set(record) >= RECORD_FIELDS
    again = httpx.get(f"{live.api_url}/v1/jobs/{record['id']}", headers=AUTH, timeout=10)
    assert again.status_code == 200 and again.json()["id"] == record["id"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"provider": "nope"}, "provider"),
        ({"model": "cogvideox-9"}, "model"),
        ({"quality": "quality"}, "quality"),  # cogvideox-flash takes no quality
        ({"size": "1280x720"}, "size"),
        ({"fps": 60}, "fps"),
        ({"size": "big"}, "size"),
        ({"priority": 12}, "priority"),
        ({"duration": 7, "model": "cogvideox-3"}, "duration"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "x" * 600}, "prompt"),
        ({"image": "ftp://example.com/a.png"}, "image"),
        ({"image": "data:image/png;base64,bm90IGFuIGltYWdl"}, "image"),
        ({"colour": "blue"}, "colour"),
        ({"labels": {"a": 1}}, "labels.a"),
        ({"callback_url": "not a url"}, "callback_url"),
    ],
)
def test_a_bad_spec_gets_a_4xx_naming_the_field_and_never_reaches_the_provider(
    idle_stack: LiveStack, change: dict[str, Any], field: str
) -> None:
    live = idle_stack
    answer = _post(live, {**GOOD, **change})
    assert 400 <= answer.status_code < 500
    error = answer.json()["error"]
    assert error["field"] == field, error
    assert field.split(".")[0] in error["message"] or error["message"]
    assert live.sim_stats()["submissions"] == 0


@pytest.mark.parametrize("body", [b"{", b"[]", b"null", b"\xff\xfe", b'"text"'])
def test_a_body_that_is_not_a_json_object_gets_400(live: LiveStack, body: bytes) -> None:
    answer = httpx.post(f"{live.api_url}/v1/jobs", content=body, headers=AUTH, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_json"


def test_requests_without_a_valid_token_get_401(live: LiveStack) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": API_TOKEN}):
        answer = httpx.post(f"{live.api_url}/v1/jobs", json=GOOD, headers=headers, timeout=10)
        assert answer.status_code == 401
    assert httpx.get(f"{live.api_url}/v1/jobs/x", timeout=10).status_code == 401


def test_an_unknown_job_id_gets_404(live: LiveStack) -> None:
    answer = httpx.get(f"{live.api_url}/v1/jobs/does-not-exist", headers=AUTH, timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_the_idempotency_key_header_returns_the_same_job(live: LiveStack) -> None:
    headers = {**AUTH, "idempotency-key": "order-42-video"}
    first, second = _post(live, GOOD, headers), _post(live, GOOD, headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]


def test_healthz_and_openapi_docs_answer(live: LiveStack) -> None:
    assert httpx.get(f"{live.api_url}/healthz", timeout=10).json() == {"ok": True}
    schema = httpx.get(f"{live.api_url}/openapi.json", timeout=10).json()
    assert "/v1/jobs" in schema["paths"]
    assert httpx.get(f"{live.api_url}/docs", timeout=10).status_code == 200
