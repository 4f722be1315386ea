"""``GET /v1/queue`` (contract B of the dashboard): on the live stack after real jobs, the jobs
that succeeded are in this hour's series (the minutes since the test started), each provider
lists its keys with their caps, waiting jobs are split per tenant, and a caller without a valid
token gets a 401. The route is documented in OpenAPI under ``operations``."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from producer.api import app
from producer.client import Client
from tests.support.api import AUTH, GOOD, bearer, in_process_api
from tests.support.live import LiveStack
from workers.redis.stats import FLUSH_INTERVAL_S

SERIES = ("finished", "failed", "throttled", "errors", "detection_lag_s", "submit_delay_s")


def _queue(live: LiveStack) -> dict[str, Any]:
    answer = httpx.get(f"{live.api_url}/v1/queue", headers=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    assert "sim-key-zhipu-test" not in answer.text  # key ids only, never a secret
    body: dict[str, Any] = answer.json()
    return body


def _since(body: dict[str, Any], name: str, start: float) -> list[Any]:
    """The series ``name`` over the minutes from ``start``'s on (jobs may straddle a minute)."""
    series = body["series"]
    first = int(start // 60) * 60
    return [x for m, x in zip(series["minutes"], series[name], strict=True) if m >= first]


def test_finished_jobs_keys_and_series_after_real_jobs(idle_stack: LiveStack) -> None:
    live = idle_stack
    # An earlier test's last figures may still sit in a worker's buffer (flushed every
    # second): let them land before counting, so they are not taken for this test's jobs.
    time.sleep(FLUSH_INTERVAL_S + 1.0)
    start = time.time()
    before = _queue(live)
    finished_before = sum(_since(before, "finished", start))
    spec = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "x"}
    records = live.wait_all([live.client.enqueue(spec).id for _ in range(3)])
    assert {r.state for r in records} == {"succeeded"}
    # The workers write their figures about every second
    deadline = time.monotonic() + 10
    while True:
        body = _queue(live)
        if sum(_since(body, "finished", start)) - finished_before >= 3:
            break
        assert time.monotonic() < deadline, body["series"]
        time.sleep(0.2)
    print("finished since the start:", _since(body, "finished", start))
    print("submit delay (s) since the start:", _since(body, "submit_delay_s", start))
    # The series: 60 minutes, oldest first, the current minute last
    series = body["series"]
    assert len(series["minutes"]) == 60
    assert series["minutes"][-1] == int(body["at"] // 60) * 60
    assert series["minutes"] == sorted(series["minutes"])
    for name in SERIES:
        assert len(series[name]) == 60, name
    assert sum(_since(body, "finished", start)) - finished_before == 3
    assert any(x is not None and x >= 0 for x in _since(body, "submit_delay_s", start))
    assert all(isinstance(x, int) and x >= 0 for x in series["errors"] + series["throttled"])
    # Jobs by state, keys with their caps
    assert body["jobs_by_state"]["succeeded"] >= 3
    assert set(body["jobs_by_state"]) >= {"queued", "running", "succeeded", "failed"}
    zhipu = next(p for p in body["providers"] if p["name"] == "zhipu")
    assert zhipu["waiting"] == 0 and zhipu["waiting_by_tenant"] == {}
    [key] = zhipu["keys"]
    assert key["key_id"] == "SIM_ZHIPU_KEY"
    assert (key["cap"], key["effective_cap"], key["cooling"]) == (3, 3.0, False)
    assert 0 <= key["in_flight"] <= 3
    assert key["per_minute"]["submit"] >= 3
    assert set(key["per_minute"]) >= {"submit", "poll", "download", "throttled"}
    assert {p["name"] for p in body["providers"]} >= {"zhipu", "kling", "openai"}
    took = []
    for _ in range(5):
        began = time.perf_counter()
        _queue(live)
        took.append(time.perf_counter() - began)
    print(f"GET /v1/queue: median {sorted(took)[2] * 1000:.1f} ms of 5 (a figure, not a limit)")


def test_provider_errors_and_429s_are_counted_as_the_simulator_sent_them(
    idle_stack: LiveStack,
) -> None:
    live = idle_stack
    # An earlier test's last figures may still sit in a worker's buffer (flushed every
    # second): let them land before counting, so they are not taken for this test's jobs.
    time.sleep(FLUSH_INTERVAL_S + 1.0)
    start = time.time()
    before = _queue(live)
    base = {name: sum(_since(before, name, start)) for name in ("errors", "throttled")}
    live.set_sim(submit_error_rate=0.3, submit_429_rate=0.3, poll_error_rate=0.2, poll_429_rate=0.2)
    try:
        spec = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "x"}
        live.wait_all([live.client.enqueue(spec).id for _ in range(4)])
    finally:
        live.sim("POST", "/_sim/faults/off")
    faults = live.sim_stats()["faults"]
    sent = {
        "errors": faults.get("submit_500", 0) + faults.get("poll_500", 0),
        "throttled": faults.get("submit_429", 0) + faults.get("poll_429", 0),
    }
    deadline = time.monotonic() + 10
    while True:
        body = _queue(live)
        seen = {name: sum(_since(body, name, start)) - base[name] for name in sent}
        if seen == sent or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print("the simulator sent:", sent, "the series counted:", seen)
    assert seen == sent
    [key] = next(p for p in body["providers"] if p["name"] == "zhipu")["keys"]
    # Per key, over the last 60 s (all of it since the start, or most of it)
    assert (key["per_minute"]["error"] > 0) == (sent["errors"] > 0)
    assert (key["per_minute"]["throttled"] > 0) == (sent["throttled"] > 0)


