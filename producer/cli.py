"""The ``vidqueue`` command: submit, batch, status, wait, list, cancel, download — plus ``sim``,
``dev``, ``demo`` and ``top``.

The job commands talk to Redis and S3 through the Python client, so they need the same
``VIDQUEUE_*`` settings as the workers (by default, the local stack). Jobs are created under the
producer identity ``--producer`` (default ``cli``). ``--json`` prints JSON for scripts. Exit
codes: 0 done, 1 a job failed (or timed out, or cannot be cancelled), 2 bad input or unknown id,
3 a service is unavailable (Redis, S3 or the API down or refusing writes; no S3 credentials).
A failure is one line on stderr; ``--debug`` prints its traceback too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Final

from producer import cli_args, cli_batch, cli_errors, cli_jobs
from producer.client import Client

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

# What a failure prints and its exit code: the one table is ``producer.cli_errors.EXITS``.
EXITS = cli_errors.EXITS
outcome = cli_errors.outcome


def parser() -> argparse.ArgumentParser:
    return cli_args.build(__doc__)


def main(argv: Sequence[str] | None = None) -> int:
    debug, argv = cli_errors.take_debug(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in cli_args.DELEGATED:
        command, rest = argv[0], argv[1:]
        return cli_errors.guard(lambda: _delegate(command, rest), debug=debug)
    args = parser().parse_args(argv)
    return cli_errors.guard(
        lambda: COMMANDS[args.command](Client(producer=args.producer), args), debug=debug
    )


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
