"""config.local_env: the local stack's settings file, ``{run_dir}/vidqueue.env``."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from config import local_env
from config.local_env import LocalEnvError
from config.settings import get_settings

AWKWARD = {
    "VIDQUEUE_API_URL": "http://127.0.0.1:8123",
    "VIDQUEUE_API_TOKEN": "a'b\"c $HOME `id` \\n;|&*?",
    "EMPTY": "",
    "SPACES": "  two  words ",
    "HASH": "#not a comment",
    "UNICODE": "vidéo ✓",
}


def test_path_is_the_file_in_the_run_dir(tmp_path: Path) -> None:
    assert local_env.path(tmp_path) == tmp_path / "vidqueue.env"
    assert local_env.path(str(tmp_path)) == tmp_path / "vidqueue.env"


def test_path_defaults_to_the_run_dir_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDQUEUE_RUN_DIR", str(tmp_path / "elsewhere"))
    get_settings.cache_clear()
    try:
        assert local_env.path() == tmp_path / "elsewhere" / "vidqueue.env"
    finally:
        get_settings.cache_clear()


def test_read_without_a_file_is_empty(tmp_path: Path) -> None:
    assert local_env.read(tmp_path / "nothing-here") == {}


def test_write_then_read_round_trips_awkward_values(tmp_path: Path) -> None:
    written = local_env.write(AWKWARD, tmp_path / "run")
    assert written == tmp_path / "run" / "vidqueue.env"
    assert local_env.read(tmp_path / "run") == AWKWARD
    assert list(local_env.read(tmp_path / "run")) == list(AWKWARD)


def test_file_is_private_even_when_it_existed_with_a_wider_mode(tmp_path: Path) -> None:
    where = local_env.path(tmp_path)
    where.write_text("OLD=1\n")
    where.chmod(0o644)
    local_env.write({"VIDQUEUE_API_TOKEN": "t"}, tmp_path)
    assert stat.S_IMODE(where.stat().st_mode) == 0o600
    assert local_env.read(tmp_path) == {"VIDQUEUE_API_TOKEN": "t"}
    assert [p.name for p in tmp_path.iterdir()] == ["vidqueue.env"]  # no temp file left


def test_file_is_key_value_lines_a_shell_reads_back(tmp_path: Path) -> None:
    where = local_env.write(AWKWARD, tmp_path)
    lines = where.read_text().splitlines()
    assert lines[0] == "VIDQUEUE_API_URL=http://127.0.0.1:8123"
    assert all("=" in line for line in lines)
    script = f'set -a; . "{where}"; printf "%s\\0" "$VIDQUEUE_API_TOKEN" "$SPACES" "$EMPTY"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True, env={})
    assert out.stdout.split(b"\0")[:3] == [
        AWKWARD["VIDQUEUE_API_TOKEN"].encode(),
        AWKWARD["SPACES"].encode(),
        b"",
    ]


def test_exports_are_single_quoted_and_eval_gives_the_values_back() -> None:
    text = local_env.exports(AWKWARD)
    assert text.splitlines()[0] == "export VIDQUEUE_API_URL='http://127.0.0.1:8123'"
    script = 'eval "$1"; printf "%s\\0" "$VIDQUEUE_API_TOKEN" "$UNICODE" "$HASH"'
    out = subprocess.run(
        ["bash", "-c", script, "bash", text],
        capture_output=True,
        check=True,
        env={"LANG": "C.UTF-8"},
    )
    assert out.stdout.decode().split("\0")[:3] == [
        AWKWARD["VIDQUEUE_API_TOKEN"],
        AWKWARD["UNICODE"],
        AWKWARD["HASH"],
    ]


def test_comments_and_blank_lines_are_skipped() -> None:
    text = "# the local stack\n\nA=1\n  # indented comment\nB='x y'\n"
    assert local_env.parse(text) == {"A": "1", "B": "x y"}


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("no equals sign", "line 2: expected KEY=VALUE"),
        ("1BAD=x", "line 2: expected KEY=VALUE, got '1BAD'"),
        ("A=two words", "line 2 (A): the value is several words"),
        ("A='unterminated", "line 2 (A): No closing quotation"),
    ],
)
def test_a_bad_line_is_an_error_naming_the_file_and_line(
    tmp_path: Path, line: str, names: str
) -> None:
    local_env.path(tmp_path).write_text(f"OK=1\n{line}\n")
    with pytest.raises(LocalEnvError, match=re.escape("vidqueue.env, " + names)):
        local_env.read(tmp_path)


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"BAD KEY": "x"}, "not a variable name: 'BAD KEY'"),
        ({"A": "line\nbreak"}, "A: the value holds a line break"),
        ({"A": 3}, "A: the value must be a string, not int"),
    ],
)
def test_values_that_cannot_be_written_are_refused_and_leave_the_file(
    tmp_path: Path, values: dict[str, object], names: str
) -> None:
    local_env.write({"KEEP": "me"}, tmp_path)
    with pytest.raises(LocalEnvError, match=names):
        local_env.write(values, tmp_path)  # type: ignore[arg-type]
    assert local_env.read(tmp_path) == {"KEEP": "me"}


def test_write_creates_the_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "a" / "b"
    local_env.write({"A": "1"}, run_dir)
    assert os.path.isfile(run_dir / "vidqueue.env")
