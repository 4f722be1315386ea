"""The ``vidqueue`` command line's arguments: the parser, and the job spec the flags describe."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Final

from producer.client import Client
from workers.domain.errors import InvalidSpec
from workers.domain.jobs import State

SPEC_FLAGS = ("provider", "model", "prompt", "size", "quality", "negative_prompt", "callback_url")
INT_FLAGS: Final = ("duration", "fps", "seed", "priority")
URL_PREFIXES: Final = ("http://", "https://", "data:", "upload:")
# Subcommands with their own parsers: everything after the name is theirs.
DELEGATED: Final = {
    "sim": "run the provider simulator",
    "dev": "the local stack: up | down | status | env",
    "demo": "run the demo against the local stack",
    "top": "the queue per provider and key, live",
}


def key_values(items: Sequence[str], *, flag: str, sep: str, as_json: bool) -> dict[str, Any]:
    """``KEY{sep}VALUE`` items as a dict (values parsed as JSON where they are, with
    ``as_json``); a malformed one is an ``InvalidSpec`` naming ``flag``."""
    out: dict[str, Any] = {}
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key:
            raise InvalidSpec(flag, f"expected KEY{sep}VALUE, got {item!r}")
        if as_json:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value
        else:
            out[key] = value
    return out


def spec_from_args(args: argparse.Namespace, client: Client | None = None) -> dict[str, Any]:
    """The job spec the flags describe; a local ``--image`` file is uploaded (with ``client``)."""
    spec: dict[str, Any] = {}
    for name in (*SPEC_FLAGS, *INT_FLAGS):
        value = getattr(args, name)
        if value is not None:
            spec[name] = value
    if args.image:
        images = [_image(value, client, args.producer) for value in args.image]
        spec["image"] = images[0] if len(images) == 1 else images
    if args.with_audio is not None:
        spec["with_audio"] = args.with_audio
    if args.label:
        spec["labels"] = key_values(args.label, flag="labels", sep="=", as_json=False)
    if args.option:
        spec["options"] = key_values(args.option, flag="options", sep="=", as_json=True)
    if args.idempotency_key:
        spec["idempotency_key"] = args.idempotency_key
    return spec


def _image(value: str, client: Client | None, producer: str) -> str:
    if value.startswith(URL_PREFIXES):
        return value
    path = Path(value)
    if not path.is_file():
        raise InvalidSpec("image", f"{value}: no such file (nor an http(s) or data: URL)")
    if client is None:
        raise InvalidSpec("image", "a local file needs uploading")
    return client.upload_file(path, producer=producer).ref


# -- the parser ----------------------------------------------------------------------------


def build(description: str | None) -> argparse.ArgumentParser:
    """The whole command line: the job commands, and the delegated ones (``DELEGATED``)."""
    top = argparse.ArgumentParser(prog="vidqueue", description=description)
    top.add_argument(
        "--debug", action="store_true", help="on failure, print the traceback too (any command)"
    )
    sub = top.add_subparsers(dest="command", required=True)
    shared = [_common()]
    _add_spec_flags(sub.add_parser("submit", help="enqueue a job", parents=shared))
    _add_batch(
        sub.add_parser("batch", help="enqueue the specs of a JSON Lines file", parents=shared)
    )
    for name, text in (
        ("status", "a job's record"),
        ("wait", "wait for a job"),
        ("cancel", "cancel a job"),
    ):
        cmd = sub.add_parser(name, help=text, parents=shared)
        cmd.add_argument("job_id")
        cmd.add_argument("--timeout", type=float, default=3600.0)
    _add_list(sub.add_parser("list", help="your jobs, newest first", parents=shared))
    _add_download(
        sub.add_parser("download", help="download a finished job's video", parents=shared)
    )
    for name, text in DELEGATED.items():
        cmd = sub.add_parser(name, help=text, add_help=False)
        cmd.add_argument("rest", nargs=argparse.REMAINDER)
    return top


def _common() -> argparse.ArgumentParser:
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--json", action="store_true", help="print JSON, for scripts")
    shared.add_argument("--producer", default="cli", help="producer identity (default: cli)")
    return shared


def _add_spec_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt")
    parser.add_argument(
        "--image",
        action="append",
        metavar="PATH|URL",
        help="a file (uploaded), URL or data: URI; twice = first+last frame",
    )
    for name in ("size", "quality", "negative-prompt", "callback-url", "idempotency-key"):
        parser.add_argument(f"--{name}")
    for name in INT_FLAGS:
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--with-audio", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--label", action="append", metavar="KEY=VALUE")
    parser.add_argument("--option", action="append", metavar="KEY=JSON")
    parser.add_argument("--wait", action="store_true", help="wait for the job, with progress")
    parser.add_argument("--timeout", type=float, default=3600.0)


def _add_batch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.jsonl")
    parser.add_argument("--wait", action="store_true", help="follow every job, then summarise")
    parser.add_argument("--timeout", type=float, default=6 * 3600.0)
    parser.add_argument("--idempotency-key", help="makes re-running the same file safe")


def _add_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", choices=[str(s) for s in State])
    parser.add_argument("--provider")
    parser.add_argument("--label", action="append", metavar="KEY:VALUE")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--cursor")
    parser.add_argument("--all", action="store_true", help="every producer's jobs")
    parser.add_argument(
        "--archived-on",
        type=_day,
        metavar="YYYY-MM-DD",
        help="the jobs of one UTC day in the S3 archive",
    )


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day: use YYYY-MM-DD") from exc


def _add_download(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id")
    parser.add_argument("-o", "--output", required=True, metavar="PATH")
    parser.add_argument("--cover", action="store_true", help="the cover image instead")
