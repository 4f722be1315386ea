"""Liveness and readiness of the HTTP API: ``GET /healthz`` and ``GET /readyz``.

They answer different questions, and conflating them is how an out-of-memory Redis went
unnoticed: ``/healthz`` said 200 while no job could move.

- ``/healthz`` (liveness): this process serves requests. No Redis or S3 call, so an orchestrator
  never restarts a healthy API because a dependency is down (a restart would not fix Redis).
- ``/readyz`` (readiness): the API can do its work now. Redis must take a real write (a ``SET``
  with a 10 s expiry, which Redis refuses when out of memory, read-only or loading, while a PING
  still answers), and S3 must answer a ``HEAD`` on the bucket within ``S3_TIMEOUT_S`` (a client
  of its own: no retries, short timeouts, so a hung S3 cannot hold the probe). A 503 names each
  dependency that failed and why.
"""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Final

import redis
from botocore.exceptions import BotoCoreError, ClientError

from config.settings import Settings
from workers.io.storage import s3_client
from workers.redis import keys
from workers.redis.stats import note_rejected

REDIS_PROBE_TTL_S: Final = 10
S3_TIMEOUT_S: Final = 1.0
# Two probes at once at most per process: a slow S3 does not pile up threads.
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vidqueue-readyz")
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


@dataclass(frozen=True)
class Readiness:
    """Whether the API can work now; ``reasons``: each failed dependency → what failed."""

    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not self.reasons

    def body(self) -> dict[str, Any]:
        if self.ready:
            return {"ready": True}
        return {"ready": False, "reasons": dict(self.reasons)}


def probe_key() -> str:
    """This process's probe key: one per API process, gone 10 s after its last probe."""
    return keys.ready_probe(socket.gethostname(), os.getpid())


def redis_problem(client: redis.Redis) -> str | None:
    """Why Redis cannot take writes now (None: it can). A refusal is counted for /metrics."""
    try:
        client.set(probe_key(), "1", ex=REDIS_PROBE_TTL_S)
    except redis.RedisError as exc:
        reason = note_rejected(exc)
        what = {"oom": "out of memory", "readonly": "read-only", "loading": "loading its data"}
        if reason is not None:
            return f"Redis refuses writes ({what[reason]}): {exc}"
        return f"Redis is unavailable: {type(exc).__name__}: {exc}"
    return None


def s3_probe_client(endpoint_url: str) -> Any:
    """The S3 client for the probe only: timeouts of ``S3_TIMEOUT_S``, a single attempt. Built
    once per endpoint (boto3 builds clients unsafely across threads: under a lock)."""
    with _clients_lock:
        if endpoint_url not in _clients:
            _clients[endpoint_url] = s3_client(
                endpoint_url, connect_s=S3_TIMEOUT_S, read_s=S3_TIMEOUT_S, retries=0
            )
        return _clients[endpoint_url]


def s3_problem(settings: Settings, started: Future[Any] | None = None) -> str | None:
    """Why S3 does not answer for the bucket within ``S3_TIMEOUT_S`` (None: it does);
    ``started``: the ``HEAD`` already sent (``start_s3_probe``)."""
    future = started or start_s3_probe(settings)
    try:
        future.result(timeout=S3_TIMEOUT_S)
    except FutureTimeout:
        return f"S3 did not answer within {S3_TIMEOUT_S:g} s"
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        return f"S3 refused HEAD on bucket {settings.s3_bucket!r}: {code or exc}"
    except BotoCoreError as exc:
        return f"S3 is unavailable: {exc}"
    return None


def start_s3_probe(settings: Settings) -> Future[Any]:
    """Send the ``HEAD`` on the bucket from the probe's own threads."""
    client = s3_probe_client(settings.s3_endpoint_url)
    return _pool.submit(client.head_bucket, Bucket=settings.s3_bucket)


def readiness(client: redis.Redis, settings: Settings) -> Readiness:
    """Both checks at once: S3's ``HEAD`` is on its way while Redis is probed."""
    s3 = start_s3_probe(settings)
    problems = {"redis": redis_problem(client), "s3": s3_problem(settings, s3)}
    return Readiness({name: why for name, why in problems.items() if why is not None})
