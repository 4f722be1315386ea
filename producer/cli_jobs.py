"""The ``vidqueue`` commands on single jobs: submit, status, wait, cancel, list, download.

Each takes the client and the parsed arguments and returns the exit code: 0 done, 1 the job
failed (or its file is missing or damaged). Errors are raised, and ``producer.cli`` turns
them into a message and an exit code, in one place.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from producer.cli_args import key_values, spec_from_args
from producer.client import Client
from producer.progress import ProgressLine
from workers.domain.jobs import JobRecord, State
from workers.io.storage import storage_errors


def submit(client: Client, args: argparse.Namespace) -> int:
    record = client.enqueue(spec_from_args(args, client), producer=args.producer)
    if args.wait:
        record = _wait(client, record.id, args.timeout, args.json)
    return _report(record, args.json)


def status(client: Client, args: argparse.Namespace) -> int:
    return _report(client.read(args.job_id), args.json)


def wait(client: Client, args: argparse.Namespace) -> int:
    return _report(_wait(client, args.job_id, args.timeout, args.json), args.json)


def cancel(client: Client, args: argparse.Namespace) -> int:
    return _report(client.cancel(args.job_id), args.json)


def list_jobs(client: Client, args: argparse.Namespace) -> int:
    labels = key_values(args.label or [], flag="label", sep=":", as_json=False)
    page = client.list(
        state=args.state,
        provider=args.provider,
        labels=labels,
        limit=args.limit,
        cursor=args.cursor,
        producer=args.producer,
        everyone=args.all,
        archived_on=args.archived_on,
    )
    if args.json:
        print(page.model_dump_json(indent=2))
        return 0
    for record in page.jobs:
        print(_row(record))
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
    return 0


def download(client: Client, args: argparse.Namespace) -> int:
    """Stream the mirrored file from S3 to ``-o`` and check its sha256 against the record."""
    record = client.read(args.job_id)
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


# -- helpers -------------------------------------------------------------------------------


def _wait(client: Client, job_id: str, timeout_s: float, quiet: bool) -> JobRecord:
    line = None if quiet else ProgressLine()
    try:
        return client.wait(job_id, timeout_s=timeout_s, on_change=line.update if line else None)
    finally:
        if line:
            line.close()


def _report(record: JobRecord, as_json: bool) -> int:
    """Print the record; exit 1 when the job failed."""
    _print(record, as_json)
    return 0 if record.state != State.FAILED else 1


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
