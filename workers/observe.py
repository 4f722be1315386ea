"""What operators look at: one snapshot of the queue, read from Redis, for `vidqueue top` and
the API's Prometheus `/metrics`. Request counts and histograms are written by the workers in
batches (``workers.redis.stats``), so they trail the jobs by up to ``stats.FLUSH_INTERVAL_S``.

Each histogram (seconds: time to submit, generation, mirror, detection lag) is served twice: the
total under its old name without labels (``vidqueue_generation_seconds``), as before, and split
by the job's ``provider`` and ``model`` under ``vidqueue_{metric}_by_model_seconds``. Two
families rather than labels on the old one: a query or dashboard reading the total keeps one
series, and no ``sum`` adds the total to its own parts.

``families`` turns a snapshot into ``prometheus_client`` metric families and ``prometheus``
renders them with the library's exposition (text format 0.0.4): names, escaping and number
formatting are the library's, not ours. No value lives in this process: every figure is read
from Redis when the snapshot is taken, so any number of API processes serve the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from workers.deps import Deps
from workers.redis import keys as keys_module
from workers.redis.stats import BUCKETS, COUNTERS, HISTOGRAMS


@dataclass(frozen=True)
class KeyView:
    provider: str
    key_id: str
    in_flight: int
    cap: int
    effective_cap: float
    cooling: bool
    per_minute: dict[str, float]
    # Provider requests ever made with this key, by kind (a counter: it only grows).
    requests: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderView:
    name: str
    kind: str
    waiting: int
    waiting_by_fair: dict[str, int]
    keys: list[KeyView]
    # Provider callbacks received, by outcome (docs/callbacks.md).
    callbacks: dict[str, int] = field(default_factory=dict)
    # submit_unknown jobs whose slot went back at their hold's end (may still be billed).
    unknown_released: int = 0


@dataclass(frozen=True)
class Snapshot:
    jobs_by_state: dict[str, int]
    providers: list[ProviderView]
    histograms: dict[str, dict[str, float]]
    # Per metric: the same histogram per (provider, model) that has an observation.
    histograms_by_model: dict[str, dict[tuple[str, str], dict[str, float]]] = field(
        default_factory=dict
    )


def snapshot(d: Deps, *, metrics: bool = True) -> Snapshot:
    """Every figure, read from Redis now; ``metrics=False`` leaves out what only /metrics
    shows (histograms, request counters, callbacks, released ``submit_unknown`` slots), so a
    reader that shows none of them, such as ``GET /v1/queue``, saves their reads."""
    providers = []
    for name, config in d.catalogue.providers.items():
        keys = [
            KeyView(
                provider=name,
                key_id=key_id,
                in_flight=d.gate.in_flight(name, key_id),
                cap=config.cap(key_id),
                effective_cap=d.gate.effective_cap(config, key_id),
                cooling=bool(d.redis.exists(keys_module.cooling(name, key_id))),
                per_minute=d.stats.per_minute(name, key_id),
                requests=d.stats.requests(name, key_id) if metrics else {},
            )
            for key_id in config.key_ids()
        ]
        by_fair = d.gate.waiting_by_fair(name)
        waiting = sum(by_fair.values())
        seen = d.store.callback_counts(name) if metrics else {}
        held_over = d.gate.unknown_released(name) if metrics else 0
        providers.append(ProviderView(name, config.kind, waiting, by_fair, keys, seen, held_over))
    if not metrics:
        return Snapshot(d.store.count_by_state(), providers, {})
    totals = {name: d.stats.histogram(name) for name in HISTOGRAMS}
    by_model = {name: d.stats.histograms_by_model(name) for name in HISTOGRAMS}
    return Snapshot(d.store.count_by_state(), providers, totals, by_model)


def families(snap: Snapshot) -> Iterator[Metric]:
    """The snapshot as Prometheus metric families (a ``Collector.collect`` body).

    Counters are named without ``_total``: the library adds it on exposition.
    ``vidqueue_requests_per_minute`` (a gauge of the last 60 s) stays for dashboards that read
    it; ``vidqueue_requests_total`` is the same traffic as a counter, for ``rate()``.
    """
    jobs = GaugeMetricFamily("vidqueue_jobs", "Jobs by state.", labels=["state"])
    for state, n in snap.jobs_by_state.items():
        jobs.add_metric([state], n)
    yield jobs
    waiting = GaugeMetricFamily("vidqueue_waiting", "Jobs waiting for a slot.", labels=["provider"])
    for p in snap.providers:
        waiting.add_metric([p.name], p.waiting)
    yield waiting
    gauges = {
        "in_flight": "Generations in flight at the provider.",
        "cap": "Configured concurrency cap.",
        "effective_cap": "Cap after provider back-pressure (AIMD).",
    }
    for name, text in gauges.items():
        gauge = GaugeMetricFamily(f"vidqueue_key_{name}", text, labels=["provider", "key"])
        for p in snap.providers:
            for k in p.keys:
                gauge.add_metric([p.name, k.key_id], getattr(k, name))
        yield gauge
    labels = ["provider", "key", "kind"]
    per_minute = GaugeMetricFamily(
        "vidqueue_requests_per_minute",
        "Provider requests over the last minute, by kind (prefer rate(vidqueue_requests_total)).",
        labels=labels,
    )
    requests = CounterMetricFamily(
        "vidqueue_requests", "Provider requests, by key and kind.", labels=labels
    )
    for p in snap.providers:
        for k in p.keys:
            for what, x in k.per_minute.items():
                per_minute.add_metric([p.name, k.key_id, what], round(x, 1))
            for what in COUNTERS:
                requests.add_metric([p.name, k.key_id, what], k.requests.get(what, 0))
    yield per_minute
    yield requests
    callbacks = CounterMetricFamily(
        "vidqueue_callbacks",
        "Provider callbacks received, by outcome.",
        labels=["provider", "outcome"],
    )
    for p in snap.providers:
        for outcome, n in sorted(p.callbacks.items()):
            callbacks.add_metric([p.name, outcome], n)
    yield callbacks
    for metric, text in HISTOGRAMS.items():
        yield _histogram(f"vidqueue_{metric}_seconds", text, snap.histograms.get(metric, {}))
        yield _by_model(metric, text, snap.histograms_by_model.get(metric, {}))
    released = CounterMetricFamily(
        "vidqueue_submit_unknown_released",
        "Slots of submit_unknown jobs released at their hold's end"
        " (the provider may still bill them).",
        labels=["provider"],
    )
    for p in snap.providers:
        released.add_metric([p.name], p.unknown_released)
    yield released


def _histogram(name: str, text: str, data: dict[str, float]) -> HistogramMetricFamily:
    """``le`` keeps the bounds as ``BUCKETS`` spells them (``le="1"``, not ``"1.0"``): series
    selected by ``le`` before the move to prometheus_client keep their label values."""
    family = HistogramMetricFamily(name, f"Seconds {text}.")
    family.add_metric([], *_buckets(data))
    return family


def _by_model(
    metric: str, text: str, pairs: dict[tuple[str, str], dict[str, float]]
) -> HistogramMetricFamily:
    """``vidqueue_{metric}_by_model_seconds{provider, model}``: the same observations as the
    unlabelled total, split by the job's provider and model. A family of its own, so the
    total keeps its name and its one series (a ``sum`` over both would count twice)."""
    family = HistogramMetricFamily(
        f"vidqueue_{metric}_by_model_seconds",
        f"Seconds {text}, by provider and model.",
        labels=["provider", "model"],
    )
    for (provider, model), data in sorted(pairs.items()):
        family.add_metric([provider, model], *_buckets(data))
    return family


def _buckets(data: dict[str, float]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative buckets ending with ``+Inf`` (the count), and the sum."""
    buckets = [(str(bound), data.get(f"le:{bound}", 0.0)) for bound in BUCKETS]
    return [*buckets, ("+Inf", data.get("count", 0.0))], data.get("sum", 0.0)


class _Families(Collector):
    """Families computed beforehand (a snapshot already read)."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def render(collector: Collector) -> str:
    """What ``collector`` yields now, in Prometheus text format 0.0.4, by prometheus_client's
    exposition (a registry of its own: nothing from the library's global default registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode("utf-8")


def prometheus(snap: Snapshot) -> str:
    """The snapshot in Prometheus text exposition format (version 0.0.4)."""
    return render(_Families(families(snap)))
