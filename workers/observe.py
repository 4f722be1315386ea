"""What operators look at: one snapshot of the queue, read from Redis, for `vidqueue top` and
the API's Prometheus `/metrics`. Request rates and histograms are written by the workers in
batches (``workers.redis.stats``), so they trail the jobs by up to ``stats.FLUSH_INTERVAL_S``."""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.deps import Deps
from workers.redis import keys as keys_module
from workers.redis.stats import BUCKETS, HISTOGRAMS


@dataclass(frozen=True)
class KeyView:
    provider: str
    key_id: str
    in_flight: int
    cap: int
    effective_cap: float
    cooling: bool
    per_minute: dict[str, float]


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


def snapshot(d: Deps) -> Snapshot:
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
            )
            for key_id in config.key_ids()
        ]
        by_fair = d.gate.waiting_by_fair(name)
        waiting = sum(by_fair.values())
        seen = d.store.callback_counts(name)
        held_over = d.gate.unknown_released(name)
        providers.append(ProviderView(name, config.kind, waiting, by_fair, keys, seen, held_over))
    histograms = {name: d.stats.histogram(name) for name in HISTOGRAMS}
    return Snapshot(d.store.count_by_state(), providers, histograms)


def _labels(**pairs: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(snap: Snapshot) -> str:
    """The snapshot in Prometheus text exposition format (version 0.0.4)."""
    out = [
        "# HELP vidqueue_jobs Jobs by state.",
        "# TYPE vidqueue_jobs gauge",
        *(f"vidqueue_jobs{_labels(state=s)} {n}" for s, n in snap.jobs_by_state.items()),
        "# HELP vidqueue_waiting Jobs waiting for a slot.",
        "# TYPE vidqueue_waiting gauge",
        *(f"vidqueue_waiting{_labels(provider=p.name)} {p.waiting}" for p in snap.providers),
    ]
    gauges = {
        "in_flight": "Generations in flight at the provider.",
        "cap": "Configured concurrency cap.",
        "effective_cap": "Cap after provider back-pressure (AIMD).",
    }
    for name, text in gauges.items():
        out += [f"# HELP vidqueue_key_{name} {text}", f"# TYPE vidqueue_key_{name} gauge"]
        for p in snap.providers:
            for k in p.keys:
                labels = _labels(provider=p.name, key=k.key_id)
                out.append(f"vidqueue_key_{name}{labels} {getattr(k, name)}")
    out += [
        "# HELP vidqueue_requests_per_minute Provider requests over the last minute, by kind.",
        "# TYPE vidqueue_requests_per_minute gauge",
    ]
    for p in snap.providers:
        for k in p.keys:
            for what, n in k.per_minute.items():
                labels = _labels(provider=p.name, key=k.key_id, kind=what)
                out.append(f"vidqueue_requests_per_minute{labels} {n:.1f}")
    out += [
        "# HELP vidqueue_callbacks_total Provider callbacks received, by outcome.",
        "# TYPE vidqueue_callbacks_total counter",
    ]
    for p in snap.providers:
        for outcome, n in sorted(p.callbacks.items()):
            out.append(f"vidqueue_callbacks_total{_labels(provider=p.name, outcome=outcome)} {n}")
    for metric, text in HISTOGRAMS.items():
        out += _histogram(f"vidqueue_{metric}_seconds", text, snap.histograms.get(metric, {}))
    return "\n".join(out + _unknown_released(snap)) + "\n"


def _unknown_released(snap: Snapshot) -> list[str]:
    name = "vidqueue_submit_unknown_released_total"
    return [
        f"# HELP {name} Slots of submit_unknown jobs released at their hold's end"
        " (the provider may still bill them).",
        f"# TYPE {name} counter",
        *(f"{name}{_labels(provider=p.name)} {p.unknown_released}" for p in snap.providers),
    ]


def _histogram(name: str, text: str, data: dict[str, float]) -> list[str]:
    lines = [f"# HELP {name} Seconds {text}.", f"# TYPE {name} histogram"]
    for bound in BUCKETS:
        lines.append(f'{name}_bucket{{le="{bound}"}} {int(data.get(f"le:{bound}", 0))}')
    count = int(data.get("count", 0))
    lines += [
        f'{name}_bucket{{le="+Inf"}} {count}',
        f"{name}_sum {data.get('sum', 0.0)}",
        f"{name}_count {count}",
    ]
    return lines
