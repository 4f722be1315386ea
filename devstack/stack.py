"""One local stack: its services, their run directory and the environment they share.

Used by ``vidqueue dev up|down|status`` and by test fixtures, which build a second stack on
other ports in a temporary run directory::

    with Stack(settings, {"VIDQUEUE_REDIS_URL": url}, tmp_path / "run") as stack:
        stack.start_redis()
        stack.start_s3()
        stack.start_worker("worker1")
        stack.kill("worker1")           # SIGKILL, as a crash would
        stack.restart("redis")
    # leaving the block stops every service of the stack

``start_s3_proxy`` puts a fault proxy between the services started after it and S3.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from config.settings import Settings
from devstack.apps import (
    api_spec,
    beat_spec,
    flower_spec,
    s3_proxy_spec,
    simulator_spec,
    worker_spec,
)
from devstack.env import StackContext, make_context
from devstack.processes import ProcessManager, ServiceError, ServiceSpec, ServiceStatus
from devstack.redis_server import redis_spec
from devstack.seaweed import s3_spec
from devstack.sentinel import replica_spec, sentinel_spec

SpecBuilder = Callable[[], ServiceSpec]


class Stack:
    """Services of one stack, started in the foreground and left running in the background.

    ``env`` is layered over this process's environment (see :func:`devstack.env.stack_env`);
    ``run_dir`` defaults to ``settings.run_dir`` and ``cwd`` to the project root.
    """

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str] | None = None,
        run_dir: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.settings = settings
        self.ctx: StackContext = make_context(settings, run_dir or Path(settings.run_dir), env, cwd)
        self.processes = ProcessManager(self.ctx.run_dir)
        self._builders: dict[str, SpecBuilder] = {}

    @property
    def run_dir(self) -> Path:
        return self.ctx.run_dir

    @property
    def env(self) -> Mapping[str, str]:
        """The environment every service of this stack gets."""
        return self.ctx.env

    def start_redis(self) -> ServiceStatus:
        return self._start("redis", lambda: redis_spec(self.ctx))

    def start_redis_replica(self, name: str, port: int) -> ServiceStatus:
        """A replica of this stack's Redis on ``port`` (``devstack.sentinel``)."""
        master_port = self.settings.redis_port
        return self._start(name, lambda: replica_spec(self.ctx, name, port, master_port))

    def start_sentinel(self, name: str, port: int, master: str) -> ServiceStatus:
        """A Redis Sentinel on ``port`` watching this stack's Redis as ``master``."""
        master_port = self.settings.redis_port
        return self._start(name, lambda: sentinel_spec(self.ctx, name, port, master, master_port))

    def start_s3(self) -> ServiceStatus:
        return self._start("s3", lambda: s3_spec(self.ctx))

    def start_s3_proxy(
        self, port: int, options: Mapping[str, float] | None = None
    ) -> ServiceStatus:
        """Start the S3 fault proxy (``devstack.faultproxy``) on ``port`` in front of this
        stack's S3. Services started from now on reach S3 through it
        (``VIDQUEUE_S3_ENDPOINT_URL``); presigned URLs keep the real endpoint
        (``VIDQUEUE_S3_PUBLIC_ENDPOINT_URL``). ``options``: its starting fault rates."""
        upstream = self.settings.s3_endpoint_url
        status = self._start("s3-proxy", lambda: s3_proxy_spec(self.ctx, port, upstream, options))
        routed = {
            "VIDQUEUE_S3_ENDPOINT_URL": status.address,
            "VIDQUEUE_S3_PUBLIC_ENDPOINT_URL": self.settings.s3_presign_endpoint_url,
        }
        self.ctx = replace(self.ctx, env={**self.ctx.env, **routed})
        return status

    def start_simulator(self, extra_args: Sequence[str] = ()) -> ServiceStatus:
        return self._start("simulator", lambda: simulator_spec(self.ctx, extra_args))

    def start_worker(
        self,
        name: str = "worker1",
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> ServiceStatus:
        return self._start(
            name, lambda: worker_spec(self.ctx, name, queues, concurrency, extra_args)
        )

    def start_beat(self) -> ServiceStatus:
        return self._start("beat", lambda: beat_spec(self.ctx))

    def start_api(self) -> ServiceStatus:
        return self._start("api", lambda: api_spec(self.ctx))

    def start_flower(self) -> ServiceStatus:
        return self._start("flower", lambda: flower_spec(self.ctx))

    def restart(self, name: str) -> ServiceStatus:
        """Stop ``name`` if it runs, then start it again as it was last started."""
        builder = self._builders.get(name) or self._default_builder(name)
        self.stop(name)
        return self._start(name, builder)

    def kill(self, name: str, sig: int = signal.SIGKILL, *, group: bool = True) -> None:
        """Signal ``name`` (its whole process group by default); SIGKILL also reaps it."""
        self.processes.kill(name, sig, group=group)

    def stop(self, name: str, timeout_s: float | None = None) -> None:
        self.processes.stop(name, timeout_s)

    def stop_all(self) -> None:
        """Stop every recorded service, the last started first."""
        for name in reversed(self.processes.names()):
            self.processes.stop(name)

    def is_running(self, name: str) -> bool:
        return self.processes.is_running(name)

    def status(self) -> list[ServiceStatus]:
        """Every recorded service of this run directory, oldest start first."""
        return [self.processes.status(name) for name in self.processes.names()]

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def _start(self, name: str, builder: SpecBuilder) -> ServiceStatus:
        self._builders[name] = builder
        return self.processes.start(builder())

    def _default_builder(self, name: str) -> SpecBuilder:
        simple: dict[str, SpecBuilder] = {
            "redis": lambda: redis_spec(self.ctx),
            "s3": lambda: s3_spec(self.ctx),
            "simulator": lambda: simulator_spec(self.ctx),
            "beat": lambda: beat_spec(self.ctx),
            "api": lambda: api_spec(self.ctx),
            "flower": lambda: flower_spec(self.ctx),
        }
        if name in simple:
            return simple[name]
        if name.startswith("worker"):
            return lambda: worker_spec(self.ctx, name)
        raise ServiceError(f"unknown service {name!r}")
