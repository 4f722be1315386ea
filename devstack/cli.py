"""``vidqueue dev up|down|status|env``: the whole local stack on 127.0.0.1.

``up`` starts, in order, Redis, S3, the provider simulator, the workers, beat, the HTTP API
and Flower, each waiting for the previous to be ready; services already running are left as
they are. If one fails, those this command started are stopped again and the failing
service's log tail is printed. ``status`` also asks the running API whether it is alive
(``/healthz``) and ready (``/readyz``: Redis takes writes, S3 answers), since a running process
is not a working one (a full Redis leaves every service "running").

Once the stack is up, ``up`` writes ``{run_dir}/vidqueue.env`` (``devstack.published``): the
API's URL and a token it accepts, the webhook secret, Redis, S3 and Flower. Where the
environment sets no API token or webhook secret, the stack runs with its own, generated at the
first ``up`` and kept in the run directory (``devstack.credentials``). ``env`` prints that file
as shell ``export`` lines (``eval "$(vidqueue dev env)"``); before any ``up`` it prints what
``up`` would use. ``status --json`` and ``env --json`` print JSON. Exit codes: 0 ok, 1 failure
(``status``: not all running).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from config import local_env
from config.settings import Settings, get_settings
from devstack import catalogue, credentials, published
from devstack.env import project_root, stack_env
from devstack.processes import ServiceError, ServiceStatus
from devstack.stack import Stack


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except local_env.LocalEnvError as exc:
        print(f"vidqueue dev: {exc}: fix or delete the file", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.command == "env":
        return env(settings, as_json=args.json)
    if args.command == "up":
        return up(Stack(prepared(settings)), workers=args.workers)
    stack = Stack(settings)
    if args.command == "down":
        stack.stop_all()
        print(f"stopped every service recorded in {stack.run_dir}")
        return 0
    return status(stack, _expected(stack), as_json=args.json)


def prepared(settings: Settings) -> Settings:
    """The settings ``dev up`` runs the stack with: its own API token and webhook secret where
    the environment sets none, and a providers file for its simulator's port."""
    run_dir = Path(settings.run_dir)
    settings = credentials.ensure(settings, run_dir)
    return catalogue.for_sim_port(settings, run_dir, project_root())


def env(settings: Settings, *, as_json: bool = False) -> int:
    """Print the stack's settings file as ``export`` lines (or JSON)."""
    values = local_env.read(settings.run_dir)
    if not values:
        where = local_env.path(settings.run_dir)
        print(f"vidqueue dev env: no {where} yet (run `vidqueue dev up`); these are the "
              "settings it would use", file=sys.stderr)  # fmt: skip
        values = planned_values(settings)
    print(json.dumps(values, indent=2) if as_json else local_env.exports(values))
    return 0


def planned_values(settings: Settings) -> dict[str, str]:
    """The settings file ``dev up`` would write, without generating anything."""
    run_dir = Path(settings.run_dir)
    settings = credentials.existing(settings, run_dir)
    settings = catalogue.for_sim_port(settings, run_dir, project_root(), write=False)
    return published.values(settings, stack_env(settings, run_dir), run_dir, project_root())


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
    # Rewritten when this run started something (the stack now runs with these settings), left
    # alone when everything already ran: another shell's settings must not overwrite those of
    # the stack that is actually running.
    where = local_env.path(stack.run_dir)
    if started or not where.is_file():
        where = published.publish(stack.settings, stack.env, stack.run_dir, stack.ctx.cwd)
    shown = local_env.read(stack.run_dir)
    api, flower = shown.get("VIDQUEUE_API_URL", ""), shown.get("VIDQUEUE_FLOWER_URL", "")
    user = stack.settings.flower_basic_auth.split(":", 1)[0]
    print(f"\nAPI:    {api}  (its URL and token are in {_short(where)})")
    print(f"Flower: {flower}  (user {user!r}; the password is")
    print("        the part after ':' in VIDQUEUE_FLOWER_BASIC_AUTH)")
    print('Settings for your shell: eval "$(vidqueue dev env)"')
    print("Stop everything with: vidqueue dev down")
    return 0


