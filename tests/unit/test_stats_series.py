"""The per-minute series behind the dashboard's charts (``Stats.series``) and the histograms per
provider and model: what each figure counts, that they ride in the batched write, and that the
steps feed them (a 503, a 429, a submit, a failure, a success). Real Redis (the unit tier's),
fake providers on httpx's mock transport.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import httpx
import pytest
import redis

from tests.support.fakes import FakeZhipu, catalogue, fake_deps, job
from workers.deps import Deps
from workers.domain.errors import (
    CONCURRENCY_LIMITED,
    INVALID_REQUEST,
    PROVIDER_UNAVAILABLE,
    RATE_LIMITED,
    PermanentError,
    RetryableError,
    SubmitOutcomeUnknown,
    Throttled,
)
from workers.domain.jobs import State
from workers.providers.http import HttpFailure, classify_status
from workers.redis import keys
from workers.redis import stats as stats_module
from workers.redis.stats import SERIES_MINUTES, Stats, minute, trouble
from workers.steps import endings, poll, submit

MODEL = "cogvideox-flash"


@pytest.fixture
def stats(redis_db: redis.Redis) -> Stats:
    return Stats(redis_db, flush_interval_s=60)


def _failure(status: int) -> HttpFailure:
    return HttpFailure("sim", status, None, "x", None)


# -- what counts as what ---------------------------------------------------------------------


def test_trouble_tells_429s_from_errors_from_answers() -> None:
    assert trouble(classify_status(_failure(429))) == "throttled"
    assert trouble(RetryableError("Zhipu 1303", code=RATE_LIMITED)) == "throttled"
    assert trouble(RetryableError("refused", code=PROVIDER_UNAVAILABLE)) == "error"
    assert trouble(RetryableError("busy", code=CONCURRENCY_LIMITED)) == "throttled"
    for status in (500, 502, 503, 408):
        assert trouble(classify_status(_failure(status))) == "error", status
    assert trouble(SubmitOutcomeUnknown("no answer")) == "error"
    # Answers the provider gave on purpose, and vidqueue's own rate limiter: not counted
    assert trouble(classify_status(_failure(400))) is None
    assert trouble(classify_status(_failure(401))) is None
    assert trouble(PermanentError("bad", code=INVALID_REQUEST)) is None
    assert trouble(Throttled("no token", retry_after_s=1)) is None
    assert trouble(ValueError("not ours")) is None


# -- the series ------------------------------------------------------------------------------


def test_the_series_counts_this_minute_and_means_the_observations(
    stats: Stats, redis_db: redis.Redis
) -> None:
    for state in ("succeeded", "succeeded", "succeeded", "failed", "cancelled", "running"):
        stats.count_ended(state)
    stats.count("sim", "k1", "throttled", 2)
    stats.count("sim", "k1", "error")
    stats.count("sim", "k1", "poll", 5)  # not a series figure
    for seconds in (1.0, 3.0):
        stats.observe("detection_lag", seconds)
    stats.observe("time_to_submit", 0.5, provider="sim", model=MODEL)
    stats.observe("generation", 40.0)  # not a series figure
    # Nothing is written before the flush
    assert not redis_db.exists(keys.series(minute()))
    series = stats.series()
    print("series, last minute:", {k: v[-1] for k, v in series.as_dict().items()})
    assert len(series.minutes) == SERIES_MINUTES
    assert series.minutes == sorted(series.minutes)
    assert series.minutes[-1] == minute() * 60
    assert {b - a for a, b in zip(series.minutes, series.minutes[1:], strict=False)} == {60}
    assert (series.finished[-1], series.failed[-1]) == (3, 1)
    assert (series.throttled[-1], series.errors[-1]) == (2, 1)
    assert series.detection_lag_s[-1] == pytest.approx(2.0)
    assert series.submit_delay_s[-1] == pytest.approx(0.5)
    # The minutes before: zeros and no mean (null in JSON)
    assert set(series.finished[:-1]) == {0}
    assert set(series.detection_lag_s[:-1]) == {None}
    assert set(series.as_dict()) == {
        "minutes",
        "finished",
        "failed",
        "throttled",
        "errors",
        "detection_lag_s",
        "submit_delay_s",
    }
    ttl = redis_db.ttl(keys.series(minute()))
    assert 0 < ttl <= keys.STATS_TTL_S


def test_each_figure_lands_in_the_minute_it_happened(
    stats: Stats, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = minute()
    monkeypatch.setattr(stats_module, "minute", lambda at=None: now - 5 if at is None else now)
    stats.count_ended("succeeded")
    stats.observe("detection_lag", 4.0)
    monkeypatch.undo()
    stats.count_ended("succeeded")
    series = stats.series()
    assert series.finished[-6:] == [1, 0, 0, 0, 0, 1]
    assert series.detection_lag_s[-6] == 4.0
    assert series.detection_lag_s[-1] is None
    # A shorter window ends at the same minute
    assert stats.series(minutes=3).minutes == series.minutes[-3:]


def test_series_figures_ride_in_the_same_single_write(stats: Stats, redis_db: redis.Redis) -> None:
    redis_db.config_resetstat()
    for _ in range(500):
        stats.count_ended("succeeded")
        stats.count("sim", "k1", "throttled")
        stats.observe("detection_lag", 2.0, provider="sim", model=MODEL)
    calls_before = sum(int(v["calls"]) for v in redis_db.info("commandstats").values())
    sent = stats.flush()
    print("commands in the one flush of 1500 figures:", sent)
    # One pipeline: per hash field one HINCRBY(FLOAT), one EXPIRE per per-minute hash
    assert sent <= 20
    calls = sum(int(v["calls"]) for v in redis_db.info("commandstats").values()) - calls_before
    assert calls <= sent + 2  # the INFO itself
    series = stats.series()
    assert (series.finished[-1], series.throttled[-1]) == (500, 500)


# -- histograms per provider and model -------------------------------------------------------


def test_histograms_by_model_split_what_the_total_holds(stats: Stats) -> None:
    stats.observe("generation", 0.3, provider="sim", model=MODEL)
    stats.observe("generation", 7.0, provider="sim", model=MODEL)
    stats.observe("generation", 50.0, provider="other", model="a:b|c")
    stats.observe("generation", 1.0)  # unlabelled: the total only
    total = stats.histogram("generation")
    pairs = stats.histograms_by_model("generation")
    assert set(pairs) == {("sim", MODEL), ("other", "a:b|c")}
    ours = pairs["sim", MODEL]
    assert (ours["count"], ours["sum"], ours["le:0.5"], ours["le:10"]) == (2, 7.3, 1, 2)
    assert pairs["other", "a:b|c"]["le:30"] == 0 and pairs["other", "a:b|c"]["le:60"] == 1
    assert total["count"] == 4
    assert total["sum"] == pytest.approx(58.3)
    assert stats.histograms_by_model("mirror") == {}


# -- the steps feed them ---------------------------------------------------------------------


class Scripted(FakeZhipu):
    """A Zhipu endpoint that answers from a script: ``(status, body)`` per request, in order,
    then as ``FakeZhipu`` does."""

    def __init__(self) -> None:
        super().__init__()
        self.script: list[tuple[int, Mapping[str, object]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.script:
            status, body = self.script.pop(0)
            if request.method == "POST" and status == 200:
                body = {**body, "id": "t-" + json.loads(request.content)["request_id"]}
            return httpx.Response(status, json=body)
        return super().__call__(request)


@pytest.fixture
def fake() -> Scripted:
    return Scripted()


@pytest.fixture
def d(redis_db: redis.Redis, fake: Scripted, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deps]:
    monkeypatch.setenv("KEY_A", "secret-a")
    deps = fake_deps(redis_db, catalogue(max_in_flight=2), fake)
    deps.stats = Stats(redis_db, flush_interval_s=60)
    yield deps
    deps.stats.flush()


BUSY = {"error": {"code": "1303", "message": "too many requests"}}
DOWN = {"error": {"message": "upstream down"}}
PROCESSING = {"model": "m", "task_status": "PROCESSING"}


def test_steps_count_errors_429s_submit_delay_and_endings(d: Deps, fake: Scripted) -> None:
    job(d.store, "j1", producer="A")
    job(d.store, "j2", producer="A")
    assert len(endings.dispatch("sim", d)) == 2
    # A 503 and a 429 on submit, then both submits go through
    fake.script = [(503, DOWN), (429, BUSY)]
    submit.submit("j1", d)
    submit.submit("j2", d)
    fake.script = [(200, PROCESSING), (200, PROCESSING)]
    submit.submit("j1", d)
    submit.submit("j2", d)
    assert {d.store.row(j).state for j in ("j1", "j2")} == {State.RUNNING}  # type: ignore[union-attr]
    # A poll answered 429, then the provider fails one job
    fake.script = [(429, BUSY), (200, {"model": "m", "task_status": "FAIL"})]
    poll.poll("j1", d)
    poll.poll("j1", d)
    assert d.store.row("j1").state == State.FAILED  # type: ignore[union-attr]
    series = d.stats.series(minutes=2)
    print("series:", series.as_dict())
    # The figures may straddle a minute boundary: add the last two minutes up
    assert sum(series.errors) == 1
    assert sum(series.throttled) == 2
    assert sum(series.failed) == 1 and sum(series.finished) == 0
    assert any(x is not None and x >= 0 for x in series.submit_delay_s)
    by_key = d.stats.requests("sim", "KEY_A")
    assert (by_key["error"], by_key["throttled"]) == (1, 2)
    assert ("sim", MODEL) in d.stats.histograms_by_model("time_to_submit")
    assert d.stats.histograms_by_model("time_to_submit")["sim", MODEL]["count"] == 2


def test_vidqueues_own_rate_limit_is_not_a_provider_429(
    d: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    job(d.store, "j1", producer="A")
    endings.dispatch("sim", d)

    def empty(*_: object) -> None:
        raise Throttled("no request token", retry_after_s=1)

    monkeypatch.setattr(d.limiter, "take", empty)
    submit.submit("j1", d)
    assert sum(d.stats.series(minutes=2).throttled) == 0
    assert d.stats.requests("sim", "KEY_A")["throttled"] == 0
