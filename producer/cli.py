"""The ``vidqueue`` command (click): submit, batch, status, wait, cancel, list, download and top,
plus ``dev``, ``sim`` and ``demo``, whose own parsers take everything after their name.

The job commands talk to the HTTP API (``--api-url``/``VIDQUEUE_API_URL``,
``--token``/``VIDQUEUE_API_TOKEN``, else the local stack's settings file); ``--direct`` uses
Redis and S3 instead. Exit codes: 0 ok, 1 a job failed (or timed out, or cannot be
cancelled), 2 bad input or unknown id (a refused token too), 3 a service is unavailable. A
failure is one line on stderr; ``--debug`` (anywhere) adds its traceback. The one table of
failures is ``producer.cli_errors.EXITS``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Final

import click

from producer import cli_batch, cli_errors, cli_jobs
from producer.top import top

# What a failure prints and its exit code: the one table is ``producer.cli_errors.EXITS``.
EXITS = cli_errors.EXITS
outcome = cli_errors.outcome

# Commands with parsers of their own: everything after the name (``--help`` too) is theirs.
PASS_THROUGH: Final = {
    "dev": "The local stack: up | down | status | env.",
    "sim": "Run the provider simulator.",
    "demo": "Run 12 jobs through the local stack's API.",
}
_PASSED: Final = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 ok, 1 a job failed or timed out, 2 bad input or unknown id, "
    "3 a service is unavailable. Run `vidqueue COMMAND --help` for a command's flags.",
)
@click.version_option(package_name="vidqueue", prog_name="vidqueue", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="On failure, print the traceback too (any position).")
def group(debug: bool) -> None:
    """vidqueue: a job queue for AI video generation.

    The job commands talk to the HTTP API: --api-url or VIDQUEUE_API_URL, --token or
    VIDQUEUE_API_TOKEN (else the local stack's .run/vidqueue.env, else
    http://127.0.0.1:8000). --direct uses Redis and S3 instead.
    """


for _command in cli_jobs.COMMANDS:
    group.add_command(_command)
group.add_command(cli_batch.run)
group.add_command(top)


def _pass_through(name: str, text: str) -> None:
    @group.command(name, help=text, context_settings=_PASSED, add_help_option=False)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> int:
        return _delegate(name, list(args))


for _name, _text in PASS_THROUGH.items():
    _pass_through(_name, _text)


def _delegate(command: str, rest: list[str]) -> int:
    if command == "sim":
        from simulator.cli import main as sim_main

        return sim_main(rest)
    if command == "dev":
        from devstack.cli import main as dev_main

        return dev_main(rest)
    from producer.demo import main as demo_main

    return demo_main(rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; its exit code (failures translated by ``cli_errors``)."""
    debug, args = cli_errors.take_debug(sys.argv[1:] if argv is None else argv)
    return cli_errors.guard(lambda: _invoke(args), debug=debug)


def _invoke(args: list[str]) -> int:
    try:
        result: Any = group.main(args, prog_name="vidqueue", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message())
        return cli_errors.BAD_INPUT
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "vidqueue"
        click.echo(f"vidqueue: {exc.format_message()} (see `{where} --help`)", err=True)
        return exc.exit_code
    except click.Abort:
        return 130
    except click.ClickException as exc:
        click.echo(f"vidqueue: {exc.format_message()}", err=True)
        return exc.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
