"""The concurrency gate: a lease semaphore per API key, and the dispatcher that fills it.

A slot is taken when a job is dispatched (before submit) and held until the job sees the
provider finish: that is what providers limit. A lease's score is its expiry in Redis TIME
(ms); polls renew it. Only the dispatcher adds leases, and it counts *every* lease — expired or
not — against the cap: a lease is removed only by its job, or by the sweep after it checked
that the provider is no longer working on that job. So the cap holds through crashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import redis

from config.providers import ProviderConfig
from workers import keys, lua

# How long a slot lease lives without renewal. Polls renew it every <= 60 s.
LEASE_S: Final = 300.0
# How long a dispatched job may wait for its submit task before the sweep re-sends it.
SUBMIT_DUE_S: Final = 10.0


@dataclass(frozen=True)
class Dispatched:
    job_id: str
    key_id: str


class Gate:
    def __init__(self, client: redis.Redis, *, lease_s: float = LEASE_S) -> None:
        self.redis = client
        self.lease_ms = int(lease_s * 1000)
        self._dispatch = client.register_script(lua.DISPATCH)
        self._renew = client.register_script(lua.RENEW)
        self._expired = client.register_script(lua.EXPIRED)
        self._reclaim = client.register_script(lua.RECLAIM)

    def dispatch(self, config: ProviderConfig) -> list[Dispatched]:
        """Pop waiting jobs into every free slot of the provider's keys (round-robin)."""
        key_ids = config.key_ids()
        script_keys = [keys.waiting(config.name), keys.due()]
        script_keys += [keys.gate(config.name, k) for k in key_ids]
        argv: list[str | int] = [keys.PREFIX, self.lease_ms, int(SUBMIT_DUE_S * 1000)]
        argv.append(len(key_ids))
        for key_id in key_ids:
            argv += [key_id, config.cap(key_id)]
        flat: list[bytes] = self._dispatch(keys=script_keys, args=argv)
        pairs = [x.decode() for x in flat]
        return [Dispatched(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]

    def renew(self, provider: str, key_id: str, job_id: str) -> bool:
        """Extend the job's lease; False if it holds none (it was reclaimed)."""
        held = self._renew(keys=[keys.gate(provider, key_id)], args=[job_id, self.lease_ms])
        return bool(held)

    def release(self, provider: str, key_id: str, job_id: str) -> None:
        self.redis.zrem(keys.gate(provider, key_id), job_id)

    def in_flight(self, provider: str, key_id: str) -> int:
        return int(self.redis.zcard(keys.gate(provider, key_id)))

    def holders(self, provider: str, key_id: str) -> list[str]:
        members: list[bytes] = self.redis.zrange(keys.gate(provider, key_id), 0, -1)  # type: ignore[assignment]
        return [m.decode() for m in members]

    def expired(self, provider: str, key_id: str) -> list[str]:
        ids: list[bytes] = self._expired(keys=[keys.gate(provider, key_id)])
        return [i.decode() for i in ids]

    def reclaim(self, provider: str, key_id: str, job_id: str, at_provider: str) -> int:
        """Decide one expired lease atomically: 0 not expired, 1 renewed, 2 released.

        ``at_provider`` lists the states (',a,b,') in which the provider may still be working
        on the job; such a job keeps its slot until its deadline.
        """
        script_keys = [keys.gate(provider, key_id), keys.job(job_id)]
        argv: list[str | int] = [job_id, key_id, self.lease_ms, at_provider]
        return int(self._reclaim(keys=script_keys, args=argv))

    def waiting(self, provider: str) -> int:
        return int(self.redis.zcard(keys.waiting(provider)))