def status(stack: Stack, expected: Sequence[str], *, as_json: bool = False) -> int:
    names = list(expected) + [n for n in stack.processes.names() if n not in expected]
    statuses = [stack.processes.status(name) for name in names]
    checks = api_checks(stack) if stack.is_running("api") else []
    all_running = all(s.running for s in statuses)
    if as_json:
        document = {
            "run_dir": str(stack.run_dir),
            "all_running": all_running,
            "services": [_service_json(s) for s in statuses],
            "api": checks,
            "settings_file": str(local_env.path(stack.run_dir)),
        }
        print(json.dumps(document, indent=2))
    else:
        _print_table(statuses)
        if checks:
            print()
            for line in _health_lines(checks):
                print(line)
    return 0 if all_running else 1


def api_health(stack: Stack) -> list[str]:
    """The API's liveness and readiness, one line each, with what is wrong when it is not."""
    return _health_lines(api_checks(stack))


def api_checks(stack: Stack) -> list[dict[str, Any]]:
    """``/healthz`` and ``/readyz`` of the running API: path, status (None: no answer), ok,
    and the reasons ``/readyz`` gives (or the error, when there was no answer)."""
    base = _api_base(stack)
    checks: list[dict[str, Any]] = []
    for path in ("/healthz", "/readyz"):
        check: dict[str, Any] = {"path": path, "status": None, "ok": False, "reasons": {}}
        try:
            answer = httpx.get(base + path, timeout=5.0, trust_env=False)
        except httpx.HTTPError as exc:
            check["error"] = type(exc).__name__
            checks.append(check)
            continue
        check["status"], check["ok"] = answer.status_code, answer.status_code == 200
        if path == "/readyz" and answer.status_code != 200:
            with contextlib.suppress(ValueError, AttributeError):
                check["reasons"] = dict(answer.json().get("reasons", {}))
        checks.append(check)
    return checks


def _api_base(stack: Stack) -> str:
    """The running API's address as recorded when it started (the settings of this shell may
    name other ports), reachable from this machine; else the settings'."""
    recorded = stack.processes.status("api").address
    if not recorded:
        return published.api_url(stack.settings)
    for wildcard in ("0.0.0.0", "[::]", "::"):
        recorded = recorded.replace(f"//{wildcard}:", "//127.0.0.1:")
    return recorded.rstrip("/")


def _health_lines(checks: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for check in checks:
        if check["status"] is None:
            lines.append(f"api {check['path']}: no answer ({check.get('error', '')})")
            continue
        detail = "".join(f"\n  {name}: {why}" for name, why in check["reasons"].items())
        verdict = "ok" if check["ok"] else "NOT OK"
        lines.append(f"api {check['path']}: {check['status']} {verdict}{detail}")
    return lines


def _service_json(s: ServiceStatus) -> dict[str, Any]:
    return {
        "name": s.name,
        "state": s.state,
        "running": s.running,
        "pid": s.pid,
        "address": s.address,
        "log": str(s.log),
    }


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
    about = "The whole local stack on 127.0.0.1: up, down, status, env."
    parser = argparse.ArgumentParser(prog="vidqueue dev", description=about)
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="start the local stack in the background")
    up_cmd.add_argument("--workers", type=int, default=1, help="number of workers (default 1)")
    sub.add_parser("down", help="stop every service of the local stack")
    status_cmd = sub.add_parser(
        "status", help="show which services run, their pids, addresses and logs"
    )
    status_cmd.add_argument("--json", action="store_true", help="print JSON")
    env_cmd = sub.add_parser(
        "env", help="print the stack's settings (API URL, token, S3, Redis) as export lines"
    )
    env_cmd.add_argument("--json", action="store_true", help="print JSON")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
