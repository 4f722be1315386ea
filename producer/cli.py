"""The ``vidqueue`` command: submit, batch, status, wait, list, cancel, download — plus ``sim``,
``dev``, ``demo`` and ``top``.

The job commands talk to Redis and S3 through the Python client, so they need the same
``VIDQUEUE_*`` settings as the workers (by default, the local stack). Jobs are created under the
producer identity ``--producer`` (default ``cli``). ``--json`` prints JSON for scripts. Exit
codes: 0 done, 1 a job failed (or timed out, or cannot be cancelled), 2 bad input or unknown id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from producer import batch
from producer.client import CancelRefused, Client, IdempotencyConflict
from producer.progress import CountBar, ProgressLine, summary, summary_table
from workers.domain.errors import InvalidSpec, VidqueueError
from workers.domain.jobs import TERMINAL, JobRecord, State
from workers.io.storage import storage_errors

SPEC_FLAGS = ("provider", "model", "prompt", "size", "quality", "negative_prompt", "callback_url")
INT_FLAGS = ("duration", "fps", "seed", "priority")
# Subcommands with their own parsers: everything after the name is theirs.
DELEGATED = ("sim", "dev", "demo", "top")
URL_PREFIXES = ("http://", "https://", "data:", "upload:")


def _key_values(items: Sequence[str], *, flag: str, sep: str, as_json: bool) -> dict[str, Any]:
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
        spec["labels"] = _key_values(args.label, flag="labels", sep="=", as_json=False)
    if args.option:
        spec["options"] = _key_values(args.option, flag="options", sep="=", as_json=True)
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


# -- output --------------------------------------------------------------------------------


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


def _row(record: JobRecord) -> str:
    label = ",".join(f"{k}={v}" for k, v in record.spec.get("labels", {}).items())
    where = f"{record.provider}/{record.model}"
    return f"{record.id}  {record.state:<14} {where:<28} {record.created_at}  {label}"


# -- commands ------------------------------------------------------------------------------


def _wait(client: Client, job_id: str, timeout_s: float, quiet: bool) -> JobRecord:
    line = None if quiet else ProgressLine()
    try:
        return client.wait(job_id, timeout_s=timeout_s, on_change=line.update if line else None)
    finally:
        if line:
            line.close()


def _job(client: Client, args: argparse.Namespace) -> int:
    if args.command == "submit":
        record = client.enqueue(spec_from_args(args, client), producer=args.producer)
        if args.wait:
            record = _wait(client, record.id, args.timeout, args.json)
    elif args.command == "wait":
        record = _wait(client, args.job_id, args.timeout, args.json)
    elif args.command == "cancel":
        record = client.cancel(args.job_id)
    else:
        found = client.get(args.job_id)
        if found is None:
            raise KeyError(args.job_id)
        record = found
    _print(record, args.json)
    return 0 if record.state != State.FAILED else 1


def _list(client: Client, args: argparse.Namespace) -> int:
    labels = _key_values(args.label or [], flag="label", sep=":", as_json=False)
    page = client.list(
        state=args.state,
        provider=args.provider,
        labels=labels,
        limit=args.limit,
        cursor=args.cursor,
        producer=args.producer,
        everyone=args.all,
    )
    if args.json:
        print(page.model_dump_json(indent=2))
        return 0
    for record in page.jobs:
        print(_row(record))
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
    return 0


def _download(client: Client, args: argparse.Namespace) -> int:
    """Stream the mirrored file from S3 to ``-o`` and check its sha256 against the record."""
    record = client.get(args.job_id)
    if record is None:
        raise KeyError(args.job_id)
    what = "cover" if args.cover else "video"
    item = (record.result or {}).get(what)
    if record.state != State.SUCCEEDED or item is None:
        print(
            f"vidqueue: job {record.id} is {record.state}: no {what} to download", file=sys.stderr
        )
        return 1
    digest, size = hashlib.sha256(), 0
    with storage_errors("download"):
        body = client.storage.client.get_object(Bucket=item["bucket"], Key=item["key"])["Body"]
    with Path(args.output).open("wb") as out:
        for chunk in body.iter_chunks(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if digest.hexdigest() != item["sha256"]:
        print(f"vidqueue: {args.output}: sha256 does not match the record", file=sys.stderr)
        return 1
    done = {"id": record.id, "path": str(args.output), "size": size, "sha256": item["sha256"]}
    print(
        json.dumps(done) if args.json else f"{args.output}  {size} bytes  sha256 {item['sha256']}"
    )
    return 0


def _batch(client: Client, args: argparse.Namespace) -> int:
    """Validate every line first (nothing is enqueued if one is bad), then enqueue in batches
    of 1,000 with a progress bar; with ``--wait``, follow every job to its end."""
    lines = batch.read_jsonl(Path(args.file))
    for number, spec in lines:
        try:
            client.validate(spec, producer=args.producer)
        except InvalidSpec as exc:
            raise InvalidSpec(f"line {number}: {exc.field}", batch.bare_message(exc)) from None
    specs = [spec for _, spec in lines]
    bar = None if args.json else CountBar(len(specs), "enqueued")
    ids: list[str] = []
    for index, chunk in enumerate(batch.chunks(specs)):
        key = f"{args.idempotency_key}:{index}" if args.idempotency_key else None
        ids += [
            r.id for r in client.enqueue_many(chunk, producer=args.producer, idempotency_key=key)
        ]
        if bar:
            bar.update(len(ids), force=True)
    if bar:
        bar.close()
    if not args.wait:
        print(json.dumps({"ids": ids}) if args.json else "\n".join(ids))
        return 0
    records = _follow(client, ids, args.timeout, quiet=args.json)
    report = summary(records)
    if args.json:
        print(json.dumps({"summary": report, "jobs": [r.model_dump(mode="json") for r in records]}))
    else:
        print(summary_table(report))
    return 0 if report["states"].get(str(State.SUCCEEDED), 0) == len(records) else 1


def _follow(client: Client, ids: list[str], timeout_s: float, *, quiet: bool) -> list[JobRecord]:
    bar = None if quiet else CountBar(len(ids), "finished")
    states: dict[str, str] = {}
    counts: Counter[str] = Counter()

    def seen(record: JobRecord) -> None:
        before = states.get(record.id)
        if before:
            counts[before] -= 1
        states[record.id] = str(record.state)
        counts[str(record.state)] += 1
        if bar:
            bar.update(sum(counts[str(s)] for s in TERMINAL), counts)

    try:
        records = client.wait_many(ids, timeout_s=timeout_s, interval_s=1.0, on_change=seen)
        if bar:
            bar.update(len(records), Counter(str(r.state) for r in records), force=True)
        return records
    finally:
        if bar:
            bar.close()


# -- parsing -------------------------------------------------------------------------------


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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="vidqueue", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    shared = [_common()]
    _add_spec_flags(sub.add_parser("submit", help="enqueue a job", parents=shared))
    runs = sub.add_parser("batch", help="enqueue the specs of a JSON Lines file", parents=shared)
    runs.add_argument("file", metavar="FILE.jsonl")
    runs.add_argument("--wait", action="store_true", help="follow every job, then summarise")
    runs.add_argument("--timeout", type=float, default=6 * 3600.0)
    runs.add_argument("--idempotency-key", help="makes re-running the same file safe")
    for name, text in (
        ("status", "a job's record"),
        ("wait", "wait for a job"),
        ("cancel", "cancel a job"),
    ):
        cmd = sub.add_parser(name, help=text, parents=shared)
        cmd.add_argument("job_id")
        cmd.add_argument("--timeout", type=float, default=3600.0)
    listing = sub.add_parser("list", help="your jobs, newest first", parents=shared)
    listing.add_argument("--state", choices=[str(s) for s in State])
    listing.add_argument("--provider")
    listing.add_argument("--label", action="append", metavar="KEY:VALUE")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor")
    listing.add_argument("--all", action="store_true", help="every producer's jobs")
    fetch = sub.add_parser("download", help="download a finished job's video", parents=shared)
    fetch.add_argument("job_id")
    fetch.add_argument("-o", "--output", required=True, metavar="PATH")
    fetch.add_argument("--cover", action="store_true", help="the cover image instead")
    for name, text in (
        ("sim", "run the provider simulator"),
        ("dev", "the local stack: up | down | status"),
        ("demo", "run the demo against the local stack"),
        ("top", "the queue per provider and key, live"),
    ):
        cmd = sub.add_parser(name, help=text, add_help=False)
        cmd.add_argument("rest", nargs=argparse.REMAINDER)
    return top


COMMANDS = {"list": _list, "download": _download, "batch": _batch}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    args = parser().parse_args(argv)
    client = Client(producer=args.producer)
    try:
        return COMMANDS.get(args.command, _job)(client, args)
    except InvalidSpec as exc:
        print(f"vidqueue: invalid job: {exc.message}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"vidqueue: no job {exc.args[0]}", file=sys.stderr)
        return 2
    except (CancelRefused, IdempotencyConflict, TimeoutError) as exc:
        print(f"vidqueue: {exc}", file=sys.stderr)
        return 1
    except (VidqueueError, OSError) as exc:
        print(f"vidqueue: {exc}", file=sys.stderr)
        return 1


def _delegate(command: str, rest: list[str]) -> int:
    if command == "sim":
        from simulator.cli import main as sim_main

        return sim_main(rest)
    if command == "dev":
        from devstack.cli import main as dev_main

        return dev_main(rest)
    if command == "top":
        from producer.top import main as top_main

        return top_main(rest)
    from producer.demo import main as demo_main

    return demo_main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
