"""How a job's record is written small, and read back as it always was.

A job hash is kept in Redis for as long as the job is hot, a million of them a day, so every
byte of it counts (README "Lean records"). Three things are stored compactly, and each is read
back in the form the public record (docs/design.md §6) has always had; the forms the previous
version wrote are still read:

- the spec: without ``provider`` and ``model`` (they are hash fields of their own) and without
  fields at their default (``options`` and ``labels`` empty, ``priority`` 0), most of its
  fields named by one letter (``SHORT_NAMES``: ``{"p":"a paper boat…","labels":{…}}``);
  ``full_spec`` puts them back, in the spec's field order, so the record's ``spec`` is what it
  was. A stored spec that names its provider is the old, whole form and is returned as it is;
  one with long names (the previous version's lean form) is read as well.
- the timeline: entries are ``{µs since the epoch}|{state}|{event}``, the event left out when
  it only names the state (about 25 bytes, against 70 for the JSON object with an ISO
  timestamp the previous version stored, which is still read: ``event_entry``), and the
  creation is not stored as one: it is the record's ``created_at``, so a waiting job has no
  timeline key. Nor are the moves to ``running`` and ``succeeded`` whose moment the record keeps
  (``submitted_at``, ``completed_at``), and a job that succeeded drops its ``mirroring`` entry
  (``provider_finished_at``): ``timeline`` puts them all back where they fall.
  The entries live in the job's hash, in one field (``TIMELINE_FIELD``: each entry ends with
  a newline, a newline or backslash in an event escaped), not in a list key of their own: on
  Redis 7.0 every list is a quicklist, some 200 bytes a job (``timeline_entries`` reads the
  field; a separate list written by an earlier version is still read before it).
- the mirrored files: an item keeps ``bucket`` as it was, its ``key`` as it was or, when the
  key holds the job's own id once (``videos/{id}/video.mp4``), as the two parts around it
  (``"k": ["videos/", "/video.mp4"]``: the id is the job's, or for a job that reused a result
  the original's), no presigned ``url`` (every read, and the webhook, presigns afresh), its
  ``sha256`` in base64 (43 characters, not 64 hex digits), and no ``content_type`` where the
  key's extension says it (``video.mp4``, ``cover.png``...). ``full_result`` gives the
  record's form back.
- ``created_at``: µs since the epoch (``stored_moment``), an integer to Redis; ``moment_text``
  gives the record's ISO form back (and reads the ISO text an earlier version stored).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from workers.domain.jobs import JobSpec, isoformat

_SEPARATORS: Final = (",", ":")
# The spec's fields at their default are not stored; these come back on reading (the others
# default to None, which the stored form always left out).
_DEFAULTS: Final[dict[str, Any]] = {"options": {}, "priority": 0, "labels": {}}


# The spec's fields a stored spec names by one letter (no field's own name is one letter);
# ``labels`` and ``idempotency_key`` keep their names (the listing's label filter, the purge
# and the archiver read them from the stored spec).
SHORT_NAMES: Final = {
    "prompt": "p",
    "image": "i",
    "duration": "d",
    "size": "s",
    "fps": "f",
    "quality": "q",
    "with_audio": "a",
    "seed": "e",
    "negative_prompt": "n",
    "options": "o",
    "callback_url": "c",
    "reuse_within_s": "r",
}
_LONG_NAMES: Final = {short: name for name, short in SHORT_NAMES.items()}


def packed_spec(spec: JobSpec) -> str:
    """The spec as the job hash stores it: only what is not said elsewhere or by default, its
    fields named by one letter (``SHORT_NAMES``)."""
    data = json.loads(
        spec.model_dump_json(
            exclude_none=True, exclude_defaults=True, exclude={"provider", "model"}
        )
    )
    short = {SHORT_NAMES.get(name, name): value for name, value in data.items()}
    return json.dumps(short, ensure_ascii=False, separators=_SEPARATORS)


def full_spec(stored: str, provider: str, model: str) -> str:
    """The spec JSON as the record shows it (``JobSpec.model_dump_json(exclude_none=True)``),
    from either stored form."""
    if stored.startswith('{"provider"'):  # written whole, by the version before lean records
        return stored
    data: dict[str, Any] = json.loads(stored)
    if "provider" in data:
        return stored
    data = {_LONG_NAMES.get(name, name): value for name, value in data.items()}
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


# The job-hash field holding the timeline's entries, each ended by a newline.
TIMELINE_FIELD: Final = "timeline"


def packed_event(at: datetime, state: str, event: str) -> str:
    """A timeline entry as stored: ``{µs since the epoch}|{state}|{event}``, or
    ``{µs}|{state}`` when the event only names the state it moved to (most moves). A backslash
    or newline in the event is escaped (``\\``, ``\\n``): entries end with a newline."""
    if state and event == state:
        return f"{micros(at)}|{state}"
    text = event.replace("\\", "\\\\").replace("\n", "\\n")
    return f"{micros(at)}|{state}|{text}"


_ESCAPED: Final = re.compile(r"\\(.)", re.DOTALL)


def timeline_entries(stored: str) -> list[str]:
    """The entries of a job's timeline field, as ``event_entry`` reads them (unescaped)."""
    return [
        _ESCAPED.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), line)
        for line in stored.split("\n")
        if line
    ]


