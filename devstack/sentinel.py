"""Redis high availability on one machine, for tests and trials: a replica of the stack's Redis
and Redis Sentinels watching them (``redis-sentinel``, else ``redis-server --sentinel``).

Production runs its Sentinels on separate hosts (docs/operations.md); here all of them listen on
127.0.0.1, which is enough to fail a master over for real. A Sentinel rewrites its config file
as it learns the topology, so each gets its own file in the run directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

import redis

from devstack.env import StackContext
from devstack.ports import LOOPBACK
from devstack.probes import PROBE_TIMEOUT_S, redis_ping
from devstack.processes import Launch, Probe, ServiceSpec
from devstack.redis_server import redis_binary, redis_spec

# How fast the Sentinels act: a master silent this long is down, and a failover that has not
# finished in this long is tried again. Production keeps Redis's defaults (30 s, 3 min).
DOWN_AFTER_MS: Final = 1000
FAILOVER_TIMEOUT_MS: Final = 5000


def replica_spec(ctx: StackContext, name: str, port: int, master_port: int) -> ServiceSpec:
    """A Redis replica of the server on ``master_port`` (configured as the stack's Redis is)."""
    replica_of = ("--replicaof", LOOPBACK, str(master_port))
    return redis_spec(ctx, name, port, replica_of, ready=synced(port))


def synced(port: int) -> Probe:
    """Ready when the replica holds the master's data and follows it (its link is up). The
    first sync takes a few seconds (Redis waits ``repl-diskless-sync-delay`` for more replicas)."""

    def probe(launch: Launch) -> bool:
        client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=PROBE_TIMEOUT_S)
        try:
            return client.info("replication").get("master_link_status") == "up"
        except redis.RedisError:
            return False
        finally:
            client.close()

    return probe


def sentinel_spec(
    ctx: StackContext, name: str, port: int, master: str, master_port: int, quorum: int = 2
) -> ServiceSpec:
    """A Sentinel on ``port`` watching the master ``master`` on ``master_port``."""
    conf = ctx.run_dir / f"{name}.conf"
    conf.write_text(sentinel_conf(port, master, master_port, quorum, ctx.run_dir / name))
    (ctx.run_dir / name).mkdir(parents=True, exist_ok=True)
    return ServiceSpec(
        name=name,
        argv=sentinel_argv(conf),
        ready=redis_ping(port),
        env=ctx.env,
        cwd=ctx.cwd,
        address=f"sentinel://{LOOPBACK}:{port}",
        port=port,
        start_timeout_s=20.0,
    )


def sentinel_conf(port: int, master: str, master_port: int, quorum: int, data_dir: Path) -> str:
    return "\n".join(
        [
            f"port {port}",
            f"bind {LOOPBACK}",
            "daemonize no",
            'logfile ""',
            f"dir {data_dir}",
            f"sentinel monitor {master} {LOOPBACK} {master_port} {quorum}",
            f"sentinel down-after-milliseconds {master} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {master} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {master} 1",
            "",
        ]
    )


def sentinel_argv(conf: Path) -> tuple[str, ...]:
    """Debian's ``redis-sentinel`` when installed; else the Redis server in Sentinel mode."""
    found = shutil.which("redis-sentinel")
    if found:
        return (found, str(conf))
    return (str(redis_binary()), str(conf), "--sentinel")