def test_without_a_valid_token_it_is_a_401(live: LiveStack) -> None:
    for headers in ({}, {"authorization": "Bearer not-a-token"}):
        answer = httpx.get(f"{live.api_url}/v1/queue", headers=headers, timeout=10)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "unauthorized"


A, B = "queue-team-a", "queue-team-b"
TOKENS_FILE = f"""
[[tokens]]
name = "team-a"
token = "{A}"
tenants = ["shop-1", "shop-2"]

[[tokens]]
name = "team-b"
sha256 = "{hashlib.sha256(B.encode()).hexdigest()}"
"""


@pytest.fixture
def local(
    live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, redis.Redis]]:
    """The app in process with named tokens, on database 15 where no worker listens; it fills
    no slot itself, so the jobs stay waiting (as in ``test_tenants``)."""
    monkeypatch.setattr(Client, "dispatch", lambda self, providers: None)
    path = tmp_path / "tokens.toml"
    path.write_text(TOKENS_FILE)
    with in_process_api(live, tokens_file=str(path)) as pair:
        yield pair


def test_waiting_jobs_are_split_per_tenant(local: tuple[TestClient, redis.Redis]) -> None:
    app_client, _ = local
    sent = [
        (A, "shop-1"),
        (A, "shop-1"),
        (A, "shop-2"),
        (A, None),  # no tenant label: the token's own name is its fair share
        (B, None),
        (B, None),
    ]
    for token, tenant in sent:
        job = {**GOOD, **({"labels": {"tenant": tenant}} if tenant else {})}
        created = app_client.post("/v1/jobs", json=job, headers=bearer(token))
        assert created.status_code == 202, created.text
    seen = {}
    for token in (A, B):
        answer = app_client.get("/v1/queue", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        zhipu = next(p for p in body["providers"] if p["name"] == "zhipu")
        assert zhipu["waiting"] == 6
        seen[token] = zhipu["waiting_by_tenant"]
    # Each token sees its own tenants by name, and only how many wait for everyone else
    assert seen[A] == {"shop-1": 2, "shop-2": 1, "team-a": 1, "(others)": 2}
    assert seen[B] == {"team-b": 2, "(others)": 4}
    assert body["jobs_by_state"]["queued"] == 6
    assert [k["in_flight"] for k in zhipu["keys"]] == [0]
    assert app_client.get("/v1/queue").status_code == 401


def test_the_route_is_documented_under_operations() -> None:
    op = app.openapi()["paths"]["/v1/queue"]["get"]
    assert op["tags"] == ["operations"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/QueueFigures")
    assert {"401", "503"} <= set(op["responses"])
    fields = app.openapi()["components"]["schemas"]["SeriesFigures"]["properties"]
    assert set(fields) == {"minutes", *SERIES}
