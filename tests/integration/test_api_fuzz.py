"""Property: nothing a client can send to the write routes produces a 5xx.

Hypothesis sends arbitrary JSON, spec-shaped JSON with arbitrary values, and arbitrary bytes to
``POST /v1/jobs``, ``/v1/jobs/batch`` and ``/v1/videos`` of the app in process, on the live
stack's Redis (an idle database) and S3. Every answer must be a 2xx, or a 4xx in the API's one
error shape.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support.api import in_process_api
from tests.support.live import API_TOKEN, LiveStack

AUTH = {"authorization": f"Bearer {API_TOKEN}"}
FIELDS = [
    "provider", "model", "prompt", "image", "duration", "size", "fps", "quality", "with_audio",
    "seed", "negative_prompt", "options", "priority", "labels", "callback_url", "idempotency_key",
]  # fmt: skip
PROVIDERS = ["zhipu", "solo", "openai", "gateway", "ark", "kling", "nope", ""]
MODELS = ["cogvideox-flash", "cogvideox-3", "viduq1-image", "sora-2", "sora-2-pro", "x"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["1280x720", "https://example.com/a.png", "data:image/png;base64,iVBOR"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
# Plausible values (often valid, sometimes just wrong), or any JSON at all.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "image": st.sampled_from(
        [
            "https://example.com/a.png",
            "upload:" + "0" * 32 + ".png",
            "ftp://x",
            "data:image/png;base64,iVBOR",
        ]
    ),
    "duration": st.sampled_from([5, 10, 4, 7, 0]),
    "size": st.sampled_from(["1280x720", "720x1280", "1920x1080", "big"]),
    "fps": st.sampled_from([30, 60, 24]),
    "quality": st.sampled_from(["speed", "quality", "ultra"]),
    "with_audio": st.booleans(),
    "seed": st.integers(min_value=-2, max_value=2**33),
    "negative_prompt": st.text(max_size=20),
    "options": st.dictionaries(
        st.sampled_from(["user_id", "watermark_enabled", "off_peak", "style", "x"]),
        json_values,
        max_size=2,
    ),
    "priority": st.integers(min_value=-2, max_value=12),
    "labels": st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
    "callback_url": st.sampled_from(["http://127.0.0.1:9/hook", "https://example.com/h", "x"]),
    "idempotency_key": st.text(max_size=20),
    "unknown": json_values,
}
specs = st.fixed_dictionaries(
    {
        "provider": st.sampled_from(PROVIDERS),
        "model": st.sampled_from(MODELS),
        "prompt": st.text(min_size=1, max_size=80),
    },
    optional={name: value | json_values for name, value in PLAUSIBLE.items()},
)
near_valid = st.fixed_dictionaries(
    {
        "provider": st.just("zhipu"),
        "model": st.sampled_from(["cogvideox-flash", "cogvideox-3"]),
        "prompt": st.text(min_size=1, max_size=80),
    },
    optional={name: PLAUSIBLE[name] for name in ("duration", "size", "fps", "quality", "labels")},
)
bodies = json_values | specs | near_valid
header_text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=300)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def app(live: LiveStack) -> Iterator[TestClient]:
    with in_process_api(live) as (client, _):
        yield client


def _no_5xx(answer: httpx.Response) -> None:
    event(f"HTTP {answer.status_code}")
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert isinstance(error["message"], str) and error["message"]


@FUZZ
@given(body=bodies, key=st.none() | header_text)
def test_post_jobs_never_answers_5xx(app: TestClient, body: Any, key: str | None) -> None:
    headers = {**AUTH, **({"idempotency-key": key} if key else {})}
    _no_5xx(app.post("/v1/jobs", json=body, headers=headers))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_post_jobs_with_arbitrary_bytes_never_answers_5xx(app: TestClient, raw: bytes) -> None:
    _no_5xx(app.post("/v1/jobs", content=raw, headers=AUTH))


@FUZZ
@given(jobs=st.lists(bodies, max_size=4) | st.lists(near_valid, max_size=4), wrap=st.booleans())
def test_post_batch_never_answers_5xx(app: TestClient, jobs: Any, wrap: bool) -> None:
    _no_5xx(app.post("/v1/jobs/batch", json={"jobs": jobs} if wrap else jobs, headers=AUTH))


video_fields = st.fixed_dictionaries(
    {"prompt": st.text(min_size=1, max_size=20) | json_values},
    optional={
        "model": st.sampled_from(MODELS) | json_values,
        "seconds": st.sampled_from(["5", "10", "4", 5, "x"]) | json_values,
        "size": st.sampled_from(["1280x720", "720x1280", "1x1"]) | json_values,
        "input_reference": st.fixed_dictionaries({"image_url": PLAUSIBLE["image"]}) | json_values,
        "other": json_values,
    },
)


@FUZZ
@given(body=video_fields | json_values)
def test_post_videos_json_never_answers_5xx(app: TestClient, body: Any) -> None:
    _no_5xx(app.post("/v1/videos", json=body, headers=AUTH))


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "prompt": st.text(max_size=20),
            "model": st.sampled_from(MODELS) | st.text(max_size=10),
            "seconds": st.sampled_from(["5", "10", "4", "x", ""]),
            "size": st.sampled_from(["1280x720", "720x720", "z"]),
            "x": st.text(max_size=5),
        },
    ),
    image=st.none() | st.binary(max_size=64) | st.just(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16),
)
def test_post_videos_multipart_never_answers_5xx(
    app: TestClient, fields: dict[str, str], image: bytes | None
) -> None:
    files = {"input_reference": ("ref.png", image, "image/png")} if image is not None else None
    data = fields or {"prompt": ""}
    _no_5xx(app.post("/v1/videos", data=data, files=files, headers=AUTH))


cursors = st.one_of(
    st.text(max_size=60),
    json_values.map(lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode()),
    st.fixed_dictionaries({"i": json_values, "s": json_values}).map(
        lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode()
    ),
    st.just(base64.urlsafe_b64encode(b'{"i":"a","s":NaN}').decode()),
)


@FUZZ
@given(
    params=st.fixed_dictionaries(
        {},
        optional={
            "state": st.sampled_from(["queued", "cancelled", "x", ""]),
            "provider": st.text(max_size=70),
            "label": st.text(max_size=20),
            "limit": st.integers(min_value=-5, max_value=300).map(str) | st.text(max_size=5),
            "cursor": cursors,
        },
    ),
    after=st.none() | st.text(max_size=140),
    job_id=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=200
    ),
)
def test_reads_never_answer_5xx(
    app: TestClient, params: dict[str, str], after: str | None, job_id: str
) -> None:
    _no_5xx(app.get("/v1/jobs", params=params, headers=AUTH))
    _no_5xx(app.get("/v1/videos", params={"after": after} if after else {}, headers=AUTH))
    quoted = urllib.parse.quote(job_id, safe="")
    for path in (f"/v1/jobs/{quoted}", f"/v1/jobs/{quoted}/events", f"/v1/videos/{quoted}/content"):
        _no_5xx(app.get(path, headers=AUTH))
    _no_5xx(app.delete(f"/v1/videos/{quoted}", headers=AUTH))
