"""Every Lua script against a real Redis with the key layout swapped: ``workers.redis.keys`` is
the only place a key is spelled.

The scripts get every key in KEYS, or a prefix from ``keys`` in ARGV when they find an id inside
Redis. So when ``keys`` answers in another layout (``alt|job|{id}`` instead of ``vq:job:{id}``),
every script must still find what it wrote, and Redis must hold no key of the real layout: a key
spelled in Lua, or in Python outside ``keys``, shows up as one, or as a job a script cannot find.
Static checks cover the paths these tests do not take, and the house style: ARGV named at the
top, KEYS and ARGV documented in the header comment.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import redis

from config.providers import ProviderConfig, parse
from workers.domain.jobs import JobSpec, State
from workers.redis import (
    archive,
    enqueue_scripts,
    gate_scripts,
    keys,
    limiter,
    reuse,
    store_scripts,
)
from workers.redis.enqueue import Created, Creator, NewJob
from workers.redis.gate import Gate
from workers.redis.limiter import RateLimiter
from workers.redis.store import Store

SCRIPT_MODULES = (store_scripts, gate_scripts, enqueue_scripts, limiter, archive, reuse)
FRAGMENTS = ("NOW",)  # pieces of Lua that other scripts start with; not scripts themselves


def _alt(layout: Callable[..., str]) -> Callable[..., str]:
    def alt(*args: Any, **kwargs: Any) -> str:
        name = layout(*args, **kwargs)
        assert name.startswith(keys.PREFIX + ":")
        return "alt|" + name.removeprefix(keys.PREFIX + ":").replace(":", "|")

    return alt


def use_alt_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key function of ``keys`` answers in another layout (``alt|job|{id}``); the
    ``*_prefix`` ones follow, as they are built from the others."""
    for name, function in list(vars(keys).items()):
        if not inspect.isfunction(function) or name.endswith("_prefix"):
            continue
        if function.__module__ == keys.__name__ and function.__annotations__["return"] == "str":
            monkeypatch.setattr(keys, name, _alt(function))


@pytest.fixture
def alt_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    use_alt_layout(monkeypatch)


def only_alt_keys(client: redis.Redis) -> None:
    names = sorted(name.decode() for name in client.scan_iter(count=1000))
    assert names, "the test wrote nothing"
    assert [n for n in names if not n.startswith("alt|") or ":" in n] == []


def provider(**table: Any) -> ProviderConfig:
    base = {"kind": "zhipu", "base_url": "http://127.0.0.1:9/zhipu/api/paas/v4"}
    return parse({"providers": {"sim": {**base, "api_key_env": ["KEY_A"], **table}}}).get("sim")


def spec(**overrides: Any) -> JobSpec:
    fields: dict[str, Any] = {"provider": "sim", "model": "cogvideox-flash", "prompt": "a boat"}
    return JobSpec.model_validate({**fields, **overrides})


def create(client: redis.Redis, *jobs: NewJob) -> Created:
    created = Creator(client).create(jobs, producer="api")
    assert created is not None
    return created


# -- the scripts, with the layout swapped ----------------------------------------------------


