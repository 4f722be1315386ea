"""``GET /metrics``: the queue in Prometheus text format (jobs by state, queue depths, slots
per key, provider requests (with 429s and errors), histograms of time-to-submit, generation,
mirror and detection lag (in total, and per provider and model), writes Redis refused, jobs
that took a finished result, and what was mirrored into S3).
Unauthenticated, like most scrape targets: expose the API port only where it belongs.

Rendered by ``prometheus_client``: ``RedisCollector`` is a custom collector that reads every
figure from Redis at scrape time and keeps none in the process. That makes it correct with any
number of API processes (and workers on any number of hosts) by construction: each scrape of
any process reads the same shared totals, so there is no per-process state to aggregate and no
need for the library's file-based multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), which only
works within one host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from producer.web import client
from workers.deps import Deps
from workers.observe import families, render, snapshot
from workers.redis.reuse import ReuseIndex

router = APIRouter(tags=["operations"])


class RedisCollector(Collector):
    """Every vidqueue figure, read from Redis when ``collect`` runs (one scrape)."""

    def __init__(self, deps: Callable[[], Deps]) -> None:
        self._deps = deps

    def collect(self) -> Iterator[Metric]:
        deps = self._deps()
        yield from families(snapshot(deps))
        yield rejected_writes(deps)
        yield from reuse_and_storage(deps)


def reuse_and_storage(deps: Deps) -> Iterator[Metric]:
    """Jobs that took a finished result (``reuse_within_s``) instead of generating, and the
    bytes and objects mirrored into S3, per provider. Counters: they only grow."""
    reused = ReuseIndex(deps.redis).reused()
    providers = sorted(set(deps.catalogue.providers) | set(reused))
    mirrored = {p: deps.stats.mirrored(p) for p in providers}
    for name, text, value in (
        ("jobs_reused", "Jobs that took a finished result instead of generating.", None),
        ("mirrored_bytes", "Bytes mirrored into S3.", "bytes"),
        ("mirrored_objects", "Objects (videos and covers) mirrored into S3.", "objects"),
    ):
        family = CounterMetricFamily(f"vidqueue_{name}", text, labels=["provider"])
        for p in providers:
            family.add_metric([p], reused.get(p, 0) if value is None else mirrored[p][value])
        yield family


def rejected_writes(deps: Deps) -> Metric:
    """Writes Redis refused, by reason (``workers.redis.stats.note_rejected``): every process's
    once flushed, this one's at once. A worker's refusals are flushed once Redis takes writes
    again, so during an outage this shows the API's own (its ``/readyz`` probes among them)."""
    family = CounterMetricFamily(
        "vidqueue_redis_rejected_writes",
        "Writes Redis refused (out of memory, read-only, loading), by reason.",
        labels=["reason"],
    )
    for reason, n in deps.stats.rejected().items():
        family.add_metric([reason], n)
    return family


def render_for(deps: Deps) -> str:
    """The whole ``/metrics`` page for ``deps``, in Prometheus text format 0.0.4."""
    return render(RedisCollector(lambda: deps))


@router.get("/metrics")
async def metrics() -> Response:
    text: str = await run_in_threadpool(render_for, client().deps)
    return Response(text, media_type=CONTENT_TYPE_PLAIN_0_0_4)