def stored_moment(at: datetime) -> str:
    """A moment as a job hash stores ``created_at``: µs since the epoch (16 digits, kept by
    Redis as one 8-byte integer, against 27 bytes of ISO text)."""
    return str(micros(at))


def moment_text(stored: str) -> str:
    """A stored moment as the record shows it (ISO 8601, µs, UTC), from either form."""
    if not stored.isdigit():
        return stored
    seconds, fraction = divmod(int(stored), 1_000_000)
    return isoformat(datetime.fromtimestamp(seconds, UTC).replace(microsecond=fraction))


def event_entry(stored: str) -> dict[str, Any]:
    """A stored timeline entry as the API shows it: ``{"at", "state", "event"}`` (either form)."""
    if stored.startswith("{"):
        entry: dict[str, Any] = json.loads(stored)
        return entry
    stamp, state, *rest = stored.split("|", 2)
    event = rest[0] if rest else state
    return {"at": moment_text(stamp), "state": state, "event": event}


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


def result_for_storage(
    result: Mapping[str, Any], *, keep_urls: bool = False, owner: str = ""
) -> dict[str, Any]:
    """The mirrored files as the hash stores them (``keep_urls``: with their presigned URLs, as
    a record of the previous version kept them; ``owner``: the id of the job whose files they
    are, left out of their keys)."""
    out: dict[str, Any] = {}
    for name, item in result.items():
        if not isinstance(item, Mapping):
            out[name] = item
            continue
        packed: dict[str, Any] = {}
        for k, v in item.items():
            if k == "url" and not keep_urls:
                continue
            parts = _around(v, owner) if k == "key" else None
            if parts is not None:
                packed["k"] = parts
            else:
                packed[k] = v
        digest = packed.get("sha256")
        if isinstance(digest, str) and len(digest) == 64:
            raw = bytes.fromhex(digest)
            packed["sha256"] = base64.b64encode(raw).decode().rstrip("=")
        named = _named_type(str(item.get("key", "")))
        if named is not None and packed.get("content_type") == named:
            del packed["content_type"]
        out[name] = packed
    return out


def _around(key: Any, owner: str) -> list[str] | None:
    """A key holding ``owner`` exactly once, as the parts before and after it."""
    if not owner or not isinstance(key, str) or key.count(owner) != 1:
        return None
    before, _, after = key.partition(owner)
    return [before, after]


def stored_result(result: Mapping[str, Any], *, keep_urls: bool = False, owner: str = "") -> str:
    """``result_for_storage`` as the JSON the hash holds (no spaces)."""
    packed = result_for_storage(result, keep_urls=keep_urls, owner=owner)
    return json.dumps(packed, ensure_ascii=False, separators=_SEPARATORS)


def full_result(stored: str, owner: str = "") -> dict[str, Any]:
    """The mirrored files as the record shows them, from any stored form (``owner``: the id
    of the job whose files they are, for keys stored without it)."""
    data: dict[str, Any] = json.loads(stored)
    for name, item in data.items():
        if not isinstance(item, dict):
            continue
        if "k" in item:
            if not owner:
                raise ValueError("a stored result without its owner's id")
            before, after = item["k"]
            item = data[name] = {
                ("key" if k == "k" else k): (f"{before}{owner}{after}" if k == "k" else v)
                for k, v in item.items()
            }
        digest = item.get("sha256")
        if isinstance(digest, str) and len(digest) == 43:
            item["sha256"] = base64.b64decode(digest + "=").hex()
        named = _named_type(str(item.get("key", "")))
        if "content_type" not in item and named is not None:
            item["content_type"] = named
        if "url" in item:  # the record's key order: url last, as the mirror wrote it
            item["url"] = item.pop("url")
    return data