@pytest.mark.usefixtures("alt_layout")
def test_create_writes_every_index_and_finds_a_held_key_under_another_layout(
    redis_db: redis.Redis,
) -> None:
    # Given a job with an idempotency key, and one for a tenant
    first = NewJob.of("job-1", spec(idempotency_key="order-1"), "f")
    create(redis_db, first, NewJob.of("job-2", spec(labels={"tenant": "acme"})))
    # When the key is used again, for the same request and for another one
    same = create(redis_db, NewJob.of("job-3", spec(idempotency_key="order-1"), "f"))
    other = create(redis_db, NewJob.of("job-4", spec(idempotency_key="order-1"), "g"))
    # Then its holder was found (the same request: the job; another: a conflict)
    assert (same.existing, same.conflict) == ({0: "job-1"}, None)
    assert other.conflict == 0
    # And every index holds the two jobs, under the keys of the layout in use
    assert redis_db.zrange(keys.waiting("sim", "api"), 0, -1) == [b"job-1"]
    assert redis_db.zrange(keys.waiting("sim", "acme"), 0, -1) == [b"job-2"]
    assert redis_db.zscore(keys.waiting("sim", "api"), "job-1") == keys.wait_score(0, 1)
    assert set(redis_db.zrange(keys.fair_queue("sim"), 0, -1)) == {b"api", b"acme"}
    for index in (keys.all_jobs(), keys.by_producer("api")):
        assert set(redis_db.zrange(index, 0, -1)) == {b"job-1", b"job-2"}
    assert redis_db.smembers(keys.by_state(State.QUEUED)) == {b"job-1", b"job-2"}
    assert redis_db.smembers(keys.producers()) == {keys.by_producer("api").encode()}
    assert redis_db.get(keys.idempotency("order-1", producer="api")) == b"job-1"
    # (no timeline key yet: the creation is read back from created_at, workers.domain.lean)
    assert redis_db.llen(keys.events("job-2")) == 0
    only_alt_keys(redis_db)


def test_a_batch_over_several_queues_puts_each_job_in_its_own(redis_db: redis.Redis) -> None:
    """CREATE passes each waiting queue's keys once; the jobs' rows name theirs."""
    # Given a batch interleaving two providers and two fair-share keys, one key repeated
    tenants = [("sim", "acme"), ("other", "api"), ("sim", "acme"), ("sim", "api")]
    jobs = [
        NewJob.of(f"job-{n}", spec(provider=name, labels={"tenant": fair}, priority=n))
        for n, (name, fair) in enumerate(tenants)
    ]
    # When it is created
    create(redis_db, *jobs)
    # Then each queue holds its jobs by priority, and each fair zset is scored by its heads
    assert redis_db.zrange(keys.waiting("sim", "acme"), 0, -1) == [b"job-2", b"job-0"]
    assert redis_db.zrange(keys.waiting("other", "api"), 0, -1) == [b"job-1"]
    assert redis_db.zrange(keys.waiting("sim", "api"), 0, -1) == [b"job-3"]
    heads: Any = redis_db.zrange(keys.fair_queue("sim"), 0, -1, withscores=True)
    assert heads == [(b"api", keys.wait_score(3, 4)), (b"acme", keys.wait_score(2, 3))]
    assert redis_db.zrange(keys.fair_queue("other"), 0, -1) == [b"api"]
    assert [redis_db.hget(keys.job(job.job_id), "fair") for job in jobs] == [
        b"acme", b"api", b"acme", b"api",
    ]  # fmt: skip


@pytest.mark.usefixtures("alt_layout")
def test_dispatch_caps_and_cool_down_work_under_another_layout(redis_db: redis.Redis) -> None:
    # Given three waiting jobs, two for one fair-share key, and two API keys of one slot each
    config = provider(api_key_env=["KEY_A", "KEY_B"])
    create(redis_db, *(NewJob.of(f"job-{n}", spec()) for n in range(2)))
    create(redis_db, NewJob.of("job-t", spec(labels={"tenant": "acme"})))
    gate = Gate(redis_db)
    # When KEY_B is told "concurrency too high" (it cools down), then jobs are dispatched
    assert gate.shrink(config, "KEY_B") == 1.0
    first = gate.dispatch(config)
    # Then only KEY_A takes one, the first job of the fair-share key with none in flight
    assert [(d.job_id, d.key_id) for d in first] == [("job-0", "KEY_A")]
    assert redis_db.hget(keys.job("job-0"), "key_id") == b"KEY_A"
    assert redis_db.hgetall(keys.in_flight_by_fair("sim")) == {b"api": b"1"}
    assert redis_db.zscore(keys.due(), "job-0") is not None
    # And once the cool-down is over, KEY_B serves the other fair-share key first
    redis_db.delete(keys.cooling("sim", "KEY_B"))
    assert [(d.job_id, d.key_id) for d in gate.dispatch(config)] == [("job-t", "KEY_B")]
    assert gate.in_flight("sim", "KEY_B") == 1
    assert gate.grow(config, "KEY_B") == 1.0
    only_alt_keys(redis_db)


