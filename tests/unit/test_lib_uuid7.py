"""Job ids from ``uuid_utils.uuid7``: the format vidqueue always issued (32 lowercase hex digits,
version 7, RFC 9562 variant), strictly increasing within a process (across threads too), their
time the clock's (no drift ahead in a burst), and read back by ``workers.domain.uuid7`` as the
library reads it."""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import UTC, datetime

import uuid_utils

from producer.batch import new_job_id
from workers.domain.uuid7 import created_ms, day_of


def test_the_format_is_unchanged() -> None:
    job_id = new_job_id()
    assert re.fullmatch(r"[0-9a-f]{12}7[0-9a-f]{19}", job_id)
    parsed = uuid.UUID(hex=job_id)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert parsed.hex == job_id


def test_ids_increase_strictly_in_a_burst_without_running_ahead_of_the_clock() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_job_id() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    times = [created_ms(i) for i in ids]
    assert all(t is not None and before <= t <= after for t in times)


def test_ids_increase_strictly_across_threads() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        out.extend(new_job_id() for _ in range(5_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in made for i in out]
    assert len(set(every)) == len(every)
    for out in made:
        assert out == sorted(out)


def test_the_time_read_back_is_the_librarys() -> None:
    job_id = new_job_id()
    ms = uuid_utils.UUID(hex=job_id).timestamp
    assert created_ms(job_id) == ms
    assert day_of(job_id) == datetime.fromtimestamp(ms / 1000, UTC).date()


def test_other_shapes_carry_no_time() -> None:
    job_id = new_job_id()
    dashed = str(uuid.UUID(hex=job_id))
    for other in (dashed, job_id.upper(), uuid.uuid4().hex, "j1", ""):
        assert created_ms(other) is None
        assert day_of(other) is None
