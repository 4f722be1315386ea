"""Job records in Redis: one hash per job, state indexes, and compare-and-set transitions.

Besides the record fields of docs/design.md §6 the hash holds internal fields that never leave
vidqueue: ``key_id`` (the API key holding the job's slot), ``score`` (its waiting-set score),
``step_until`` (the earliest moment its next step may run, ms), ``sent`` (when its step's
message was published, ms; cleared when a worker claims it), ``deadline_ms``, the provider's
result URLs, ``task_extra``, ``at_provider`` ("1" while the provider may be working on it).

A succeeded job drops what only its earlier steps needed (``SPENT_WHEN_SUCCEEDED``: the
provider's result URLs, dead once mirrored, its waiting score, deadline, task extras, key and
mirror counter; and, from ``workers.steps.endings.finish``, its poll mode unless callbacks
were armed), and the spec, timeline entries and mirrored files are stored compactly
(``workers.domain.lean``): a hash read by the previous version's layout is still read. The
timeline is the hash's ``timeline`` field (a job written before it has a separate list, still
read first), and ``created_at``, ``submitted_at`` and ``provider_finished_at`` are µs since the
epoch (``STORED_MOMENTS``); ``readable`` and ``record_from`` give the record's forms back. A
job that took a finished result (``reuse_within_s``) has ``reused_from`` and its files in
``shared_result``: the original's objects, which a purge of this job does not delete; the
original's ``reused`` counts the jobs that share its files (a purge of it keeps them).

Steps never see those strings: they read a job as a typed ``JobRow`` (``row``, ``claim``) and
write through a typed ``Change`` (``transition``); this module is where they are converted
(``workers.domain.row``, ``workers.domain.change``). ``fields`` (the raw hash, for tests and
the row) and ``record_from`` (the public record, for ``workers.redis.records`` and listings) stay
in the Redis room: nothing above it reads the hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis

from workers.domain.change import Change, CounterName
from workers.domain.jobs import (
    TERMINAL,
    JobError,
    JobRecord,
    JobSpec,
    State,
    check_transition,
    parse_iso,
    utcnow,
)
from workers.domain.lean import (
    TIMELINE_FIELD,
    event_entry,
    full_result,
    full_spec,
    implied,
    moment_text,
    packed_event,
    redundant_entry,
    result_for_storage,
    stored_moment,
    stored_result,
    timeline,
    timeline_entries,
)
from workers.domain.row import DueJob, JobRow
from workers.redis import keys, store_scripts
from workers.redis.enqueue import Creator, NewJob
from workers.redis.replicas import Replication

_RECORD_INTS: Final = ("attempts", "polls")
_RECORD_STRS: Final = (
    "provider_task_id",
    "submitted_at",
    "provider_finished_at",
    "completed_at",
)
# What the timeline's implied entries are read from (``events``).
_TIMELINE_FIELDS: Final = (
    "state",
    "created_at",
    "submitted_at",
    "provider_finished_at",
    "completed_at",
)
# Moments a job hash stores as µs since the epoch (``workers.domain.lean.stored_moment``; an
# earlier version's ISO text still reads). ``completed_at`` keeps its ISO text.
STORED_MOMENTS: Final = ("created_at", "submitted_at", "provider_finished_at")
# Internal fields a succeeded (mirrored) job no longer needs: dropped by its last transition.
SPENT_WHEN_SUCCEEDED: Final = (
    "video_url",
    "cover_url",
    "score",
    "deadline_ms",
    "task_extra",
    "hastened",
    "priority",
    "key_id",
    "mirror_attempts",
)
# A step may start this much before its scheduled time (Celery ETAs use the worker's clock,
# leases use Redis TIME).
CLAIM_TOLERANCE_MS: Final = 2000


def _states(states: Iterable[State]) -> str:
    return "," + ",".join(str(s) for s in states) + ","


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a step: ``ok`` with the job's row, or why not (``state``: the
    job's current state, None for a missing job; ``row`` None)."""

    ok: bool
    state: State | None
    row: JobRow | None