@pytest.mark.usefixtures("alt_layout")
def test_a_job_steps_through_its_states_and_is_pruned_under_another_layout(
    redis_db: redis.Redis,
) -> None:
    store = Store(redis_db, grace_s=0)
    create(redis_db, NewJob.of("job-1", spec()))
    # A transition moves the job between the state sets (the one it leaves is read in Redis)
    assert store.transition("job-1", [State.QUEUED], State.SUBMITTING, step_s=0)
    assert redis_db.smembers(keys.by_state(State.QUEUED)) == set()
    assert redis_db.smembers(keys.by_state(State.SUBMITTING)) == {b"job-1"}
    # The due poller finds the job by the id in the due zset; a lost step is re-sent, claimed
    assert [(d.job_id, d.kind) for d in store.take_due()] == [("job-1", "check")]
    assert store.mark_resent("job-1", State.SUBMITTING, "submit")
    assert store.claim("job-1", [State.SUBMITTING], lease_s=30).ok
    assert store.transition("job-1", [State.SUBMITTING], State.FAILED, event="gave up")
    assert redis_db.ttl(keys.job("job-1")) > 0
    only_alt_keys(redis_db)
    # And once its record expired, pruning finds that out and drops it from every index
    redis_db.delete(keys.job("job-1"), keys.events("job-1"))
    assert store.prune_expired(ttl_s=0) == 1
    assert redis_db.smembers(keys.by_state(State.FAILED)) == set()
    assert redis_db.zcard(keys.all_jobs()) == 0


@pytest.mark.usefixtures("alt_layout")
def test_leases_and_the_rate_limit_work_under_another_layout(redis_db: redis.Redis) -> None:
    # Given two dispatched jobs whose leases expired (a 1 ms lease)
    config = provider(max_in_flight=2)
    create(redis_db, *(NewJob.of(f"job-{n}", spec()) for n in range(2)))
    gate = Gate(redis_db, lease_s=0.001)
    assert len(gate.dispatch(config)) == 2
    redis_db.hset(keys.job("job-0"), "state", "running")
    time.sleep(0.01)
    assert sorted(gate.expired("sim", "KEY_A")) == ["job-0", "job-1"]
    # When they are reclaimed: the one at the provider keeps its slot, the other gives it back
    assert gate.reclaim("sim", "KEY_A", "job-0", ",running,") == 1
    assert gate.reclaim("sim", "KEY_A", "job-1", ",running,") == 2
    assert gate.holders("sim", "KEY_A") == ["job-0"]
    assert redis_db.hgetall(keys.in_flight_by_fair("sim")) == {b"api": b"1"}
    # And the others do what they say
    score = keys.wait_score(0, 2)
    gate.requeue("sim", "api", "job-1", str(score))
    assert redis_db.zrange(keys.waiting("sim", "api"), 0, -1) == [b"job-1"]
    assert redis_db.zrange(keys.fair_queue("sim"), 0, -1, withscores=True) == [(b"api", score)]
    assert gate.renew("sim", "KEY_A", "job-0")
    assert gate.release("sim", "KEY_A", "job-0")
    assert redis_db.hgetall(keys.in_flight_by_fair("sim")) == {}
    assert RateLimiter(redis_db).try_take(config, "KEY_A") == 0
    assert redis_db.hexists(keys.rate("sim", "KEY_A"), "tokens")
    only_alt_keys(redis_db)


# -- the layout itself -------------------------------------------------------------------------


