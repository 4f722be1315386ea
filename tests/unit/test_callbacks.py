"""Provider callbacks, below the HTTP route: the per-job token and URL, what a body hints, and
``Store.hasten`` (the HASTEN script) against a real Redis: a callback brings a waiting poll
forward once, and changes nothing else for any other job."""

from __future__ import annotations

import pytest
import redis

from config.providers import Catalogue, ProviderConfig
from config.settings import Settings
from tests.support.storing import GRACE_S, job_in, redis_now_ms
from workers.domain import callbacks
from workers.domain.change import Change
from workers.domain.errors import ConfigError
from workers.domain.jobs import State
from workers.domain.row import PollMode
from workers.redis import keys
from workers.redis.store import Store

SECRET = "s3cret-for-tests"


def config(**fields: object) -> ProviderConfig:
    table = {"name": "sim", "kind": "kling", "base_url": "http://x", "api_key_env": ["K"]}
    return ProviderConfig.model_validate(table | fields)


# -- the token and the URL ---------------------------------------------------------------


def test_a_token_is_unique_per_job_and_provider_and_checked_exactly() -> None:
    token = callbacks.token(SECRET, "kling", "job-1")
    assert token != callbacks.token(SECRET, "kling", "job-2")
    assert token != callbacks.token(SECRET, "ark", "job-1")
    assert token != callbacks.token("other-secret", "kling", "job-1")
    assert callbacks.token_ok(SECRET, "kling", "job-1", token)
    assert not callbacks.token_ok(SECRET, "kling", "job-2", token)
    assert not callbacks.token_ok(SECRET, "kling", "job-1", token[:-1])
    assert not callbacks.token_ok("", "kling", "job-1", callbacks.token("", "kling", "job-1"))


def test_the_url_carries_provider_job_and_token_under_the_base() -> None:
    url = callbacks.url("https://vq.example.com/", "kling", "job-1", SECRET)
    token = callbacks.token(SECRET, "kling", "job-1")
    assert url == f"https://vq.example.com/v1/callbacks/kling/job-1/{token}"


def test_the_base_url_is_the_providers_own_else_the_public_one() -> None:
    public = Settings(public_base_url="https://public.example.com")
    assert callbacks.base_url(config(), Settings()) == ""
    assert callbacks.base_url(config(), public) == "https://public.example.com"
    own = config(callback_base_url="https://cb.example.com/")
    assert callbacks.base_url(own, public) == "https://cb.example.com"


def test_armed_callbacks_without_a_secret_refuse_to_start() -> None:
    catalogue = Catalogue({"sim": config(callback_base_url="https://cb.example.com")})
    with pytest.raises(ConfigError, match=r"VIDQUEUE_CALLBACK_SECRET.*providers\.sim"):
        catalogue.check_callbacks("", "")
    with pytest.raises(ConfigError, match="VIDQUEUE_PUBLIC_BASE_URL"):
        Catalogue({"sim": config()}).check_callbacks("https://vq.example.com", "")
    catalogue.check_callbacks("", SECRET)
    Catalogue({"sim": config()}).check_callbacks("", "")


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        (b'{"task_id": "t", "task_status": "processing"}', "working"),
        (b'{"code": 0, "data": {"task_status": "submitted"}}', "working"),
        (b'{"id": "cgt-1", "status": "running"}', "working"),
        (b'{"id": "v", "state": "queueing"}', "working"),
        (b'{"task_id": "t", "task_status": "succeed"}', "poll"),
        (b'{"code": 0, "data": {"task_status": "failed"}}', "poll"),
        (b'{"id": "cgt-1", "status": "expired"}', "poll"),
        (b'{"id": "v", "state": "success"}', "poll"),
        (b'{"something": "else"}', "poll"),
        (b"not json", "poll"),
        (b"[1, 2]", "poll"),
    ],
)
def test_only_a_body_saying_still_working_skips_the_poll(body: bytes, hint: str) -> None:
    assert callbacks.hint(body) == hint


# -- HASTEN: bringing a waiting poll forward ---------------------------------------------


@pytest.fixture
def store(redis_db: redis.Redis) -> Store:
    return Store(redis_db, grace_s=GRACE_S)


