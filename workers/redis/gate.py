"""The concurrency gate: a lease semaphore per API key, and the dispatcher that fills it.

A slot is taken when a job is dispatched (before submit) and held until the job sees the
provider finish: that is what providers limit. A lease's score is its expiry in Redis TIME
(ms); polls renew it. Only the dispatcher adds leases, and it counts *every* lease — expired or
not — against the cap: a lease is removed only by its job, or by the sweep after it checked
that the provider is no longer working on that job. So the cap holds through crashes.

Back-pressure: when a provider answers "concurrency too high" below the configured cap (the
account is shared with something else), the key's effective cap shrinks multiplicatively and
the key cools down briefly; every accepted submit grows it back additively (AIMD).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import redis

from config.providers import ProviderConfig
from workers.redis import gate_scripts, keys

# How long a slot lease lives without renewal. Polls renew it every <= 60 s.
LEASE_S: Final = 300.0
# How long a dispatched job may wait for its submit task before the sweep re-sends it.
SUBMIT_DUE_S: Final = 10.0
# AIMD: the factor applied to a key's effective cap on "concurrency too high", and the pause.
SHRINK_FACTOR: Final = 0.7
COOL_DOWN_S: Final = 2.0


@dataclass(frozen=True)
class Dispatched:
    job_id: str
    key_id: str


class Gate:
    def __init__(self, client: redis.Redis, *, lease_s: float = LEASE_S) -> None:
        self.redis = client
        self.lease_ms = int(lease_s * 1000)
        self._dispatch = client.register_script(gate_scripts.DISPATCH)
        self._release = client.register_script(gate_scripts.RELEASE)
        self._renew = client.register_script(gate_scripts.RENEW)
        self._expired = client.register_script(gate_scripts.EXPIRED)
        self._reclaim = client.register_script(gate_scripts.RECLAIM)
        self._requeue = client.register_script(gate_scripts.REQUEUE)
        self._shrink = client.register_script(gate_scripts.SHRINK)
        self._grow = client.register_script(gate_scripts.GROW)

    def dispatch(self, config: ProviderConfig) -> list[Dispatched]:
        """Pop waiting jobs into every free slot of the provider's keys (round-robin)."""
        name = config.name
        script_keys = [keys.fair_queue(name), keys.due(), keys.in_flight_by_fair(name)]
        argv: list[str | int] = [self.lease_ms, int(SUBMIT_DUE_S * 1000), keys.PRIORITY_STRIDE]
        argv += [keys.job_prefix(), keys.waiting_prefix(name)]
        for key_id in config.key_ids():
            script_keys += [
                keys.gate(name, key_id),
                keys.effective_cap(name, key_id),
                keys.cooling(name, key_id),
            ]
            argv += [key_id, config.cap(key_id)]
        flat: list[bytes] = self._dispatch(keys=script_keys, args=argv)
        pairs = [x.decode() for x in flat]
        return [Dispatched(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]

    def renew(self, provider: str, key_id: str, job_id: str) -> bool:
        """Extend the job's lease; False if it holds none (it was reclaimed)."""
        held = self._renew(keys=[keys.gate(provider, key_id)], args=[job_id, self.lease_ms])
        return bool(held)

    def release(self, provider: str, key_id: str, job_id: str) -> bool:
        """Free the job's slot; False if it held none."""
        script_keys = [keys.gate(provider, key_id), keys.job(job_id)]
        script_keys.append(keys.in_flight_by_fair(provider))
        return bool(self._release(keys=script_keys, args=[job_id]))

    def requeue(self, provider: str, fair: str, job_id: str, score: str) -> None:
        """Put a job back at the front of its fair-share queue (its original score)."""
        script_keys = [keys.waiting(provider, fair), keys.fair_queue(provider)]
        self._requeue(keys=script_keys, args=[job_id, score, fair])

    def unqueue(self, provider: str, fair: str, job_id: str) -> None:
        """Drop a waiting job (cancelled) from its queue."""
        self.redis.zrem(keys.waiting(provider, fair), job_id)

    def shrink(self, config: ProviderConfig, key_id: str) -> float:
        """The provider said "concurrency too high": lower the key's cap and pause it."""
        script_keys = [keys.effective_cap(config.name, key_id), keys.cooling(config.name, key_id)]
        argv = [config.cap(key_id), SHRINK_FACTOR, int(COOL_DOWN_S * 1000)]
        argv.append(keys.EFFECTIVE_CAP_TTL_S)
        return float(self._shrink(keys=script_keys, args=argv))

    def grow(self, config: ProviderConfig, key_id: str) -> float:
        """An accepted submit: raise a lowered cap a little."""
        script_keys = [keys.effective_cap(config.name, key_id)]
        argv = [config.cap(key_id), keys.EFFECTIVE_CAP_TTL_S]
        return float(self._grow(keys=script_keys, args=argv))

    def effective_cap(self, config: ProviderConfig, key_id: str) -> float:
        value = self.redis.get(keys.effective_cap(config.name, key_id))
        return float(value) if value is not None else float(config.cap(key_id))

    def in_flight(self, provider: str, key_id: str) -> int:
        return int(self.redis.zcard(keys.gate(provider, key_id)))

    def holders(self, provider: str, key_id: str) -> list[str]:
        members: list[bytes] = self.redis.zrange(keys.gate(provider, key_id), 0, -1)  # type: ignore[assignment]
        return [m.decode() for m in members]

    def expired(self, provider: str, key_id: str) -> list[str]:
        ids: list[bytes] = self._expired(keys=[keys.gate(provider, key_id)])
        return [i.decode() for i in ids]

    def reclaim(
        self, provider: str, key_id: str, job_id: str, at_provider: str, held: str = ""
    ) -> int:
        """Decide one expired lease atomically: 0 not expired, 1 renewed, 2 released, 3
        released because the job's hold ran out (counted: ``unknown_released``).

        ``at_provider`` lists the states (',a,b,') in which the provider may still be working
        on the job; such a job keeps its slot until its deadline. A job in the ``held`` state
        (submit_unknown) with a ``hold_until_ms`` keeps it only until then.
        """
        script_keys = [keys.gate(provider, key_id), keys.job(job_id)]
        script_keys += [keys.in_flight_by_fair(provider), keys.unknown_released(provider)]
        argv: list[str | int] = [job_id, key_id, self.lease_ms, at_provider, held]
        return int(self._reclaim(keys=script_keys, args=argv))

    def hold(self, provider: str, key_id: str, job_id: str, hold_s: float) -> bool:
        """Make the job's lease run out in ``hold_s`` (a parked job's hold: the sweep then
        decides it); False if it holds none."""
        held = self._renew(keys=[keys.gate(provider, key_id)], args=[job_id, int(hold_s * 1000)])
        return bool(held)

    def unknown_released(self, provider: str) -> int:
        """How many submit_unknown jobs of the provider gave their slot back at their hold's
        end (the provider may still bill them)."""
        return int(self.redis.get(keys.unknown_released(provider)) or 0)

    def waiting_by_fair(self, provider: str) -> dict[str, int]:
        """How many jobs wait, per fair-share key."""
        fair: list[bytes] = self.redis.zrange(keys.fair_queue(provider), 0, -1)  # type: ignore[assignment]
        pipe = self.redis.pipeline(transaction=False)
        for name in fair:
            pipe.zcard(keys.waiting(provider, name.decode()))
        return {n.decode(): int(c) for n, c in zip(fair, pipe.execute(), strict=True)}

    def waiting(self, provider: str) -> int:
        return sum(self.waiting_by_fair(provider).values())