def test_the_layout_is_the_documented_one() -> None:
    """The names in the ``keys`` docstring: Redis already holds keys by these."""
    built = {
        "vq:job:j": keys.job("j"),
        "vq:job:j:events": keys.events("j"),
        "vq:jobs": keys.all_jobs(),
        "vq:state:running": keys.by_state("running"),
        "vq:producer:p": keys.by_producer("p"),
        "vq:producers": keys.producers(),
        "vq:idem:p:8254c329a92850f6d539dd376f4816ee": keys.idempotency("k", producer="p"),
        "vq:seq": keys.sequence(),
        "vq:wait:s:default": keys.waiting("s"),
        "vq:wait:s:f": keys.waiting("s", "f"),
        "vq:fair:s": keys.fair_queue("s"),
        "vq:inflight:s": keys.in_flight_by_fair("s"),
        "vq:gate:s:K": keys.gate("s", "K"),
        "vq:cap:s:K": keys.effective_cap("s", "K"),
        "vq:cool:s:K": keys.cooling("s", "K"),
        "vq:rate:s:K": keys.rate("s", "K"),
        "vq:durations:s:m": keys.durations("s", "m"),
        "vq:stats:s:K:7": keys.stats("s", "K", 7),
        "vq:hist:mirror": keys.histogram("mirror"),
        "vq:due": keys.due(),
    }
    assert list(built.values()) == list(built)
    assert keys.wait_score(9, 5) == 5 and keys.wait_score(0, 0) == 9 * keys.PRIORITY_STRIDE


@pytest.mark.parametrize("layout", ["real", "alt"])
def test_each_prefix_is_the_beginning_of_its_keys(
    layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the scripts rely on when they append an id they read in Redis to a prefix."""
    if layout == "alt":
        use_alt_layout(monkeypatch)
        assert keys.job("j") == "alt|job|j"
    for name in ("job-1", "01J9ZQ", ""):
        assert keys.job(name) == keys.job_prefix() + name
        assert keys.by_state(name) == keys.state_prefix() + name
        assert keys.waiting("sim", name) == keys.waiting_prefix("sim") + name


# -- the Lua sources -------------------------------------------------------------------------


def scripts() -> dict[str, tuple[ModuleType, str]]:
    """Every public script constant of the scripts modules: name → (module, Lua)."""
    found: dict[str, tuple[ModuleType, str]] = {}
    for module in SCRIPT_MODULES:
        for name, value in vars(module).items():
            lua = isinstance(value, str) and "redis.call(" in value
            public = name.isupper() and not name.startswith("_")
            if lua and public and name not in FRAGMENTS:
                found[f"{module.__name__}.{name}"] = (module, value)
    return found


def header(module: ModuleType, name: str) -> str:
    """The comment block right above ``NAME: Final`` in the module's source."""
    match = re.search(rf"((?:^#.*\n)+)^{name}: Final", inspect.getsource(module), re.MULTILINE)
    assert match, f"{module.__name__}.{name} has no header comment"
    return match.group(1)


def test_the_scripts_are_found() -> None:
    names = {name.rsplit(".", 1)[1] for name in scripts()}
    assert {"TRANSITION", "CLAIM", "TAKE_DUE", "RESEND", "PRUNE", "CREATE", "TAKE"} <= names
    assert {"DISPATCH", "RELEASE", "RENEW", "EXPIRED", "RECLAIM", "REQUEUE"} <= names
    assert {"SHRINK", "GROW"} <= names


@pytest.mark.parametrize("name", sorted(scripts()))
def test_a_script_spells_no_key_and_no_schema_number(name: str) -> None:
    _, lua = scripts()[name]
    code = re.sub(r"--[^\n]*", "", lua)  # comments may say job:{id}
    literals = re.findall(r"'([^']*)'|\"([^\"]*)\"", code)
    spelled = [a or b for a, b in literals if ":" in a + b or (a or b).startswith(keys.PREFIX)]
    assert spelled == []
    assert re.findall(r"\b\d{6,}\b", code) == []  # e.g. the priority stride, a TTL in ms


@pytest.mark.parametrize("name", sorted(scripts()))
def test_a_script_names_its_argv_at_the_top_and_documents_keys_and_argv(name: str) -> None:
    module, lua = scripts()[name]
    for line in lua.splitlines():
        if re.search(r"ARGV\[\d+\]", line):
            assert line.startswith("local "), f"ARGV read outside the named locals: {line}"
    documented = header(module, name.rsplit(".", 1)[1])
    for used in set(re.findall(r"(?:KEYS|ARGV)\[\d+\]", lua)):
        assert used in documented, f"{used} is not in the header comment"