class Store:
    """Reads and writes job records. Every write of ``state`` goes through a CAS script."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        grace_s: float = 15.0,
        replication: Replication | None = None,
        changes_maxlen: int = keys.CHANGES_MAXLEN,
    ) -> None:
        self.redis = client
        self.grace_ms = int(grace_s * 1000)
        # The cap of each producer's change stream (``VIDQUEUE_EVENTS_MAXLEN``), which every
        # creation and state change is added to (``workers.redis.changes``).
        self.changes_maxlen = changes_maxlen
        # The replicas that confirm a ``durable`` write (workers.redis.replicas).
        self.replication = replication or Replication()
        self._transition = client.register_script(store_scripts.TRANSITION)
        self._claim = client.register_script(store_scripts.CLAIM)
        self._resend = client.register_script(store_scripts.RESEND)
        self._prune = client.register_script(store_scripts.PRUNE)
        self._take_due = client.register_script(store_scripts.TAKE_DUE)
        self._hasten = client.register_script(store_scripts.HASTEN)
        self._note = client.register_script(store_scripts.NOTE)
        self._creator: Creator | None = None

    # -- creating and reading -------------------------------------------------------------

    def create(
        self,
        job_id: str,
        spec: JobSpec,
        *,
        producer: str = "",
        fingerprint: str = "",
        pipe: redis.client.Pipeline | None = None,
    ) -> tuple[str, bool] | None:
        """Store a new queued job and put it in its provider's waiting set.

        Returns ``(job id, created)``; with an idempotency key already used, the existing id
        and False. With ``pipe`` the call is only queued there and returns None. (One job of
        ``workers.redis.enqueue``, which creates batches.)
        """
        if self._creator is None:
            self._creator = Creator(
                self.redis, self.replication, changes_maxlen=self.changes_maxlen
            )
        job = NewJob.of(job_id, spec, fingerprint)
        created = self._creator.create([job], producer=producer, pipe=pipe)
        if created is None:
            return None
        existing = created.existing.get(0)
        return (job_id, True) if existing is None else (existing, False)

    def fields(self, job_id: str) -> dict[str, str]:
        raw: dict[bytes, bytes] = self.redis.hgetall(keys.job(job_id))  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    def row(self, job_id: str) -> JobRow | None:
        """The job's row (one HGETALL), or None when there is no such job."""
        fields = self.fields(job_id)
        return row_from(fields) if fields else None

    def cancel_requested(self, job_id: str) -> bool:
        """Whether a cancel came while the job's submit was in flight (one HEXISTS)."""
        return bool(self.redis.hexists(keys.job(job_id), "cancel_requested"))

    def get(self, job_id: str) -> JobRecord | None:
        fields = self.fields(job_id)
        return record_from(fields) if fields else None

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's timeline, oldest first, as the previous layout stored it: the entries the
        record implies (its creation, the moves to running and succeeded) are put back
        (``workers.domain.lean.timeline``). The entries are the hash's timeline field's, after
        those of the separate list a job written by an earlier version has."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(keys.job(job_id), *_TIMELINE_FIELDS, TIMELINE_FIELD)
        pipe.lrange(keys.events(job_id), 0, -1)
        values, raw = pipe.execute()
        *values, field = values
        fields = {k: v.decode() for k, v in zip(_TIMELINE_FIELDS, values, strict=True) if v}
        fields = readable(fields)
        stored = [item.decode() for item in raw]
        stored += timeline_entries(field.decode()) if field else []
        entries = [event_entry(item) for item in stored[-keys.EVENTS_MAX :]]
        return timeline(entries, fields, keys.EVENTS_MAX)

    # -- changing ------------------------------------------------------------------------

    def transition(
        self,
        job_id: str,
        allowed: Iterable[State],
        to: State | None,
        *,
        step_s: float | None = None,
        clear_step: bool = False,
        change: Change | None = None,
        incr: CounterName = "",
        event: str = "",
        durable: bool = False,
        spent: Iterable[str] = (),
    ) -> bool:
        """Compare-and-set: apply ``change`` only if the job's state is one of ``allowed``.

        ``to`` None keeps the state (a same-state update, e.g. the next poll's schedule).
        ``step_s`` schedules the job's next step that many seconds from now: 0 means the caller
        publishes it right away; a later step waits in the due zset until a worker's due poller
        publishes it (``workers.steps.due``). A terminal state without ``step_s`` drops the
        schedule (with it: the webhook still to send). A move ``NEXT`` does not allow raises
        ``TransitionNotAllowed`` before Redis is touched. ``spent``: internal fields the move
        makes useless, deleted with it (a succeeded job's are always). A ``durable`` change
        must survive a Redis failover: it raises ``NotReplicated`` when too few replicas
        confirm it.
        """
        allowed = list(allowed)
        if to is not None:
            check_transition(allowed, to)
        terminal = to in TERMINAL
        step, due = self._schedule(step_s, clear=terminal or clear_step)
        pairs = _packed(change.hash_args(), job_id) if change else []
        entry = _entry(str(to) if to else "", event) if (to or event) else ""
        if to and implied(str(to), event, dict(zip(pairs[::2], pairs[1::2], strict=True))):
            entry = ""  # the record's own timestamp of the move says it (``events``)
        argv: list[str | int] = [keys.state_prefix(), job_id, _states(allowed), str(to or "")]
        argv += [step, due, entry]
        argv += [keys.RECORD_TTL_S if terminal else "", incr, keys.EVENTS_MAX]
        argv += [redundant_entry(str(to)) if to else ""]
        argv += [keys.changes_prefix(), self.changes_maxlen, *pairs]
        gone = [*spent, *(SPENT_WHEN_SUCCEEDED if to == State.SUCCEEDED else ())]
        argv += [item for name in gone for item in (name, "")]
        script_keys = [keys.job(job_id), keys.due(), keys.events(job_id)]
        script_keys += [keys.by_state(to)] if to else []
        if durable:
            # Confirmed by the replicas before it counts (workers.redis.replicas).
            [(ok, _previous)] = self.replication.write(
                self.redis, lambda pipe: self._transition(keys=script_keys, args=argv, client=pipe)
            )
        else:
            ok, _previous = self._transition(keys=script_keys, args=argv)
        return bool(ok)

    def _schedule(self, step_s: float | None, *, clear: bool) -> tuple[str, str]:
        """The step and due offsets (ms) of ``store_scripts.TRANSITION``: a later step is due
        (published by a due poller) at its time; one published now (0) is due for a check (was
        its message lost?) after the grace; '-' clears the schedule, '' leaves it."""
        if step_s is not None:
            step_ms = max(0, int(step_s * 1000))
            return str(step_ms), str(step_ms or self.grace_ms)
        return ("-", "") if clear else ("", "")

    def hasten(self, job_id: str, provider: str, *, min_gap_s: float, working: bool) -> str:
        """A provider's callback for the job: mark its next poll sent now, when it waits on its
        safety schedule (``store_scripts.HASTEN``); the caller then publishes it. Returns the
        outcome, counted per provider ('hastened', or why not)."""
        script_keys = [keys.job(job_id), keys.due(), keys.callbacks(provider)]
        gap_ms = int(min_gap_s * 1000)
        argv: list[str | int] = [job_id, provider, gap_ms, self.grace_ms]
        argv.append("working" if working else "")
        outcome: bytes = self._hasten(keys=script_keys, args=argv)
        return outcome.decode()

    def count_callback(self, provider: str, outcome: str) -> None:
        """Count a callback refused before it reached a job (a bad token, too many)."""
        self.redis.hincrby(keys.callbacks(provider), outcome, 1)

    def callback_counts(self, provider: str) -> dict[str, int]:
        raw: dict[bytes, bytes] = self.redis.hgetall(keys.callbacks(provider))  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}

    def claim(self, job_id: str, allowed: Iterable[State], *, lease_s: float) -> Claim:
        """Take the job's current step, so that a duplicate copy of the step does nothing."""
        lease_ms = int(lease_s * 1000)
        argv: list[str | int] = [job_id, _states(allowed), lease_ms, lease_ms + self.grace_ms]
        argv.append(CLAIM_TOLERANCE_MS)
        ok, state, *flat = self._claim(keys=[keys.job(job_id), keys.due()], args=argv)
        state = State(state.decode()) if state else None
        if ok != 1:
            return Claim(False, state, None)
        pairs = [item.decode() for item in flat]
        fields = dict(zip(pairs[::2], pairs[1::2], strict=True))
        return Claim(True, state, row_from(fields))

    # -- listing -------------------------------------------------------------------------

    def take_due(self, limit: int = 500) -> list[DueJob]:
        """Take up to ``limit`` jobs whose step is due (``store_scripts.TAKE_DUE``), to publish."""
        argv: list[str | int] = [keys.job_prefix(), limit, self.grace_ms, *store_scripts.DUE_FIELDS]
        flat: list[bytes] = self._take_due(keys=[keys.due()], args=argv)
        items = [x.decode() for x in flat]
        width = 2 + len(store_scripts.DUE_FIELDS)
        return [
            DueJob.from_hash(
                items[i],
                items[i + 1],
                readable(zip(store_scripts.DUE_FIELDS, items[i + 2 : i + width], strict=True)),
            )
            for i in range(0, len(items), width)
        ]

    def mark_resent(self, job_id: str, state: State, step: str) -> bool:
        """Send a lost step again: marked sent now, due for a check after the grace."""
        event = _entry("", f"re-sent lost {step}")
        argv: list[str | int] = [job_id, str(state), self.grace_ms, event, keys.EVENTS_MAX]
        return bool(self._resend(keys=[keys.job(job_id), keys.due()], args=argv))

    def note(self, job_id: str, event: str) -> None:
        """Add an event to the job's timeline without changing the job (none when it is gone)."""
        argv: list[str | int] = [_entry("", event), keys.EVENTS_MAX]
        self._note(keys=[keys.job(job_id)], args=argv)

    def prune_expired(self, *, ttl_s: int = keys.RECORD_TTL_S, limit: int = 1000) -> int:
        """Drop the ids of expired records from the listing and state indexes."""
        argv: list[str | int] = [keys.job_prefix(), ttl_s * 1000, limit]
        argv.append(keys.PRODUCER_INDEX_SLACK_S * 1000)
        script_keys = [keys.all_jobs(), keys.producers(), *(keys.by_state(s) for s in State)]
        return int(self._prune(keys=script_keys, args=argv))

    def count_by_state(self) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for state in State:
            pipe.scard(keys.by_state(state))
        return {str(s): int(n) for s, n in zip(State, pipe.execute(), strict=True)}


