"""Jobs brought to a given state the way the pipeline does it, for sweep and due tests."""

from __future__ import annotations

import time
from typing import Any

import redis

from config.providers import Catalogue, ProviderConfig, parse
from workers.deps import Deps
from workers.domain.change import Change
from workers.domain.jobs import JobSpec, State
from workers.redis import keys

GRACE_S = 1.0


LEASE_S = 300.0


KEY = "SWEEP_KEY"


def catalogue(max_in_flight: int = 3) -> Catalogue:
    table: dict[str, Any] = {
        "kind": "zhipu",
        "base_url": "http://127.0.0.1:9/zhipu/api/paas/v4",
        "api_key_env": [KEY],
        "max_in_flight": max_in_flight,
        "timeout_s": 600,
    }
    return parse({"providers": {"sim": table}})


def spec() -> JobSpec:
    return JobSpec(provider="sim", model="cogvideox-flash", prompt="a boat")


def redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def in_state(d: Deps, job_id: str, state: State, *, deadline_in_s: float = 600) -> None:
    """A dispatched job brought to ``state`` the way the pipeline does it."""
    dispatched(d, job_id)
    if state == State.QUEUED:
        return
    d.store.transition(job_id, [State.QUEUED], State.SUBMITTING, incr="attempts")
    if state == State.SUBMITTING:
        return
    if state == State.SUBMIT_UNKNOWN:
        d.store.transition(
            job_id,
            [State.SUBMITTING],
            State.SUBMIT_UNKNOWN,
            step_s=600,
            change=Change(at_provider=True),
        )
        return
    deadline_ms = int((time.time() + deadline_in_s) * 1000)
    d.store.transition(
        job_id,
        [State.SUBMITTING],
        State.RUNNING,
        step_s=5,
        change=Change(provider_task_id="t-1", deadline_ms=deadline_ms, at_provider=True),
    )
    if state in (State.RUNNING, State.FAILED, State.CANCELLED):
        if state != State.RUNNING:
            d.store.transition(job_id, [State.RUNNING], state, change=Change(at_provider=False))
        return
    d.store.transition(
        job_id, [State.RUNNING], State.MIRRORING, step_s=0, change=Change(at_provider=False)
    )
    if state == State.MIRRORING:
        return
    d.store.transition(job_id, [State.MIRRORING], state)


def lease(d: Deps, job_id: str) -> float | None:
    return d.redis.zscore(keys.gate("sim", KEY), job_id)


def config(d: Deps) -> ProviderConfig:
    return d.config("sim")


def dispatched(d: Deps, job_id: str) -> None:
    """A queued job holding a slot (its submit not yet run)."""
    d.store.create(job_id, spec())
    assert [x.job_id for x in d.gate.dispatch(config(d))] == [job_id]
