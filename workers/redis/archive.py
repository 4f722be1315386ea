"""The Redis side of the archive: which finished jobs are due to leave Redis, what they hold,
and their removal, conditional on nothing having changed since they were written to S3.

Why a digest: an archiver reads a job, writes it to S3, verifies, and only then deletes it
from Redis. Between the read and the delete a webhook retry, a purge or another archiver may
touch the job. The snapshot script returns a digest of the job's hash (its timeline is a field
of it; a job written by an earlier version also has a separate timeline list, digested after
it) computed in Redis, and the delete script recomputes it: the job is removed only when it is
still finished, settled and byte for byte what was archived. Anything else leaves it for the
next pass.

Why the TTL is taken off: a finished record expires ``keys.RECORD_TTL_S`` after its end (set
by the terminal transition). With the archive on, only the archiver may drop a record, so a
finished job past the hot window loses its TTL (``protect``, and the snapshot) and stays until
it is archived, however long S3 is down.

No script spells a key: every key comes in KEYS from ``workers.redis.keys``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis

from workers.domain.jobs import TERMINAL, parse_iso
from workers.domain.uuid7 import created_ms
from workers.redis import keys
from workers.redis.store import Store

# The digest of a job: its hash fields sorted (each part length-prefixed, so no two hashes
# make the same string; the timeline field among them), then the entries of an earlier
# version's separate timeline list in order (none for a job written since). Computed in Redis
# only, by both scripts, so the sort order is the server's own each time.
_DIGEST = """
local function digest(job_key, events_key)
  local flat = redis.call('HGETALL', job_key)
  if #flat == 0 then return nil, flat, {} end
  local parts = {}
  for i = 1, #flat, 2 do
    parts[#parts + 1] = #flat[i] .. '=' .. flat[i] .. #flat[i + 1] .. '=' .. flat[i + 1]
  end
  table.sort(parts)
  local events = redis.call('LRANGE', events_key, 0, -1)
  for _, e in ipairs(events) do parts[#parts + 1] = #e .. '=' .. e end
  return redis.sha1hex(table.concat(parts, '|')), flat, events
end
"""

# A finished job as it is now, to archive. Takes its TTL off (only the archiver drops it now).
# KEYS[1] = job hash, KEYS[2] = an earlier version's events list (gone for a newer job).
# Returns {} when the job is gone, else {digest, hash items...}.
SNAPSHOT: Final = (
    _DIGEST
    + """
local job_key, events_key = KEYS[1], KEYS[2]
local sum, flat = digest(job_key, events_key)
if not sum then return {} end
redis.call('PERSIST', job_key)
redis.call('PERSIST', events_key)
local out = {sum}
for i = 1, #flat do out[#out + 1] = flat[i] end
return out
"""
)

# Removes an archived job: its hash (timeline included), an earlier version's events list and
# every index entry, only if it is still finished and settled and its digest is the one
# archived. KEYS[1] = job hash, KEYS[2] = an earlier version's events list, KEYS[3] = all-jobs
# zset, KEYS[4] = its producer's zset, KEYS[5] = due zset, KEYS[6] = its state's set,
# KEYS[7] = its idempotency key (deleted only while it still names this job; with ARGV[4] = ''
# there is none and KEYS[7] is unused).
# ARGV[1] = job id, ARGV[2] = the digest archived, ARGV[3] = finished states (',a,b,'),
# ARGV[4] = '1' when the job has an idempotency key.
# Returns 1 when removed, 0 when the job changed (left alone), -1 when it is already gone.
DELETE: Final = (
    _DIGEST
    + """
local job_key, events_key, all_jobs, by_producer = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local due_key, state_key, idem_key = KEYS[5], KEYS[6], KEYS[7]
local job_id, expected, finished, has_idem = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local sum = digest(job_key, events_key)
if not sum then return -1 end
if sum ~= expected then return 0 end
local f = redis.call('HMGET', job_key, 'state', 'at_provider', 'notify')
if not string.find(finished, ',' .. f[1] .. ',', 1, true) then return 0 end
if f[2] == '1' or f[3] == 'pending' then return 0 end
redis.call('DEL', job_key, events_key)
redis.call('ZREM', all_jobs, job_id)
redis.call('ZREM', by_producer, job_id)
redis.call('ZREM', due_key, job_id)
redis.call('SREM', state_key, job_id)
if has_idem == '1' and redis.call('GET', idem_key) == job_id then redis.call('DEL', idem_key) end
return 1
"""
)

_FINISHED: Final = "," + ",".join(sorted(str(s) for s in TERMINAL)) + ","
_FIELDS: Final = ("state", "completed_at", "at_provider", "notify")
CHUNK: Final = 500


@dataclass(frozen=True)
class Snapshot:
    """A job as it was read for archiving: its hash, and the digest (of the hash and the
    timeline) the delete compares."""

    job_id: str
    digest: str
    fields: dict[str, str]

    @property
    def producer(self) -> str:
        return self.fields.get("producer", "")


def settled(fields: Sequence[str | None], edge_ms: int) -> bool:
    """Whether a job (its ``_FIELDS``) is finished, settled, and ended before ``edge_ms``: no
    provider still works on it and no webhook is still to be sent."""
    state, completed_at, at_provider, notify = fields
    if state not in TERMINAL or at_provider == "1" or notify == "pending" or not completed_at:
        return False
    return int(parse_iso(completed_at).timestamp() * 1000) <= edge_ms


class ArchiveRows:
    """The archiver's reads and writes in Redis, on one client."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._snapshot = client.register_script(SNAPSHOT)
        self._delete = client.register_script(DELETE)
        self._store = Store(client)

    def lock(self, ttl_s: float) -> str | None:
        """Take the archiver's lock; its token, or None when another pass holds it."""
        token = uuid.uuid4().hex
        taken = self.redis.set(keys.archive_lock(), token, nx=True, px=int(ttl_s * 1000))
        return token if taken else None

    def unlock(self, token: str) -> None:
        """Give the lock back if it is still ours (it may have lapsed and been taken)."""
        if self.redis.get(keys.archive_lock()) == token.encode():
            self.redis.delete(keys.archive_lock())

    def due(
        self, edge_ms: int, *, limit: int, budget: int, start: int = 0
    ) -> tuple[list[str], int]:
        """Up to ``limit`` jobs to archive: finished and settled before ``edge_ms``, oldest
        created first, and the rank in ``all_jobs`` the walk reached. Jobs created before the
        edge that are not due yet (still running, a webhook pending, ``submit_unknown``) are
        skipped; at most ``budget`` are looked at, from rank ``start`` (a pass continues past
        the ones its previous batch skipped instead of reading them again)."""
        found: list[str] = []
        rank = start
        while len(found) < limit and rank - start < budget:
            count = min(CHUNK, budget - (rank - start))
            raw: list[bytes] = self.redis.zrangebyscore(  # type: ignore[assignment]
                keys.all_jobs(), "-inf", edge_ms, start=rank, num=count
            )
            if not raw:
                break
            walked = [member.decode() for member in raw]
            # Only a UUIDv7 id has an archive key (``workers.domain.uuid7``); others expire.
            ids = [job_id for job_id in walked if created_ms(job_id) is not None]
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(keys.job(job_id), _FIELDS)
            read = dict(zip(ids, pipe.execute(), strict=True))
            for job_id in walked:
                rank += 1
                values = [v.decode() if v is not None else None for v in read.get(job_id, ())]
                if values and settled(values, edge_ms):
                    found.append(job_id)
                    if len(found) == limit:
                        break
        return found, rank

    def snapshots(self, job_ids: Sequence[str]) -> list[Snapshot]:
        """The jobs as they are now (those gone since are left out), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            self._snapshot(keys=[keys.job(job_id), keys.events(job_id)], client=pipe)
        out: list[Snapshot] = []
        for job_id, flat in zip(job_ids, pipe.execute(), strict=True):
            if not flat:
                continue
            items = [item.decode() for item in flat]
            fields = dict(zip(items[1::2], items[2::2], strict=True))
            out.append(Snapshot(job_id, items[0], fields))
        return out

    def timelines(self, job_ids: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Each job's timeline as the API shows it (``Store.events``). Read after the
        snapshot: a change in between changes the digest, so the delete keeps the job."""
        return [self._store.events(job_id) for job_id in job_ids]

    def delete(self, snapshots: Sequence[Snapshot]) -> list[int]:
        """Remove archived jobs unless they changed (``DELETE``): 1 removed, 0 changed (kept),
        -1 already gone; one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for snap in snapshots:
            key = json.loads(snap.fields.get("spec") or "{}").get("idempotency_key") or ""
            idem = keys.idempotency(key, producer=snap.producer) if key else keys.job(snap.job_id)
            script_keys = [keys.job(snap.job_id), keys.events(snap.job_id), keys.all_jobs()]
            script_keys += [keys.by_producer(snap.producer), keys.due()]
            script_keys += [keys.by_state(snap.fields.get("state", "")), idem]
            argv = [snap.job_id, snap.digest, _FINISHED, "1" if key else ""]
            self._delete(keys=script_keys, args=argv, client=pipe)
        return [int(n) for n in pipe.execute()]

    def protect(self, edge_ms: int, *, limit: int, rescan: bool = False) -> int:
        """Take the TTL off the records of jobs created up to ``edge_ms`` that the walk has not
        passed yet, at most ``limit`` of them: from then on only the archiver removes them (a
        job not finished yet has no TTL; ``PERSIST`` leaves it as it is). Returns how many ids
        were walked.

        The first walk (``keys.archive_protected``) only moves forward, one step behind the hot
        window's edge. A job that ends more than the hot window after it was made (it waited,
        or was ``submit_unknown``) gets its TTL after that walk passed it, so while S3 is down
        the archiver also runs the ``rescan`` walk (``keys.archive_rescan``), which starts over
        at the oldest job when it reaches the edge: at ``limit`` ids per pass it comes round
        long before a 14-day TTL runs out."""
        cursor = keys.archive_rescan() if rescan else keys.archive_protected()
        start = self.redis.get(cursor)
        low = f"({float(start)}" if start else "-inf"
        entries: list[tuple[bytes, float]] = self.redis.zrangebyscore(  # type: ignore[assignment]
            keys.all_jobs(), low, edge_ms, start=0, num=limit, withscores=True
        )
        if not entries:
            if rescan:
                self.redis.delete(cursor)
            return 0
        last = entries[-1][1]
        if len(entries) == limit:
            # The page may end inside a run of equal scores (a batch made in one ms): take the
            # whole run, so that the next walk, which starts after this score, misses none.
            same: list[bytes] = self.redis.zrangebyscore(  # type: ignore[assignment]
                keys.all_jobs(), last, last
            )
            entries = [e for e in entries if e[1] != last] + [(m, last) for m in same]
        pipe = self.redis.pipeline(transaction=False)
        for member, _ in entries:
            job_id = member.decode()
            if created_ms(job_id) is None:
                continue  # never archived: its TTL stays
            pipe.persist(keys.job(job_id))
            pipe.persist(keys.events(job_id))
        pipe.set(cursor, repr(last))
        pipe.execute()
        return len(entries)
