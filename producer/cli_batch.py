"""``vidqueue batch FILE.jsonl``: many jobs from a JSON Lines file, all validated before any is
enqueued, then enqueued in batches of ``MAX_BATCH`` with a progress bar; with ``--wait``,
followed to their end and summarised (states, p50/p95 time, errors)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from producer import batch
from producer.batch import MAX_BATCH
from producer.client import Client
from producer.progress import CountBar, summary, summary_table
from workers.domain.errors import InvalidSpec
from workers.domain.jobs import TERMINAL, JobRecord, State


def run(client: Client, args: argparse.Namespace) -> int:
    """Validate every line first (nothing is enqueued if one is bad), then enqueue; with
    ``--wait``, follow every job to its end. Exit 1 unless every job succeeded."""
    specs = _valid_specs(client, Path(args.file), args.producer)
    ids = _enqueue(client, specs, args)
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


def _valid_specs(client: Client, path: Path, producer: str) -> list[dict[str, Any]]:
    """The file's specs, each validated; an error names its line."""
    lines = read_jsonl(path)
    for number, spec in lines:
        try:
            client.validate(spec, producer=producer)
        except InvalidSpec as exc:
            raise InvalidSpec(f"line {number}: {exc.field}", batch.bare_message(exc)) from None
    return [spec for _, spec in lines]


def _enqueue(client: Client, specs: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """Enqueue in chunks of ``MAX_BATCH`` (chunk *i* under ``{key}:{i}``); the new ids."""
    bar = None if args.json else CountBar(len(specs), "enqueued")
    ids: list[str] = []
    for index, chunk in enumerate(chunks(specs)):
        key = f"{args.idempotency_key}:{index}" if args.idempotency_key else None
        ids += [
            r.id for r in client.enqueue_many(chunk, producer=args.producer, idempotency_key=key)
        ]
        if bar:
            bar.update(len(ids), force=True)
    if bar:
        bar.close()
    return ids


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


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, spec)`` of a JSON Lines file (blank lines and ``#`` comments skipped);
    an error names the line."""
    return list(_specs(path.read_text(encoding="utf-8").splitlines()))


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
