"""API keys never appear in logs, Redis (job records, task messages) or task arguments."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tests.support.live import KEYS, LiveStack
from workers.domain import messages
from workers.domain.jobs import State


def _redis_values(live: LiveStack) -> bytes:
    """Every string, hash, list and zset value in the live Redis, concatenated."""
    out = []
    for key in live.redis.scan_iter(count=1000):
        kind = live.redis.type(key)
        if kind == b"string":
            out.append(live.redis.get(key) or b"")
        elif kind == b"hash":
            out += [k + b"=" + v for k, v in live.redis.hgetall(key).items()]
        elif kind == b"list":
            out += live.redis.lrange(key, 0, -1)
        elif kind == b"zset":
            out += live.redis.zrange(key, 0, -1)
    return b"\n".join(out)


def test_api_keys_appear_in_no_log_and_no_redis_value(idle_stack: LiveStack) -> None:
    # Given a run that submitted, polled and mirrored jobs, one of them failing
    live = idle_stack
    ok = live.client.enqueue({"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a"})
    live.wait_all([ok.id])
    live.set_sim(fail_rate=1.0)
    bad = live.client.enqueue({"provider": "zhipu", "model": "cogvideox-flash", "prompt": "b"})
    assert live.wait_all([bad.id])[0].state == State.FAILED
    # Then no service log and no Redis value holds any API key
    logs = {p.name: p.read_text(errors="replace") for p in (live.stack.run_dir / "logs").iterdir()}
    assert "vidqueue.submit" in logs["worker1.log"] or "vidqueue.submit" in logs.get(
        "worker2.log", ""
    )
    stored = _redis_values(live)
    for secret in KEYS.values():
        assert not [name for name, text in logs.items() if secret in text]
        assert secret.encode() not in stored


def test_task_messages_carry_the_job_id_and_nothing_else() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    class App:
        @contextlib.contextmanager
        def producer_or_acquire(self) -> Iterator[str]:
            yield "producer"

        def send_task(self, name: str, **options: Any) -> None:
            sent.append((name, options))

    published = messages.send(
        App(), [messages.Step("submit", "job-1"), messages.Step("poll", "job-1", 2.5)]
    )
    # The scheduled poll waits in Redis (a due poller publishes it): only the submit is sent.
    assert published == 1
    [(name, options)] = sent
    assert (name, options["args"], options["queue"]) == ("vidqueue.submit", ["job-1"], "submit")
    assert set(options) == {"args", "queue", "headers", "producer"}
    assert set(options["headers"]) == {messages.SENT_HEADER}
    assert "countdown" not in options and "eta" not in options