def waiting(store: Store, job_id: str, *, mode: PollMode = PollMode.SAFETY) -> None:
    """A running job whose next poll waits 120 s on its schedule."""
    job_in(store, job_id, State.RUNNING)
    change = Change(poll_mode=mode, at_provider=True)
    assert store.transition(job_id, [State.RUNNING], None, step_s=120, change=change)


def hasten(store: Store, job_id: str, *, working: bool = False) -> str:
    return store.hasten(job_id, "sim", min_gap_s=5, working=working)


def test_a_callback_brings_a_waiting_poll_forward_and_marks_it_sent(store: Store) -> None:
    waiting(store, "j1")
    before = redis_now_ms(store.redis)
    assert hasten(store, "j1") == "hastened"
    fields = store.fields("j1")
    assert before <= int(fields["step_until"]) <= redis_now_ms(store.redis)
    assert fields["sent"] == fields["step_until"]
    due = store.redis.zscore(keys.due(), "j1")
    assert due == pytest.approx(int(fields["sent"]) + GRACE_S * 1000)
    assert store.callback_counts("sim") == {"hastened": 1}


def test_a_second_callback_while_the_poll_is_out_changes_nothing(store: Store) -> None:
    waiting(store, "j1")
    assert hasten(store, "j1") == "hastened"
    fields = store.fields("j1")
    assert hasten(store, "j1") == "in_flight"
    assert store.fields("j1") == fields


def test_a_callback_while_a_worker_polls_the_job_starts_no_second_chain(store: Store) -> None:
    waiting(store, "j1")
    assert hasten(store, "j1") == "hastened"
    claim = store.claim("j1", [State.RUNNING], lease_s=30)
    assert claim.ok
    fields = store.fields("j1")
    assert hasten(store, "j1") == "in_flight"
    assert store.fields("j1") == fields


def test_a_replayed_callback_brings_at_most_one_poll_forward_per_gap(store: Store) -> None:
    waiting(store, "j1")
    assert hasten(store, "j1") == "hastened"
    # the poll ran and scheduled the next one far ahead
    assert store.claim("j1", [State.RUNNING], lease_s=30).ok
    assert store.transition("j1", [State.RUNNING], None, step_s=120)
    fields = store.fields("j1")
    assert hasten(store, "j1") == "too_soon"
    assert store.fields("j1") == fields


@pytest.mark.parametrize(
    ("state", "outcome"),
    [(State.QUEUED, "finished"), (State.MIRRORING, "finished"), (State.SUCCEEDED, "finished")],
)
def test_a_callback_for_a_job_not_at_the_provider_changes_nothing(
    store: Store, state: State, outcome: str
) -> None:
    job_in(store, "j1", state)
    assert store.transition("j1", [state], None, change=Change(poll_mode=PollMode.SAFETY))
    before, due = store.fields("j1"), store.redis.zscore(keys.due(), "j1")
    assert hasten(store, "j1") == outcome
    assert (store.fields("j1"), store.redis.zscore(keys.due(), "j1")) == (before, due)


def test_unknown_jobs_other_providers_and_unarmed_jobs_change_nothing(store: Store) -> None:
    assert hasten(store, "nope") == "unknown"
    waiting(store, "j1")
    before = store.fields("j1")
    assert store.hasten("j1", "other", min_gap_s=5, working=False) == "unknown"
    waiting(store, "j2", mode=PollMode.STEADY)
    assert hasten(store, "j2") == "not_armed"
    assert store.fields("j1") == before
    assert store.callback_counts("sim") == {"unknown": 1, "not_armed": 1}


def test_a_body_saying_still_working_is_counted_and_polls_nothing(store: Store) -> None:
    waiting(store, "j1")
    before = store.fields("j1")
    assert hasten(store, "j1", working=True) == "working"
    assert store.fields("j1") == before
    assert store.callback_counts("sim") == {"working": 1}


def test_a_cancelled_job_the_provider_still_works_on_can_be_hastened(store: Store) -> None:
    waiting(store, "j1")
    assert store.transition("j1", [State.RUNNING], State.CANCELLED, step_s=120)
    assert hasten(store, "j1") == "hastened"
