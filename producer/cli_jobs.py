"""The ``vidqueue`` commands on single jobs: submit, status, wait, cancel, list, download.

Each returns its exit code: 0 done, 1 the job failed (or its file is missing or damaged).
Errors are raised, and ``producer.cli_errors`` turns them into one line and an exit code.
By default the commands talk to the HTTP API; ``--direct`` uses Redis and S3
(``producer.cli_backend``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any, Literal

import click
from rich import box
from rich.table import Table

from producer.cli_args import (
    job_target,
    json_flag,
    list_labels,
    spec_flags,
    spec_from_flags,
    timeout_flag,
)
from producer.cli_backend import Jobs, Target
from producer.client import JobPage
from producer.progress import JobProgress, console
from workers.domain.jobs import JobRecord, State

# Seconds between reads while waiting for a job.
INTERVAL_S = 0.5


@click.command()
@spec_flags
@click.option("--wait", is_flag=True, help="Wait for the job, with a progress bar.")
@timeout_flag(3600.0)
@json_flag
@job_target
def submit(target: Target, wait: bool, timeout: float, as_json: bool, **flags: Any) -> int:
    """Enqueue a job, and print its record.

    \b
    vidqueue submit --provider zhipu --model cogvideox-flash --prompt "a cat" --wait
    vidqueue submit --provider zhipu --model cogvideox-3 --prompt "it moves" \\
        --image ./frame.png --label team=growth --json
    """
    with target.open() as jobs:
        record = jobs.enqueue(spec_from_flags(flags, jobs))
        if wait:
            record = _wait(jobs, record.id, timeout, quiet=as_json)
    return _report(record, as_json)


@click.command()
@click.argument("job_id")
@json_flag
@job_target
def status(target: Target, job_id: str, as_json: bool) -> int:
    """Print a job's record (exit 1 when it failed)."""
    with target.open() as jobs:
        return _report(jobs.read(job_id), as_json)


@click.command()
@click.argument("job_id")
@timeout_flag(3600.0)
@json_flag
@job_target
def wait(target: Target, job_id: str, timeout: float, as_json: bool) -> int:
    """Wait for a job to end, with a progress bar; print its record."""
    with target.open() as jobs:
        return _report(_wait(jobs, job_id, timeout, quiet=as_json), as_json)


@click.command()
@click.argument("job_id")
@json_flag
@job_target
def cancel(target: Target, job_id: str, as_json: bool) -> int:
    """Cancel a job (exit 1 once it is mirroring or finished)."""
    with target.open() as jobs:
        return _report(jobs.cancel(job_id), as_json)


@click.command("list", short_help="Your jobs, newest first.")
@click.option("--state", type=click.Choice([str(s) for s in State]))
@click.option("--provider")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Repeat to AND them.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", help="next_cursor of the previous page.")
@click.option("--all", "everyone", is_flag=True, help="With --direct: every producer's jobs.")
@click.option(
    "--archived-on",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="The jobs of one UTC day in the S3 archive.",
)
@json_flag
@job_target
def list_jobs(
    target: Target,
    state: str | None,
    provider: str | None,
    labels: tuple[str, ...],
    limit: int,
    cursor: str | None,
    everyone: bool,
    archived_on: Any,
    as_json: bool,
) -> int:
    """Your jobs, newest first (a table; --json for the page with next_cursor)."""
    wanted = list_labels(labels)
    day: date | None = archived_on.date() if archived_on else None
    with target.open(everyone=everyone) as jobs:
        page = jobs.list(
            state=state,
            provider=provider,
            labels=wanted,
            limit=limit,
            cursor=cursor,
            archived_on=day,
        )
    if as_json:
        print(page.model_dump_json(indent=2))
        return 0
    console().print(jobs_table(page))
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
    return 0


@click.command(short_help="Download a finished job's video or cover.")
@click.argument("job_id")
@click.option("-o", "--output", required=True, metavar="PATH", help="Where to write the file.")
@click.option("--cover", is_flag=True, help="The cover image instead of the video.")
@json_flag
@job_target
def download(target: Target, job_id: str, output: str, cover: bool, as_json: bool) -> int:
    """Download a finished job's video (or cover); its sha256 is checked against the record."""
    what: Literal["video", "cover"] = "cover" if cover else "video"
    with target.open() as jobs:
        record = jobs.read(job_id)
        item = (record.result or {}).get(what)
        if record.state != State.SUCCEEDED or item is None:
            print(f"vidqueue: job {record.id} is {record.state}: no {what} to download",
                  file=sys.stderr)  # fmt: skip
            return 1
        digest, size = hashlib.sha256(), 0
        with jobs.open_file(record, what) as chunks, Path(output).open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    if digest.hexdigest() != item["sha256"]:
        print(f"vidqueue: {output}: sha256 does not match the record", file=sys.stderr)
        return 1
    done = {"id": record.id, "path": output, "size": size, "sha256": item["sha256"]}
    print(json.dumps(done) if as_json else f"{output}  {size} bytes  sha256 {item['sha256']}")
    return 0


COMMANDS = (submit, status, wait, cancel, list_jobs, download)


# -- helpers -------------------------------------------------------------------------------


def _wait(jobs: Jobs, job_id: str, timeout_s: float, *, quiet: bool) -> JobRecord:
    if quiet:
        [record] = jobs.wait_many(
            [job_id], timeout_s=timeout_s, interval_s=INTERVAL_S, on_change=None
        )
        return record
    with JobProgress() as bar:
        [record] = jobs.wait_many(
            [job_id], timeout_s=timeout_s, interval_s=INTERVAL_S, on_change=bar.update
        )
        return record


def _report(record: JobRecord, as_json: bool) -> int:
    """Print the record; exit 1 when the job failed."""
    if as_json:
        print(record.model_dump_json(indent=2))
    else:
        _print(record)
    return 0 if record.state != State.FAILED else 1


def _print(record: JobRecord) -> None:
    print(f"{record.id}  {record.state}  {record.provider}/{record.model}")
    if record.error:
        print(f"  error: {record.error.code}: {record.error.message}")
    for name, item in (record.result or {}).items():
        print(f"  {name}: s3://{item['bucket']}/{item['key']} ({item['size']} bytes)")
        print(f"    {item['url']}")


def jobs_table(page: JobPage) -> Table:
    """A page of jobs as a table: id, state, provider/model, created, labels."""
    table = Table(box=box.SIMPLE_HEAD)
    # An id is never cut short (it is what the other commands take): the others give way.
    table.add_column("id", no_wrap=True, min_width=32)
    for name in ("state", "provider/model", "created", "labels"):
        table.add_column(name, no_wrap=name != "labels")
    for record in page.jobs:
        labels = ",".join(f"{k}={v}" for k, v in record.spec.get("labels", {}).items())
        where = f"{record.provider}/{record.model}"
        table.add_row(record.id, str(record.state), where, record.created_at, labels)
    if not page.jobs:
        table.caption = "no jobs"
    return table
