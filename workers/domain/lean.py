"""How a job's record is written small, and read back as it always was.

A job hash is kept in Redis for as long as the job is hot, a million of them a day, so every
byte of it counts (README "Lean records"). Three things are stored compactly, and each is read
back in the form the public record (docs/design.md §6) has always had; the forms the previous
version wrote are still read:

- the spec: without ``provider`` and ``model`` (they are hash fields of their own) and without
  fields at their default (``options`` and ``labels`` empty, ``priority`` 0). ``full_spec``
  puts them back, in the spec's field order, so the record's ``spec`` is what it was. A stored
  spec that names its provider is the old, whole form and is returned as it is.
- the timeline: entries are ``{µs since the epoch}|{state}|{event}``, the event left out when
  it only names the state (about 25 bytes, against 70 for the JSON object with an ISO
  timestamp the previous version stored, which is still read: ``event_entry``), and the
  creation is not stored as one: it is the record's ``created_at``, so a waiting job has no
  timeline key. Nor are the moves to ``running`` and ``succeeded`` whose moment the record keeps
  (``submitted_at``, ``completed_at``), and a job that succeeded drops its ``mirroring`` entry
  (``provider_finished_at``): ``timeline`` puts them all back where they fall.
- the mirrored files: an item keeps ``bucket`` and ``key`` as they were (a purge deletes by
  them), but no presigned ``url`` (every read presigns afresh), its ``sha256`` in base64 (43
  characters, not 64 hex digits), and no ``content_type`` where the key's extension says it
  (``video.mp4``, ``cover.png``...). ``full_result`` gives the record's form back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from workers.domain.jobs import JobSpec, isoformat

_SEPARATORS: Final = (",", ":")
# The spec's fields at their default are not stored; these come back on reading (the others
# default to None, which the stored form always left out).
_DEFAULTS: Final[dict[str, Any]] = {"options": {}, "priority": 0, "labels": {}}


def packed_spec(spec: JobSpec) -> str:
    """The spec as the job hash stores it: only what is not said elsewhere or by default."""
    return spec.model_dump_json(
        exclude_none=True, exclude_defaults=True, exclude={"provider", "model"}
    )


def full_spec(stored: str, provider: str, model: str) -> str:
    """The spec JSON as the record shows it (``JobSpec.model_dump_json(exclude_none=True)``),
    from either stored form."""
    if stored.startswith('{"provider"'):  # written whole, by the version before lean records
        return stored
    data: dict[str, Any] = json.loads(stored)
    if "provider" in data:
        return stored
    out: dict[str, Any] = {}
    for name in JobSpec.model_fields:
        if name == "provider":
            out[name] = provider
        elif name == "model":
            out[name] = model
        elif name in data:
            out[name] = data[name]
        elif name in _DEFAULTS:
            out[name] = _DEFAULTS[name]
    return json.dumps(out, ensure_ascii=False, separators=_SEPARATORS)


def micros(at: datetime) -> int:
    """A moment as microseconds since the epoch (what a timeline entry stores)."""
    return int(at.timestamp()) * 1_000_000 + at.microsecond


def packed_event(at: datetime, state: str, event: str) -> str:
    """A timeline entry as stored: ``{µs since the epoch}|{state}|{event}``, or
    ``{µs}|{state}`` when the event only names the state it moved to (most moves)."""
    if state and event == state:
        return f"{micros(at)}|{state}"
    return f"{micros(at)}|{state}|{event}"


def event_entry(stored: str) -> dict[str, Any]:
    """A stored timeline entry as the API shows it: ``{"at", "state", "event"}`` (either form)."""
    if stored.startswith("{"):
        entry: dict[str, Any] = json.loads(stored)
        return entry
    stamp, state, *rest = stored.split("|", 2)
    event = rest[0] if rest else state
    seconds, fraction = divmod(int(stamp), 1_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=fraction)
    return {"at": isoformat(moment), "state": state, "event": event}


# Moves whose moment the record keeps in a field set by the same transition: their timeline
# entry is not stored (``implied``) and is put back on reading (``timeline``).
IMPLIED_MOVES: Final = {"running": "submitted_at", "succeeded": "completed_at"}


# Entries a later move makes redundant: a job that succeeded went through ``mirroring`` when
# the provider finished (``provider_finished_at``). Stored while the job mirrors (a mirror may
# still fail), dropped by the move to ``succeeded`` when it is the last entry
# (``redundant_entry``), put back by ``timeline``.
RETIRED: Final = {"succeeded": ("mirroring", "provider_finished_at", "provider succeeded")}


def redundant_entry(state: str) -> str:
    """The end of the last timeline entry that a move to ``state`` makes redundant ('' none)."""
    retired = RETIRED.get(state)
    return f"|{retired[0]}|{retired[2]}" if retired else ""


def implied(state: str, event: str, sets: Mapping[str, str]) -> bool:
    """Whether a move's entry needs no storing: a move to ``running`` or ``succeeded`` whose
    event only names it, made by a transition that sets the record's timestamp of it."""
    field = IMPLIED_MOVES.get(state)
    return field is not None and event == state and bool(sets.get(field))


