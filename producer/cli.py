"""The ``vidqueue`` command: submit, status, wait — plus ``sim``, ``dev`` and ``demo``.

``submit``/``status``/``wait`` talk to Redis through the Python client, so they need the same
``VIDQUEUE_*`` settings as the workers (by default, the local stack).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from producer.client import Client
from producer.progress import ProgressLine
from workers.errors import InvalidSpec
from workers.jobs import JobRecord, State

SPEC_FLAGS = ("provider", "model", "prompt", "size", "quality", "negative_prompt", "callback_url")
INT_FLAGS = ("duration", "fps", "seed", "priority")
# Subcommands with their own parsers: everything after the name is theirs.
DELEGATED = ("sim", "dev", "demo")


def _key_values(items: Sequence[str], *, flag: str, as_json: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidSpec(flag, f"expected KEY=VALUE, got {item!r}")
        if as_json:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value
        else:
            out[key] = value
    return out


def spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for name in (*SPEC_FLAGS, *INT_FLAGS):
        value = getattr(args, name)
        if value is not None:
            spec[name] = value
    if args.image:
        spec["image"] = args.image[0] if len(args.image) == 1 else args.image
    if args.with_audio:
        spec["with_audio"] = True
    if args.label:
        spec["labels"] = _key_values(args.label, flag="labels", as_json=False)
    if args.option:
        spec["options"] = _key_values(args.option, flag="options", as_json=True)
    if args.idempotency_key:
        spec["idempotency_key"] = args.idempotency_key
    return spec


def _print(record: JobRecord, as_json: bool) -> None:
    if as_json:
        print(record.model_dump_json(indent=2))
        return
    print(f"{record.id}  {record.state}  {record.provider}/{record.model}")
    if record.error:
        print(f"  error: {record.error.code}: {record.error.message}")
    for name, item in (record.result or {}).items():
        print(f"  {name}: s3://{item['bucket']}/{item['key']} ({item['size']} bytes)")
        print(f"    {item['url']}")


def _wait(client: Client, job_id: str, timeout_s: float, quiet: bool) -> JobRecord:
    line = None if quiet else ProgressLine()
    try:
        return client.wait(job_id, timeout_s=timeout_s, on_change=line.update if line else None)
    finally:
        if line:
            line.close()


def _add_spec_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt")
    parser.add_argument("--image", action="append", help="URL or data: URI; twice = first+last")
    for name in ("size", "quality", "negative-prompt", "callback-url", "idempotency-key"):
        parser.add_argument(f"--{name}")
    for name in INT_FLAGS:
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--with-audio", action="store_true")
    parser.add_argument("--label", action="append", metavar="KEY=VALUE")
    parser.add_argument("--option", action="append", metavar="KEY=JSON")
    parser.add_argument("--wait", action="store_true", help="wait for the job, with progress")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", action="store_true")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="vidqueue", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    _add_spec_flags(sub.add_parser("submit", help="enqueue a job"))
    for name in ("status", "wait"):
        cmd = sub.add_parser(name, help=f"{name} of a job")
        cmd.add_argument("job_id")
        cmd.add_argument("--json", action="store_true")
        cmd.add_argument("--timeout", type=float, default=3600.0)
    for name, text in (
        ("sim", "run the provider simulator"),
        ("dev", "the local stack: up | down | status"),
        ("demo", "run the demo against the local stack"),
    ):
        cmd = sub.add_parser(name, help=text, add_help=False)
        cmd.add_argument("rest", nargs=argparse.REMAINDER)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    args = parser().parse_args(argv)
    client = Client()
    try:
        if args.command == "submit":
            record = client.enqueue(spec_from_args(args), producer="cli")
            if args.wait:
                record = _wait(client, record.id, args.timeout, args.json)
        elif args.command == "status":
            found = client.get(args.job_id)
            if found is None:
                print(f"no job {args.job_id}", file=sys.stderr)
                return 2
            record = found
        else:
            record = _wait(client, args.job_id, args.timeout, args.json)
    except InvalidSpec as exc:
        print(f"vidqueue: invalid job: {exc.message}", file=sys.stderr)
        return 2
    except (KeyError, TimeoutError) as exc:
        print(f"vidqueue: {exc}", file=sys.stderr)
        return 1
    _print(record, args.json)
    return 0 if record.state != State.FAILED else 1


def _delegate(command: str, rest: list[str]) -> int:
    if command == "sim":
        from simulator.cli import main as sim_main

        return sim_main(rest)
    if command == "dev":
        from devstack.cli import main as dev_main

        return dev_main(rest)
    from producer.demo import main as demo_main

    return demo_main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
