"""Redis high availability: a real Sentinel failover in the middle of a run.

Debian's ``redis-server`` runs a master and a replica, three ``redis-sentinel`` processes watch
them, and a whole stack (a worker, beat, the API, the simulator, SeaweedFS) reaches Redis only
through the Sentinels (``sentinel://…;sentinel://…/0``). While producers enqueue through the
API, the master is failed over (``SENTINEL FAILOVER``) and then SIGKILLed.

What must hold: every job the API acknowledged ends, none is paid twice, and the worker, beat and
the API carry on without a restart. Alongside, a writer measures what asynchronous replication
loses: plain writes acknowledged by the old master after the promotion are gone, while writes
confirmed by a replica (``WAIT``: vidqueue's job creation and submit mark) are all there.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from config.names import TASKS
from config.settings import Settings
from devstack.ports import free_ports
from devstack.stack import Stack
from tests.support.api import AUTH
from tests.support.live import KEYS, stack_settings, use_local_s3_credentials
from workers.domain.jobs import TERMINAL
from workers.redis.connect import connect
from workers.redis.replicas import Replication

MASTER = "vq"
SPEC = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a lighthouse after failover"}


@dataclass
class Ha:
    """The Redis servers (``redis``), the stack on top of them (``app``) and where they listen."""

    redis: Stack
    app: Stack
    settings: Settings
    sentinel_ports: list[int]
    replica_port: int

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[0], socket_timeout=5)

    def master_port(self) -> int:
        return int(self.sentinel().sentinel_get_master_addr_by_name(MASTER)[1])


@contextmanager
def ha_stack(tmp: Path) -> Iterator[Ha]:
    use_local_s3_credentials()
    plain = stack_settings(tmp)
    replica_port, *sentinel_ports = free_ports(4)
    url = ";".join(f"sentinel://127.0.0.1:{port}" for port in sentinel_ports) + "/0"
    settings = plain.model_copy(update={"redis_url": url, "redis_sentinel_master": MASTER})
    with (
        Stack(plain, {}, tmp / "redis") as servers,
        Stack(settings, dict(KEYS), tmp / "run") as app,
    ):
        servers.start_redis()
        servers.start_redis_replica("redis-replica", replica_port)
        for n, port in enumerate(sentinel_ports, 1):
            servers.start_sentinel(f"sentinel{n}", port, MASTER)
        ha = Ha(servers, app, settings, sentinel_ports, replica_port)
        _await_sentinels(ha)
        app.start_s3()
        app.start_simulator(["--gen-time-s", "1.0", "--gen-jitter-s", "0.3"])
        app.start_worker("worker1")
        app.start_beat()
        app.start_api()
        yield ha


def _await_sentinels(ha: Ha, timeout_s: float = 30.0) -> None:
    """Until every Sentinel knows the other two and the replica (a failover needs both)."""
    deadline = time.monotonic() + timeout_s
    for port in ha.sentinel_ports:
        client = redis.Redis(port=port, socket_timeout=5)
        while True:
            master = client.sentinel_master(MASTER)
            if master["num-other-sentinels"] >= 2 and master["num-slaves"] >= 1:
                break
            assert time.monotonic() < deadline, f"Sentinel {port} never saw its peers: {master}"
            time.sleep(0.2)


@dataclass
class Producer:
    """Enqueues through the API as a careful producer does: each job with its own
    Idempotency-Key, a refused or unanswered POST sent again with the same key."""

    api: str
    acked: list[str] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)
    refused: Counter[int] = field(default_factory=Counter)

    def send(self, n: int, pause_s: float = 0.05) -> None:
        with httpx.Client(base_url=self.api, headers=AUTH, timeout=10) as http:
            for _ in range(n):
                self._one(http, uuid.uuid4().hex)
                time.sleep(pause_s)

    def _one(self, http: httpx.Client, key: str) -> None:
        for _ in range(100):
            try:
                answer = http.post("/v1/jobs", json=SPEC, headers={"idempotency-key": key})
            except httpx.HTTPError:
                self.refused[0] += 1
            else:
                if answer.status_code in (200, 202):
                    self.acked.append(answer.json()["id"])
                    self.acked_at.append(time.monotonic())
                    return
                assert answer.status_code == 503, answer.text
                self.refused[503] += 1
            time.sleep(0.2)
        raise AssertionError("the API never took the job")

    def longest_gap_s(self) -> float:
        """The longest wait between two acknowledged jobs (the API's outage, plus a pause)."""
        times = sorted(self.acked_at)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@dataclass
class WriteProbe:
    """Writes counters through the Sentinel client, plain and confirmed by a replica, and
    remembers which writes Redis acknowledged: what a failover then loses is measured."""

    client: redis.Redis
    replication: Replication
    plain: list[int] = field(default_factory=list)
    confirmed: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._write, args=(self.plain, False), daemon=True),
            threading.Thread(target=self._write, args=(self.confirmed, True), daemon=True),
        ]
        for thread in threads:
            thread.start()
        return threads

    def _write(self, acked: list[int], confirm: bool) -> None:
        kind = "wait" if confirm else "plain"
        for i in itertools.count(1):
            if self.stop.is_set():
                return
            try:
                if confirm:
                    self.replication.write(
                        self.client, lambda p, i=i: p.set(f"probe:{kind}:{i}", 1)
                    )
                else:
                    self.client.set(f"probe:{kind}:{i}", 1)
                acked.append(i)
            except redis.RedisError:
                time.sleep(0.05)

    def lost(self, survivor: redis.Redis) -> tuple[int, int]:
        """How many acknowledged plain and confirmed writes the new master does not have."""
        plain = {int(k.rsplit(b":", 1)[1]) for k in survivor.scan_iter("probe:plain:*", 1000)}
        waited = {int(k.rsplit(b":", 1)[1]) for k in survivor.scan_iter("probe:wait:*", 1000)}
        return (
            sum(i not in plain for i in self.plain),
            sum(i not in waited for i in self.confirmed),
        )


