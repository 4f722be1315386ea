"""``vidqueue batch FILE.jsonl``: many jobs from a JSON Lines file, each line checked before any
is enqueued, then enqueued in batches of ``MAX_BATCH`` (each all or none) with a progress
bar; with ``--wait``, followed to their end and summarised (states, p50/p95 time, errors).

With ``--direct`` every line is checked fully first (provider, model rules), so a bad line
enqueues nothing. Over the HTTP API each line's shape is checked here, and the API checks the
rest batch by batch: a file of more than 1,000 jobs whose line 1,500 names an unknown model
keeps its first 1,000 enqueued. ``--idempotency-key`` makes re-running the fixed file safe
(batch *i* is sent under ``{key}:{i}``, so the jobs already made are not made twice).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import click

from producer import batch
from producer.batch import MAX_BATCH
from producer.cli_args import job_target, json_flag, timeout_flag
from producer.cli_backend import Jobs, Target
from producer.progress import BatchProgress, console, summary, summary_table
from workers.domain.errors import InvalidSpec
from workers.domain.jobs import TERMINAL, JobRecord, State

# Seconds between rounds of reads while following a batch.
INTERVAL_S: Final = 1.0
_INDEXED: Final = re.compile(r"^jobs\.(\d+)(?:\.(.*))?$")


@click.command("batch", short_help="Enqueue the jobs of a JSON Lines file.")
@click.argument("file", metavar="FILE.jsonl", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="Follow every job to its end, then summarise.")
@timeout_flag(6 * 3600.0)
@click.option("--idempotency-key", metavar="KEY", help="Makes re-running the same file safe.")
@json_flag
@job_target
def run(
    target: Target,
    file: Path,
    wait: bool,
    timeout: float,
    idempotency_key: str | None,
    as_json: bool,
) -> int:
    """Enqueue the job specs of a JSON Lines file (one spec per line; # comments and blank
    lines skipped). Exit 1 unless every job succeeded (with --wait)."""
    lines = read_jsonl(file)
    with target.open() as jobs:
        _check(jobs, lines)
        ids = _enqueue(jobs, lines, idempotency_key, quiet=as_json)
        if not wait:
            print(json.dumps({"ids": ids}) if as_json else "\n".join(ids))
            return 0
        records = _follow(jobs, ids, timeout, quiet=as_json)
    report = summary(records)
    if as_json:
        print(json.dumps({"summary": report, "jobs": [r.model_dump(mode="json") for r in records]}))
    else:
        console().print(summary_table(report))
    return 0 if report["states"].get(str(State.SUCCEEDED), 0) == len(records) else 1


def _check(jobs: Jobs, lines: list[tuple[int, dict[str, Any]]]) -> None:
    """Every spec checked; an error names its line."""
    if not lines:
        raise InvalidSpec("file", "holds no job spec")
    for number, spec in lines:
        try:
            jobs.check(spec)
        except InvalidSpec as exc:
            raise InvalidSpec(f"line {number}: {exc.field}", batch.bare_message(exc)) from None


def _enqueue(
    jobs: Jobs, lines: list[tuple[int, dict[str, Any]]], key: str | None, *, quiet: bool
) -> list[str]:
    """Enqueue in chunks of ``MAX_BATCH`` (chunk *i* under ``{key}:{i}``); the new ids. A spec
    the API refuses is named by its line."""
    ids: list[str] = []
    with BatchProgress(len(lines), "enqueued") if not quiet else _Quiet() as bar:
        for index, chunk in enumerate(chunks(lines)):
            specs = [spec for _, spec in chunk]
            try:
                made = jobs.enqueue_many(specs, f"{key}:{index}" if key else None)
            except InvalidSpec as exc:
                raise _on_line(exc, chunk, len(ids)) from None
            ids += [record.id for record in made]
            bar.update(len(ids))
    return ids


def _on_line(
    exc: InvalidSpec, chunk: Sequence[tuple[int, dict[str, Any]]], enqueued: int
) -> InvalidSpec:
    """``jobs.{i}.{field}`` of a batch as ``line {n}: {field}``; says what stays enqueued."""
    found = _INDEXED.match(exc.field)
    if not found or int(found.group(1)) >= len(chunk):
        return exc
    number = chunk[int(found.group(1))][0]
    where = f"line {number}: {found.group(2)}" if found.group(2) else f"line {number}"
    message = batch.bare_message(exc)
    if enqueued:
        message += f" ({enqueued} jobs of earlier lines stay enqueued)"
    return InvalidSpec(where, message)


def _follow(jobs: Jobs, ids: list[str], timeout_s: float, *, quiet: bool) -> list[JobRecord]:
    states: dict[str, str] = {}
    counts: Counter[str] = Counter()
    with BatchProgress(len(ids), "finished") if not quiet else _Quiet() as bar:

        def seen(record: JobRecord) -> None:
            before = states.get(record.id)
            if before:
                counts[before] -= 1
            states[record.id] = str(record.state)
            counts[str(record.state)] += 1
            bar.update(sum(counts[str(s)] for s in TERMINAL), counts)

        records = jobs.wait_many(ids, timeout_s=timeout_s, interval_s=INTERVAL_S, on_change=seen)
        bar.update(len(records), Counter(str(r.state) for r in records))
        return records


class _Quiet:
    """No bar (``--json``)."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, done: int, counts: Any = None) -> None:
        return None


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, spec)`` of a JSON Lines file (blank lines and ``#`` comments skipped);
    an error names the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidSpec("file", f"{path}: no such file") from None
    return list(_specs(text.splitlines()))


def _specs(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSpec(f"line {number}", f"not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise InvalidSpec(f"line {number}", "must be a JSON object (a job spec)")
        yield number, data


def chunks(items: Sequence[Any], size: int = MAX_BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
