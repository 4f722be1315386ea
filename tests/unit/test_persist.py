"""The submit's outcome is written even through a short Redis refusal (``submit._persist``):
the provider's task id exists only in memory, so dropping that write would leave the job to end
as ``submit_unknown``."""

from __future__ import annotations

import pytest
import redis

from workers.steps import submit


def test_a_refused_write_is_tried_again_until_redis_takes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(submit.time, "sleep", lambda _s: None)
    refusals = [redis.exceptions.OutOfMemoryError("OOM"), redis.exceptions.ReadOnlyError("RO")]

    def write() -> bool:
        if refusals:
            raise refusals.pop(0)
        return True

    assert submit._persist(write) is True
    assert refusals == []


def test_any_other_error_is_raised_at_once() -> None:
    calls = []

    def write() -> bool:
        calls.append(1)
        raise redis.exceptions.ResponseError("WRONGTYPE Operation against a key")

    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        submit._persist(write)
    assert calls == [1]


def test_the_wait_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(submit.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(submit.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))

    def write() -> bool:
        raise redis.exceptions.OutOfMemoryError("OOM command not allowed")

    with pytest.raises(redis.exceptions.OutOfMemoryError):
        submit._persist(write)
    assert submit.PERSIST_WAIT_S - 2.0 <= clock[0] <= submit.PERSIST_WAIT_S
