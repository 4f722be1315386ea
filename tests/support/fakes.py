"""Stand-ins for one test's worth of providers: a fake Zhipu adapter and the Deps around it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import redis

from config.providers import Catalogue, parse
from config.settings import Settings
from workers.deps import Deps
from workers.domain.jobs import JobSpec
from workers.redis.gate import Gate
from workers.redis.store import Store


def catalogue(**table: Any) -> Catalogue:
    base = {
        "kind": "zhipu",
        "base_url": "http://sim.test/zhipu/api/paas/v4",
        "api_key_env": ["KEY_A"],
        "max_in_flight": 4,
        "first_poll_s": 1,
        "min_poll_interval_s": 1,
        "max_poll_interval_s": 10,
    }
    return parse({"providers": {"sim": {**base, **table}}})


def job(store: Store, job_id: str, *, producer: str, priority: int = 0, **labels: str) -> None:
    spec = JobSpec(
        provider="sim", model="cogvideox-flash", prompt="p", priority=priority, labels=labels
    )
    store.create(job_id, spec, producer=producer)


class FakeZhipu:
    """A Zhipu endpoint that records which key each request used."""

    def __init__(self) -> None:
        self.auth: list[tuple[str, str]] = []
        self.polls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        kind = "submit" if request.method == "POST" else "poll"
        self.auth.append((kind, request.headers["authorization"]))
        if kind == "submit":
            body = json.loads(request.content)
            return httpx.Response(
                200,
                json={"id": "t-" + body["request_id"], "model": "m", "task_status": "PROCESSING"},
            )
        self.polls += 1
        return httpx.Response(200, json={"model": "m", "task_status": "PROCESSING"})


def fake_deps(redis_db: redis.Redis, cat: Catalogue, fake: FakeZhipu) -> Deps:
    d = Deps(Settings(), cat, redis_db, Store(redis_db), Gate(redis_db))
    d.http = httpx.Client(transport=httpx.MockTransport(fake))  # type: ignore[misc]
    return d