def _entry(state: str, event: str) -> str:
    """A timeline entry as stored (``workers.domain.lean``)."""
    return packed_event(utcnow(), state, event)


def _packed(pairs: list[str], job_id: str) -> list[str]:
    """A change's ``[field, value, ...]`` with its moments (``STORED_MOMENTS``) as µs and the
    mirrored files in their stored form: no
    presigned URLs (every read and the webhook presign afresh), the job's id left out of their
    keys (``workers.domain.lean``); a result with nothing to pack is kept as the change wrote
    it."""
    out = list(pairs)
    for i in range(0, len(out), 2):
        if out[i] in STORED_MOMENTS and out[i + 1]:
            out[i + 1] = stored_moment(parse_iso(out[i + 1]))
        if out[i] == "result" and out[i + 1]:
            given = json.loads(out[i + 1])
            if result_for_storage(given, owner=job_id) != given:
                out[i + 1] = stored_result(given, owner=job_id)
    return out


def _result_owner(fields: Mapping[str, str]) -> str:
    """Whose files a job hash's result names: the original's for a job that reused one."""
    if fields.get("result"):
        return fields.get("id", "")
    return fields.get("reused_from") or fields.get("id", "")


def readable(fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A job hash with its moments and result in the record's form (``workers.domain.lean``),
    for readers that take it as it is (``JobRow.from_hash``, ``DueJob.from_hash``)."""
    out = dict(fields)
    for name in STORED_MOMENTS:
        if out.get(name):
            out[name] = moment_text(out[name])
    for name in ("result", "shared_result"):
        if out.get(name):
            full = full_result(out[name], _result_owner(out))
            out[name] = json.dumps(full, ensure_ascii=False, separators=(",", ":"))
    return out


def row_from(fields: Mapping[str, str]) -> JobRow:
    """A job's typed row from its hash (either layout)."""
    return JobRow.from_hash(readable(fields))


def record_from(fields: Mapping[str, str]) -> JobRecord:
    """The public record (docs/design.md §6) from a job hash (either layout); internal fields
    stay behind."""
    provider, model = fields["provider"], fields["model"]
    data: dict[str, Any] = {
        "id": fields["id"],
        "state": fields["state"],
        "provider": provider,
        "model": model,
        "spec": json.loads(full_spec(fields["spec"], provider, model)),
        "created_at": moment_text(fields["created_at"]),
    }
    for name in _RECORD_INTS:
        data[name] = int(fields.get(name, "0"))
    for name in _RECORD_STRS:
        value = fields.get(name)
        data[name] = (moment_text(value) if name in STORED_MOMENTS else value) if value else None
    if fields.get("error"):
        data["error"] = JobError.model_validate_json(fields["error"])
    result = fields.get("result") or fields.get("shared_result")
    if result:
        data["result"] = full_result(result, _result_owner(fields))
    data["callbacks_armed"] = fields.get("poll_mode") == "safety"
    data["reused_from"] = fields.get("reused_from") or None
    return JobRecord.model_validate(data)
