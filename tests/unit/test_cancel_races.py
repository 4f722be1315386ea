"""Cancels that race a submit in flight, against a real Redis and a fake provider."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import redis

from tests.support.fakes import FakeZhipu, catalogue, fake_deps, job
from workers.domain.errors import JobNotFound
from workers.domain.jobs import State
from workers.domain.row import JobRow
from workers.steps import cancelling, endings, submit


@pytest.fixture
def d(redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KEY_A", "secret-a")
    return fake_deps(redis_db, catalogue(), FakeZhipu())


def test_a_cancel_requested_during_submit_is_carried_out_after_it(d: Any) -> None:
    # Given a job whose submit is under way
    job(d.store, "j1", producer="A")
    endings.dispatch("sim", d)
    real_submit = d.provider("sim").submit

    def submit_while_cancelled(*args: Any, **kwargs: Any) -> Any:
        # When the producer cancels while the provider call is in flight
        assert d.store.fields("j1")["state"] == State.SUBMITTING
        assert cancelling.cancel("j1", d) == []
        return real_submit(*args, **kwargs)

    d.provider("sim").submit = submit_while_cancelled
    steps = submit.submit("j1", d)
    # Then once the provider answered, the job is cancelled (still counted until it lets go)
    row = d.store.row("j1")
    assert row is not None
    assert row.state == State.CANCELLED
    assert row.provider_task_id
    assert row.at_provider
    assert {s.task for s in steps} >= {"cancel", "poll"}


def test_a_cancel_that_reads_a_stale_state_tries_again(d: Any) -> None:
    # Given a job that has just moved from submitting to running
    job(d.store, "j1", producer="A")
    endings.dispatch("sim", d)
    submit.submit("j1", d)
    real_row = d.store.row
    assert real_row("j1").state == State.RUNNING
    # When a cancel first reads it as "submitting" (a read from before the submit finished)
    reads = iter([dataclasses.replace(real_row("j1"), state=State.SUBMITTING)])

    def stale_once(job_id: str) -> JobRow | None:
        return next(reads, None) or real_row(job_id)

    d.store.row = stale_once
    cancelling.cancel("j1", d)
    # Then the cancel is not dropped: the running job is cancelled
    assert real_row("j1").state == State.CANCELLED


def test_cancelling_a_missing_job_raises_job_not_found(d: Any) -> None:
    # A JobNotFound, which is a KeyError too (the client's documented contract)
    with pytest.raises(JobNotFound) as raised:
        cancelling.cancel("ghost", d)
    assert isinstance(raised.value, KeyError)
    assert raised.value.job_id == "ghost"
