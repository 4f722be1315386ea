"""The local stack's settings file, ``{run_dir}/vidqueue.env``: how to reach the stack.

``vidqueue dev up`` writes it once the stack is up (the API's URL and a token it accepts, the
webhook secret, Redis, S3, Flower); ``vidqueue dev env`` prints it as ``export`` lines, and the
CLI's HTTP commands fall back to it when neither a flag nor the environment names an API. One
``KEY=VALUE`` line per setting, mode 0600 (it holds the stack's token)::

    VIDQUEUE_API_URL=http://127.0.0.1:8000
    VIDQUEUE_API_TOKEN=Zr3...
    VIDQUEUE_S3_BUCKET='my bucket'

A value is quoted as a POSIX shell word (``shlex.quote``) and read back with ``shlex``, so the
file is also valid shell (``. .run/vidqueue.env``) and ``exports`` prints shell that ``eval``
reads back exactly. python-dotenv (installed with pydantic-settings) is not used for this:
its writer escapes a ``'`` with a backslash inside single quotes, which a shell does not read
back, and it rewrites the file in place rather than atomically with the file's mode set first.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path

FILE_NAME = "vidqueue.env"
MODE = 0o600
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FORBIDDEN = ("\n", "\r", "\0")


class LocalEnvError(ValueError):
    """A settings file (or values for one) that cannot be read or written as they are."""


def path(run_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the settings file of the stack in ``run_dir`` lives (default: the ``run_dir``
    setting, ``VIDQUEUE_RUN_DIR``, else ``.run`` in the current directory)."""
    if run_dir is None:
        # config.settings is the one reader of the environment.
        from config.settings import get_settings

        run_dir = get_settings().run_dir
    return Path(run_dir) / FILE_NAME


def read(run_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The settings in the file, in file order; ``{}`` when there is no file.

    Blank lines and ``#`` comments are skipped; any other line must be ``KEY=VALUE``, else a
    ``LocalEnvError`` names the file and the line."""
    where = path(run_dir)
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return parse(text, str(where))


def write(values: Mapping[str, str], run_dir: str | os.PathLike[str] | None = None) -> Path:
    """Replace the file with ``values``; returns its path (see :func:`write_file`)."""
    return write_file(path(run_dir), values)


def write_file(where: Path, values: Mapping[str, str]) -> Path:
    """Replace the file ``where`` with ``values``: mode 0600 from the start, swapped in
    atomically, so a reader sees the old file or the new one, never half of one."""
    text = render(values)
    where.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 before a byte of the token is in it.
    fd, temp = tempfile.mkstemp(prefix=f".{where.name}.", dir=where.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, MODE)
        os.replace(temp, where)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return where


def render(values: Mapping[str, str]) -> str:
    """The file's text for ``values``: one ``KEY=VALUE`` line each, the value shell-quoted."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in _checked(values).items())


def exports(values: Mapping[str, str]) -> str:
    """``values`` as ``export KEY='value'`` lines, for ``eval "$(vidqueue dev env)"``."""
    return "\n".join(f"export {key}={_single_quoted(v)}" for key, v in _checked(values).items())


def parse(text: str, source: str = FILE_NAME) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of ``text`` (``source`` names it in errors)."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, raw = stripped.partition("=")
        if not sep or not _KEY.match(key):
            raise LocalEnvError(f"{source}, line {number}: expected KEY=VALUE, got {key!r}")
        try:
            words = shlex.split(raw, comments=False, posix=True)
        except ValueError as exc:
            raise LocalEnvError(f"{source}, line {number} ({key}): {exc}") from None
        if len(words) > 1:
            raise LocalEnvError(
                f"{source}, line {number} ({key}): the value is several words; quote it"
            )
        values[key] = words[0] if words else ""
    return values


def _checked(values: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise LocalEnvError(f"not a variable name: {key!r}")
        if not isinstance(value, str):
            raise LocalEnvError(f"{key}: the value must be a string, not {type(value).__name__}")
        if any(bad in value for bad in _FORBIDDEN):
            raise LocalEnvError(f"{key}: the value holds a line break or NUL")
        checked[key] = value
    return checked


def _single_quoted(value: str) -> str:
    """``value`` inside single quotes, each ``'`` in it written as ``'"'"'``."""
    return "'" + value.replace("'", "'\"'\"'") + "'"
