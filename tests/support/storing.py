"""A job store on the unit tier's Redis, and jobs brought to a state through allowed
transitions only: the helpers of the store, transition and row tests."""

from __future__ import annotations

import itertools
import re
from collections import deque
from typing import Any

import redis

from workers.domain.jobs import NEXT, JobSpec, State
from workers.redis import keys
from workers.redis.store import Store

# A short grace (a store's recheck time), so tests that wait for it are quick.
GRACE_S = 0.5
ISO_UTC_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def spec(**overrides: Any) -> JobSpec:
    fields: dict[str, Any] = {"provider": "sim", "model": "cogvideox-flash", "prompt": "a boat"}
    return JobSpec.model_validate({**fields, **overrides})


def redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def path_to(state: State) -> list[State]:
    """The shortest chain of allowed transitions from queued to ``state``."""
    paths = deque([[State.QUEUED]])
    while paths:
        path = paths.popleft()
        if path[-1] == state:
            return path
        paths.extend([*path, nxt] for nxt in sorted(NEXT[path[-1]]) if nxt not in path)
    raise AssertionError(f"{state} cannot be reached from queued")


def job_in(store: Store, job_id: str, state: State) -> None:
    """A job brought to ``state`` through allowed transitions only."""
    assert store.create(job_id, spec()) == (job_id, True)
    path = path_to(state)
    for before, after in itertools.pairwise(path):
        assert store.transition(job_id, [before], after)


def snapshot(client: redis.Redis, job_id: str) -> dict[str, Any]:
    """Everything a transition may touch, to check that a refused one touched nothing."""
    return {
        "hash": client.hgetall(keys.job(job_id)),
        "events": client.lrange(keys.events(job_id), 0, -1),
        "due": client.zscore(keys.due(), job_id),
        "states": {s: client.sismember(keys.by_state(s), job_id) for s in State},
        "expires": (client.ttl(keys.job(job_id)) != -1, client.ttl(keys.events(job_id)) != -1),
    }
