"""``vidqueue dev up|down|status``: the whole local stack on 127.0.0.1.

``up`` starts, in order, Redis, S3, the provider simulator, the workers, beat, the HTTP API
and Flower, each waiting for the previous to be ready; services already running are left as
they are. If one fails, those this command started are stopped again and the failing
service's log tail is printed. Exit codes: 0 ok, 1 failure (``status``: not all running).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from config.settings import get_settings
from devstack.processes import ServiceError, ServiceStatus
from devstack.stack import Stack


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stack = Stack(get_settings())
    if args.command == "up":
        return up(stack, workers=args.workers)
    if args.command == "down":
        stack.stop_all()
        print(f"stopped every service recorded in {stack.run_dir}")
        return 0
    return status(stack, _expected(stack))


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
    return 0 if all(s.running for s in statuses) else 1


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
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
