"""``vidqueue dev up|down|status|env``: the whole local stack on 127.0.0.1.

``up`` starts, in order, Redis, S3, the provider simulator, the workers, beat, the HTTP API
and Flower, each waiting for the previous to be ready; services already running are left as
they are. If one fails, those this command started are stopped again and the failing
service's log tail is printed. ``status`` also asks the running API whether it is alive
(``/healthz``) and ready (``/readyz``: Redis takes writes, S3 answers), since a running process
is not a working one (a full Redis leaves every service "running"). ``env`` prints the S3
credentials the stack uses as shell ``export`` lines (``eval "$(vidqueue dev env)"``). Exit
codes: 0 ok, 1 failure (``status``: not all running).
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from config.settings import get_settings
from devstack.env import LOCAL_DEFAULTS
from devstack.processes import ServiceError, ServiceStatus
from devstack.stack import Stack


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "env":
        print(env_exports())
        return 0
    stack = Stack(get_settings())
    if args.command == "up":
        return up(stack, workers=args.workers)
    if args.command == "down":
        stack.stop_all()
        print(f"stopped every service recorded in {stack.run_dir}")
        return 0
    return status(stack, _expected(stack))


def env_exports(environ: Mapping[str, str] | None = None) -> str:
    """``export`` lines for the S3 credentials the stack's services get: the environment's,
    else the local defaults (as ``devstack.env.stack_env`` chooses)."""
    environ = os.environ if environ is None else environ
    lines = []
    for name, default in LOCAL_DEFAULTS.items():
        if name.startswith("AWS_"):
            lines.append(f"export {name}={shlex.quote(environ.get(name) or default)}")
    return "\n".join(lines)


def up(stack: Stack, workers: int = 1) -> int:
    started: list[str] = []
    for name, start in _plan(stack, workers):
        if stack.is_running(name):
            continue
        try:
            start()
        except ServiceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            for done in reversed(started):
                stack.stop(done)
            return 1
        started.append(name)
    _print_table(stack.status())
    settings = stack.settings
    user = settings.flower_basic_auth.split(":", 1)[0]
    print(f"\nFlower: http://127.0.0.1:{settings.flower_port}/  (user {user!r}; the password is")
    print("        the part after ':' in VIDQUEUE_FLOWER_BASIC_AUTH)")
    print("Stop everything with: vidqueue dev down")
    return 0


def status(stack: Stack, expected: Sequence[str]) -> int:
    names = list(expected) + [n for n in stack.processes.names() if n not in expected]
    statuses = [stack.processes.status(name) for name in names]
    _print_table(statuses)
    if stack.is_running("api"):
        print()
        for line in api_health(stack):
            print(line)
    return 0 if all(s.running for s in statuses) else 1


def api_health(stack: Stack) -> list[str]:
    """The API's liveness and readiness, one line each, with what is wrong when it is not."""
    host = stack.settings.api_host
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '', '::') else host}"
    base += f":{stack.settings.api_port}"
    lines = []
    for path in ("/healthz", "/readyz"):
        try:
            answer = httpx.get(base + path, timeout=5.0, trust_env=False)
        except httpx.HTTPError as exc:
            lines.append(f"api {path}: no answer ({type(exc).__name__})")
            continue
        detail = ""
        if path == "/readyz" and answer.status_code != 200:
            try:
                reasons = answer.json().get("reasons", {})
            except ValueError:
                reasons = {}
            detail = "".join(f"\n  {name}: {why}" for name, why in reasons.items())
        verdict = "ok" if answer.status_code == 200 else "NOT OK"
        lines.append(f"api {path}: {answer.status_code} {verdict}{detail}")
    return lines


def _plan(stack: Stack, workers: int) -> list[tuple[str, Callable[[], ServiceStatus]]]:
    plan: list[tuple[str, Callable[[], ServiceStatus]]] = [
        ("redis", stack.start_redis),
        ("s3", stack.start_s3),
        ("simulator", stack.start_simulator),
    ]
    for n in range(1, workers + 1):
        plan.append((f"worker{n}", functools.partial(stack.start_worker, f"worker{n}")))
    plan += [("beat", stack.start_beat), ("api", stack.start_api), ("flower", stack.start_flower)]
    return plan


def _expected(stack: Stack) -> list[str]:
    return [name for name, _ in _plan(stack, workers=1)]


def _print_table(statuses: Sequence[ServiceStatus]) -> None:
    rows = [("SERVICE", "STATE", "PID", "ADDRESS", "LOG")]
    for s in statuses:
        rows.append((s.name, s.state, str(s.pid or "-"), s.address or "-", _short(s.log)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _short(path: Path) -> str:
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else str(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidqueue dev", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="start the local stack in the background")
    up_cmd.add_argument("--workers", type=int, default=1, help="number of workers (default 1)")
    sub.add_parser("down", help="stop every service of the local stack")
    sub.add_parser("status", help="show which services run, their pids, addresses and logs")
    sub.add_parser("env", help="print the stack's S3 credentials as shell export lines")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
