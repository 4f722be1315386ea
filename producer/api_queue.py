"""``GET /v1/queue``: the queue's figures now and over the last hour, for the dashboard's Queue
page (and any script): jobs by state, per provider its waiting jobs (per fair-share tenant) and
per API key its slots, cap and request rates, and per-minute series of the last hour.

Everything comes from ``workers.observe.snapshot`` (what ``vidqueue top`` and ``/metrics``
show, less what only /metrics shows) and ``Stats.series``. Those make blocking Redis calls, a
few per key, so the route runs them on Starlette's thread pool and the event loop stays free. The
figures cover every producer's jobs (as ``/metrics`` does), but a caller sees only its own
tenants by name (the rest are summed under ``(others)``); a key is named by its public id (the
name of its environment variable), never its secret.
"""

from __future__ import annotations

import time
from typing import Final

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from producer.openapi import errors
from producer.tokens import Caller
from producer.web import Who, client
from workers.deps import Deps
from workers.observe import KeyView, ProviderView, snapshot

router = APIRouter(tags=["operations"])
# Where other producers' waiting jobs are counted in ``waiting_by_tenant`` (not a tenant name a
# token can have: tenant names come from labels, which are never parenthesised here).
OTHERS: Final = "(others)"


class KeyFigures(BaseModel):
    """One API key of a provider."""

    key_id: str = Field(description="the key's public id (its variable's name), never the secret")
    in_flight: int = Field(description="generations holding one of its slots")
    cap: int = Field(description="its configured concurrency cap")
    effective_cap: float = Field(description="the cap after provider back-pressure (AIMD)")
    cooling: bool = Field(description="cooling down after the provider said concurrency too high")
    per_minute: dict[str, float] = Field(
        description="requests over the last 60 s by kind: submit, poll, download, throttled"
        " (provider 429s), error (5xx, timeouts, refused connections)",
        examples=[{"submit": 3.0, "poll": 10.0, "download": 1.0, "throttled": 0.0, "error": 0.0}],
    )


class ProviderFigures(BaseModel):
    """One configured provider."""

    name: str
    waiting: int = Field(description="jobs waiting for a slot")
    waiting_by_tenant: dict[str, int] = Field(
        description="the same per fair-share key (the job's tenant, else its producer): the"
        " caller's own tenants by name, every other producer's summed under '(others)'",
        examples=[{"acme": 10, "default": 2}],
    )
    keys: list[KeyFigures]


class SeriesFigures(BaseModel):
    """The last 60 minutes, oldest first, over every provider; the last minute is the current
    one, still filling. A mean is null for a minute without an observation."""

    minutes: list[int] = Field(description="each minute's start, epoch seconds")
    finished: list[int] = Field(description="jobs that succeeded that minute")
    failed: list[int] = Field(description="jobs that failed that minute")
    throttled: list[int] = Field(description="provider 429s (and 'concurrency too high')")
    errors: list[int] = Field(
        description="provider request errors: 5xx, timeouts, refused connections, garbled answers"
    )
    detection_lag_s: list[float | None] = Field(
        description="mean seconds from the provider finishing to vidqueue seeing it"
    )
    submit_delay_s: list[float | None] = Field(
        description="mean seconds from enqueue to the provider accepting the job"
    )


class QueueFigures(BaseModel):
    """The queue now, and its last hour."""

    at: float = Field(description="when the figures were read, epoch seconds")
    jobs_by_state: dict[str, int] = Field(examples=[{"queued": 3, "running": 5, "succeeded": 90}])
    providers: list[ProviderFigures]
    series: SeriesFigures


def _key(k: KeyView) -> KeyFigures:
    return KeyFigures(
        key_id=k.key_id,
        in_flight=k.in_flight,
        cap=k.cap,
        effective_cap=k.effective_cap,
        cooling=k.cooling,
        per_minute=k.per_minute,
    )


def visible_tenants(who: Caller) -> frozenset[str] | None:
    """The fair-share keys a caller may see by name: its own and the tenants its token may
    name (None: all, when no tokens are configured and every caller is trusted)."""
    return None if who.tenants is None else who.tenants | {who.producer}


def by_tenant(waiting: dict[str, int], visible: frozenset[str] | None) -> dict[str, int]:
    """Waiting jobs per tenant as ``visible`` may see them: other producers' tenants are
    summed under ``OTHERS``, so a token learns the queue's depth but not who else uses it."""
    if visible is None:
        return dict(sorted(waiting.items()))
    shown = {t: n for t, n in sorted(waiting.items()) if t in visible}
    others = sum(n for t, n in waiting.items() if t not in visible)
    return {**shown, OTHERS: others} if others else shown


def _provider(p: ProviderView, visible: frozenset[str] | None) -> ProviderFigures:
    return ProviderFigures(
        name=p.name,
        waiting=p.waiting,
        waiting_by_tenant=by_tenant(p.waiting_by_fair, visible),
        keys=[_key(k) for k in p.keys],
    )


def queue_figures(d: Deps, visible: frozenset[str] | None = None) -> QueueFigures:
    """Read every figure (blocking Redis calls: run it off the event loop)."""
    at = time.time()
    snap = snapshot(d, metrics=False)
    series = d.stats.series(now=at)
    return QueueFigures(
        at=at,
        jobs_by_state=snap.jobs_by_state,
        providers=[_provider(p, visible) for p in snap.providers],
        series=SeriesFigures.model_validate(series.as_dict()),
    )


@router.get("/v1/queue", response_model=QueueFigures, responses=errors(401, 503))
async def queue(who: Who) -> QueueFigures:
    """The queue's figures: jobs by state; per provider its waiting jobs (per tenant) and per
    API key its slots in flight, cap, effective cap, cool-down and requests per minute; and
    per-minute series of the last hour (jobs finished and failed, provider 429s and errors,
    mean detection lag and submit delay). Figures written by workers trail by about a second.
    """
    figures: QueueFigures = await run_in_threadpool(
        queue_figures, client().deps, visible_tenants(who)
    )
    return figures
