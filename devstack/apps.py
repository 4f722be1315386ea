"""vidqueue's own services for the local stack: simulator, workers, beat, HTTP API, Flower, and
the S3 fault proxy of the chaos tests.

Each runs with this interpreter's environment (``sys.executable`` and the console scripts
beside it), from the project root, bound to loopback on the ports the settings give.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from devstack.env import StackContext, venv_tool
from devstack.ports import LOOPBACK, client_host
from devstack.probes import http_ok, log_says
from devstack.processes import ServiceSpec


def simulator_spec(ctx: StackContext, extra_args: Sequence[str] = ()) -> ServiceSpec:
    port = ctx.settings.sim_port
    return ServiceSpec(
        name="simulator",
        argv=(
            sys.executable,
            "-m",
            "simulator",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            *extra_args,
        ),
        ready=http_ok(f"http://{LOOPBACK}:{port}/healthz"),
        env=ctx.env,
        cwd=ctx.cwd,
        address=f"http://{LOOPBACK}:{port}",
        port=port,
        start_timeout_s=30.0,
    )


def worker_spec(
    ctx: StackContext,
    name: str = "worker1",
    queues: Sequence[str] | None = None,
    concurrency: int | None = None,
    extra_args: Sequence[str] = (),
) -> ServiceSpec:
    """A Celery worker whose node name is ``{name}@%h`` (every queue unless ``queues``)."""
    argv = [
        *venv_tool("celery"), "-A", "workers", "worker", "-l", "INFO",
        "--concurrency", str(concurrency or ctx.settings.worker_concurrency),
        "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if queues:
        argv += ["-Q", ",".join(queues)]
    return ServiceSpec(
        name=name,
        argv=(*argv, *extra_args),
        # Celery logs "celery@host ready." once it consumes; alive 1 s rules out a quick crash.
        ready=log_says("ready.", min_alive_s=1.0),
        env=ctx.env,
        cwd=ctx.cwd,
        address=",".join(queues) if queues else "all queues",
        start_timeout_s=60.0,
        # Warm shutdown waits for running tasks; acks_late redelivers whatever is cut short.
        stop_timeout_s=30.0,
    )


def beat_spec(ctx: StackContext) -> ServiceSpec:
    schedule = ctx.run_dir / "beat" / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    return ServiceSpec(
        name="beat",
        argv=(*venv_tool("celery"), "-A", "workers", "beat", "-l", "INFO", "-s", str(schedule)),
        ready=log_says("beat: Starting", min_alive_s=1.0),
        env=ctx.env,
        cwd=ctx.cwd,
        address="",
        start_timeout_s=30.0,
    )


def api_spec(ctx: StackContext) -> ServiceSpec:
    host, port = ctx.settings.api_host, ctx.settings.api_port
    return ServiceSpec(
        name="api",
        argv=(*venv_tool("uvicorn"), "producer.api:app", "--host", host, "--port", str(port)),
        ready=http_ok(f"http://{client_host(host)}:{port}/healthz"),
        env=ctx.env,
        cwd=ctx.cwd,
        address=f"http://{host}:{port}",
        port=port,
        start_timeout_s=30.0,
    )


def flower_spec(ctx: StackContext) -> ServiceSpec:
    port = ctx.settings.flower_port
    return ServiceSpec(
        name="flower",
        argv=(
            *venv_tool("celery"),
            "-A",
            "workers",
            "flower",
            f"--address={LOOPBACK}",
            f"--port={port}",
        ),
        # Flower's /healthcheck answers "OK" without credentials.
        ready=http_ok(f"http://{LOOPBACK}:{port}/healthcheck"),
        # Flower reads FLOWER_* variables: the password stays out of ps, the log and the record.
        env={**ctx.env, "FLOWER_BASIC_AUTH": ctx.settings.flower_basic_auth},
        cwd=ctx.cwd,
        address=f"http://{LOOPBACK}:{port}",
        port=port,
        start_timeout_s=45.0,
    )


def s3_proxy_spec(
    ctx: StackContext, port: int, upstream: str, options: Mapping[str, float] | None = None
) -> ServiceSpec:
    """The fault proxy (``devstack.faultproxy``) on ``port`` in front of ``upstream`` (S3);
    ``options`` are its starting fault rates (``reset_rate``, ``error_rate``, ...)."""
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in (options or {}).items()]
    return ServiceSpec(
        name="s3-proxy",
        argv=(
            sys.executable,
            "-m",
            "devstack.faultproxy",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--upstream",
            upstream,
            *flags,
        ),
        ready=http_ok(f"http://{LOOPBACK}:{port}/_proxy/stats"),
        env=ctx.env,
        cwd=ctx.cwd,
        address=f"http://{LOOPBACK}:{port}",
        port=port,
        start_timeout_s=20.0,
        stop_timeout_s=5.0,
    )