def timeline(
    stored: list[dict[str, Any]], fields: Mapping[str, str | None], cap: int
) -> list[dict[str, Any]]:
    """The timeline as the API shows it: the stored entries (``event_entry``), with the ones
    the record implies put back where their moment falls: the creation first, and the moves
    ``implied`` left out. A timeline trimmed to its ``cap`` is shown as stored."""
    entries = list(stored)
    if len(entries) >= cap:
        return entries
    created = fields.get("created_at")
    if created and not (entries and entries[0].get("event") == "created"):
        entries.insert(0, {"at": created, "state": "queued", "event": "created"})
    succeeded = fields.get("state") == "succeeded"
    implied_here = [(state, field, state) for state, field in IMPLIED_MOVES.items()]
    implied_here += list(RETIRED.values()) if succeeded else []
    for state, field, event in implied_here:
        at = fields.get(field)
        reached = state != "succeeded" or succeeded
        if at and reached and not any(e.get("state") == state for e in entries):
            place = next((i for i, e in enumerate(entries) if str(e.get("at", "")) > at), None)
            entry = {"at": at, "state": state, "event": event}
            entries.insert(len(entries) if place is None else place, entry)
    return entries


# Content types a mirrored file's name says (``workers.io.stream``), not stored again.
_TYPES: Final = {
    "mp4": "video/mp4",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
}


def _named_type(key: str) -> str | None:
    return _TYPES.get(key.rsplit(".", 1)[-1].lower()) if "." in key else None


def result_for_storage(result: Mapping[str, Any], *, keep_urls: bool = False) -> dict[str, Any]:
    """The mirrored files as the hash stores them (``keep_urls``: with their presigned URLs,
    for a record a webhook will carry as stored)."""
    out: dict[str, Any] = {}
    for name, item in result.items():
        if not isinstance(item, Mapping):
            out[name] = item
            continue
        packed = {k: v for k, v in item.items() if keep_urls or k != "url"}
        digest = packed.get("sha256")
        if isinstance(digest, str) and len(digest) == 64:
            raw = bytes.fromhex(digest)
            packed["sha256"] = base64.b64encode(raw).decode().rstrip("=")
        named = _named_type(str(packed.get("key", "")))
        if named is not None and packed.get("content_type") == named:
            del packed["content_type"]
        out[name] = packed
    return out


def stored_result(result: Mapping[str, Any], *, keep_urls: bool = False) -> str:
    """``result_for_storage`` as the JSON the hash holds (no spaces)."""
    packed = result_for_storage(result, keep_urls=keep_urls)
    return json.dumps(packed, ensure_ascii=False, separators=_SEPARATORS)


def full_result(stored: str) -> dict[str, Any]:
    """The mirrored files as the record shows them, from either stored form."""
    data: dict[str, Any] = json.loads(stored)
    for item in data.values():
        if not isinstance(item, dict):
            continue
        digest = item.get("sha256")
        if isinstance(digest, str) and len(digest) == 43:
            item["sha256"] = base64.b64decode(digest + "=").hex()
        named = _named_type(str(item.get("key", "")))
        if "content_type" not in item and named is not None:
            item["content_type"] = named
        if "url" in item:  # the record's key order: url last, as the mirror wrote it
            item["url"] = item.pop("url")
    return data
