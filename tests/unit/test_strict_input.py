"""The job spec coerces nothing: a string or boolean is not an integer, a number or string is not
a boolean, a number is not a string. Each is refused naming the field, through ``JobSpec``, the
producer's ``parse_spec`` and the HTTP API in process (on the unit tier's Redis; a refused spec
is answered before anything is written)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import ValidationError

from config import providers as provider_config
from config.settings import get_settings
from producer import api, openai_videos, web
from producer.validation import parse_spec
from workers.domain.errors import InvalidSpec
from workers.domain.jobs import JobSpec

GOOD: dict[str, Any] = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a lighthouse"}
TOKEN = "strict-input-token"

COERCIONS: list[tuple[dict[str, Any], str]] = [
    ({"priority": "9"}, "priority"),
    ({"priority": True}, "priority"),
    ({"priority": False}, "priority"),
    ({"priority": 9.0}, "priority"),
    ({"duration": "5"}, "duration"),
    ({"duration": True}, "duration"),
    ({"duration": 5.0}, "duration"),
    ({"fps": "30"}, "fps"),
    ({"fps": True}, "fps"),
    ({"seed": "42"}, "seed"),
    ({"seed": False}, "seed"),
    ({"with_audio": 1}, "with_audio"),
    ({"with_audio": 0}, "with_audio"),
    ({"with_audio": "true"}, "with_audio"),
    ({"with_audio": "yes"}, "with_audio"),
    ({"with_audio": 1.0}, "with_audio"),
    ({"size": 1280}, "size"),
    ({"quality": 1.5}, "quality"),
    ({"prompt": 5}, "prompt"),
    ({"negative_prompt": True}, "negative_prompt"),
    ({"provider": 1}, "provider"),
    ({"model": 2.0}, "model"),
    ({"callback_url": 1}, "callback_url"),
    ({"idempotency_key": 7}, "idempotency_key"),
    ({"labels": {"team": 1}}, "labels.team"),
    ({"labels": {"team": True}}, "labels.team"),
    ({"image": 5}, "image"),
    ({"image": ["https://example.com/a.png", 5]}, "image"),
    ({"image": True}, "image"),
]


def _ids(case: tuple[dict[str, Any], str]) -> str:
    return repr(case[0])


@pytest.mark.parametrize(("change", "field"), COERCIONS, ids=[_ids(c) for c in COERCIONS])
def test_the_spec_refuses_a_value_of_the_wrong_type_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        JobSpec.model_validate({**GOOD, **change})
    [error] = refused.value.errors()
    assert ".".join(str(p) for p in error["loc"]) == field


@pytest.mark.parametrize(("change", "field"), COERCIONS, ids=[_ids(c) for c in COERCIONS])
def test_the_producer_check_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        parse_spec({**GOOD, **change})
    assert refused.value.field == field


@pytest.mark.parametrize(
    "change",
    [
        {"priority": 9, "duration": 5, "fps": 30, "seed": -1, "with_audio": False},
        {"priority": 0, "seed": 2**32 - 1, "with_audio": True, "size": "1280x720"},
        {"image": ["https://example.com/a.png", "https://example.com/b.png"]},
        {"labels": {"team": "a"}, "options": {"watermark_enabled": 1, "style": None}},
        {"duration": None, "fps": None, "seed": None, "with_audio": None, "prompt": "p"},
    ],
)
def test_values_of_the_right_type_still_pass(change: dict[str, Any]) -> None:
    spec = JobSpec.model_validate({**GOOD, **change})
    # A stored spec (JSON) reads back the same under the strict rules.
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize(
    ("change", "field"),
    [({"priority": 10}, "priority"), ({"duration": 0}, "duration"), ({"fps": 241}, "fps")],
)
def test_the_ranges_are_still_checked(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        parse_spec({**GOOD, **change})
    assert refused.value.field == field


def test_a_stored_spec_with_a_string_priority_is_refused_too() -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate_json(
            '{"provider": "p", "model": "m", "prompt": "x", "priority": "9"}'
        )


@pytest.mark.parametrize("seconds", ["8", 8])
def test_the_openai_facade_converts_seconds_itself_before_building_the_spec(
    seconds: str | int, tmp_path: Path
) -> None:
    providers = tmp_path / "providers.toml"
    providers.write_text(
        '[providers.sora]\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'api_key_env = ["SIM_OPENAI_KEY"]\nmodels = ["sora-2"]\n'
    )
    catalogue = provider_config.load(str(providers))
    fields = {"prompt": "p", "model": "sora-2", "seconds": seconds, "size": "1280x720"}
    body, _sources = openai_videos.spec_from(catalogue, fields, None)
    spec = JobSpec.model_validate(body)
    assert spec.duration == 8


# -- through the HTTP API, in process ------------------------------------------------------


@pytest.fixture
def app(redis_db: redis.Redis, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    providers = tmp_path / "providers.toml"
    providers.write_text(
        '[providers.zhipu]\nkind = "zhipu"\nbase_url = "http://127.0.0.1:9/v4"\n'
        'api_key_env = ["SIM_ZHIPU_KEY"]\n'
    )
    env = {
        "VIDQUEUE_REDIS_URL": f"{redis_url}/15",
        "VIDQUEUE_PROVIDERS_FILE": str(providers),
        "VIDQUEUE_API_TOKENS": TOKEN,
        "VIDQUEUE_RUN_DIR": str(tmp_path / "run"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        web._client = None
        try:
            yield TestClient(api.app, raise_server_exceptions=False)
        finally:
            get_settings.cache_clear()
            web._client = None


# Every third case, and the callback URL's (the one checked in a thread).
API_CASES = [*COERCIONS[::3], ({"callback_url": 1}, "callback_url")]


@pytest.mark.parametrize(("change", "field"), API_CASES, ids=[_ids(c) for c in API_CASES])
def test_the_api_answers_422_naming_the_field_and_writes_nothing(
    app: TestClient, redis_db: redis.Redis, change: dict[str, Any], field: str
) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    one = app.post("/v1/jobs", json={**GOOD, **change}, headers=auth)
    assert one.status_code == 422, one.text
    assert one.json()["error"]["field"] == field
    many = app.post("/v1/jobs/batch", json={"jobs": [GOOD, {**GOOD, **change}]}, headers=auth)
    assert many.status_code == 422, many.text
    assert many.json()["error"]["field"] == f"jobs.1.{field}"
    assert redis_db.dbsize() == 0