def _wait_terminal(ha: Ha, ids: list[str], timeout_s: float) -> dict[str, str]:
    """Every job's state, read through the API (which rides out the failover itself)."""
    states: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=ha.api, headers=AUTH, timeout=10) as http:
        pending = list(ids)
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                answer = http.get(f"/v1/jobs/{job_id}")
                if answer.status_code == 200:
                    states[job_id] = answer.json()["state"]
                    if states[job_id] in TERMINAL:
                        pending.remove(job_id)
                else:
                    states[job_id] = f"HTTP {answer.status_code}"
            time.sleep(0.5)
    return states


@pytest.mark.timeout(300)
def test_a_sentinel_failover_mid_run_loses_no_job_and_pays_nothing_twice(tmp_path: Path) -> None:
    with ha_stack(tmp_path) as ha:
        services = ("worker1", "beat", "api")
        pids = {name: ha.app.processes.status(name).pid for name in services}
        old_master = ha.master_port()
        producer = Producer(ha.api)
        producer.send(15)

        probe = WriteProbe(connect(ha.settings), Replication(1, ha.settings.redis_wait_timeout_ms))
        writers = probe.start()
        during = threading.Thread(target=producer.send, args=(40, 0.05))
        during.start()
        time.sleep(0.5)
        logs = {name: ha.app.processes.log_path(name).stat().st_size for name in services}

        started = time.monotonic()
        assert ha.sentinel().execute_command("SENTINEL", "FAILOVER", MASTER)
        while ha.master_port() == old_master:
            assert time.monotonic() - started < 30, "the Sentinels never promoted the replica"
            time.sleep(0.05)
        promoted_s = time.monotonic() - started
        ha.redis.kill("redis")  # the old master dies for good
        during.join()
        probe.stop.set()
        for writer in writers:
            writer.join()
        producer.send(15)

        states = _wait_terminal(ha, producer.acked, timeout_s=150)
        survivor = redis.Redis(port=ha.replica_port)
        plain_lost, confirmed_lost = probe.lost(survivor)
        sim = httpx.get(f"http://127.0.0.1:{ha.settings.sim_port}/_sim/stats").json()
        print(
            f"\nfailover: replica promoted in {promoted_s:.2f} s; "
            f"jobs acknowledged {len(producer.acked)}, refused {dict(producer.refused)}; "
            f"longest wait between two 202s: {producer.longest_gap_s():.2f} s; "
            f"acknowledged plain writes lost {plain_lost} of {len(probe.plain)}, "
            f"replica-confirmed writes lost {confirmed_lost} of {len(probe.confirmed)}"
        )

        unfinished = {i: s for i, s in states.items() if s != "succeeded"}
        assert len(states) == len(producer.acked) and not unfinished, unfinished
        assert len(set(producer.acked)) == len(producer.acked) == 70
        assert confirmed_lost == 0
        assert plain_lost <= len(probe.plain)
        duplicates = {rid: n for rid, n in sim["request_ids"].items() if n > 1}
        assert not duplicates, duplicates
        assert sim["duplicate_request_ids"] == 0
        # The same processes carried on: nothing restarted them.
        assert {name: ha.app.processes.status(name).pid for name in services} == pids
        # Beat's sweeps reach the worker through the new master.
        worker_log = ha.app.processes.log_path("worker1").read_bytes()[logs["worker1"] :]
        beat_log = ha.app.processes.log_path("beat").read_bytes()[logs["beat"] :]
        assert TASKS["sweep"].encode() in beat_log
        assert f"Task {TASKS['sweep']}".encode() in worker_log
