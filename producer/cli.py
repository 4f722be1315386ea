"""The ``vidqueue`` command: submit, batch, status, wait, list, cancel, download — plus ``sim``,
``dev``, ``demo`` and ``top``.

The job commands talk to Redis and S3 through the Python client, so they need the same
``VIDQUEUE_*`` settings as the workers (by default, the local stack). Jobs are created under the
producer identity ``--producer`` (default ``cli``). ``--json`` prints JSON for scripts. Exit
codes: 0 done, 1 a job failed (or timed out, or cannot be cancelled), 2 bad input or unknown id.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Final

from producer import cli_args, cli_batch, cli_jobs
from producer.client import CancelRefused, Client, IdempotencyConflict
from workers.domain.errors import InvalidSpec, JobNotFound, VidqueueError

Command = Callable[[Client, argparse.Namespace], int]

COMMANDS: Final[dict[str, Command]] = {
    "submit": cli_jobs.submit,
    "status": cli_jobs.status,
    "wait": cli_jobs.wait,
    "cancel": cli_jobs.cancel,
    "list": cli_jobs.list_jobs,
    "download": cli_jobs.download,
    "batch": cli_batch.run,
}

# The one mapping from an error to what the command says (after ``vidqueue: ``; ``{}`` is the
# error's message) and the exit code it ends with. Anything else is a bug: it propagates, with
# its traceback — a plain ``KeyError`` is never taken for an unknown job.
EXITS: Final[dict[type[Exception], tuple[str, int]]] = {
    InvalidSpec: ("invalid job: {}", 2),
    JobNotFound: ("{}", 2),
    CancelRefused: ("{}", 1),
    IdempotencyConflict: ("{}", 1),
    TimeoutError: ("{}", 1),
    VidqueueError: ("{}", 1),
    OSError: ("{}", 1),
}


def outcome(exc: Exception) -> tuple[str, int]:
    """What the command prints for ``exc`` and the exit code: the row of the nearest class in
    its MRO (``JobNotFound`` before ``VidqueueError``, ``TimeoutError`` before ``OSError``)."""
    for kind in type(exc).__mro__:
        if kind in EXITS:
            template, code = EXITS[kind]
            return "vidqueue: " + template.format(exc), code
    raise exc


def parser() -> argparse.ArgumentParser:
    return cli_args.build(__doc__)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in cli_args.DELEGATED:
        return _delegate(argv[0], argv[1:])
    args = parser().parse_args(argv)
    client = Client(producer=args.producer)
    try:
        return COMMANDS[args.command](client, args)
    except tuple(EXITS) as exc:
        message, code = outcome(exc)
        print(message, file=sys.stderr)
        return code


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
