"""`vidqueue --help` and each command's help: plain text, piped and on a terminal (no markup,
escape codes or reStructuredText left in), and the commands with parsers of their own get
their arguments, ``--help`` included."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

VIDQUEUE = str(Path(sys.executable).parent / "vidqueue")
OURS = ("submit", "batch", "status", "wait", "cancel", "list", "download", "top")
# What would show that markup leaked into the text.
ARTEFACTS = ("\x1b[", "\b", "``", "[bold", "[/", "[dim", ":class:", "\\b")


def _piped(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VIDQUEUE, *args], capture_output=True, text=True, timeout=60)


def _clean(text: str) -> None:
    for artefact in ARTEFACTS:
        assert artefact not in text, (artefact, text)


def test_the_top_level_help_lists_every_command() -> None:
    done = _piped("--help")
    assert done.returncode == 0 and done.stderr == ""
    _clean(done.stdout)
    assert done.stdout.startswith("Usage: vidqueue [OPTIONS] COMMAND [ARGS]...")
    for name in (*OURS, "dev", "sim", "demo"):
        assert f"\n  {name} " in done.stdout, name
    assert "--version" in done.stdout and "--debug" in done.stdout
    assert "Exit codes: 0 ok, 1" in done.stdout


@pytest.mark.parametrize("command", OURS)
def test_each_command_help_is_plain(command: str) -> None:
    done = _piped(command, "--help")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith(f"Usage: vidqueue {command} ")
    _clean(done.stdout)
    if command != "top":
        assert "--api-url URL" in done.stdout and "--direct" in done.stdout
    assert "--json" in done.stdout


def test_help_on_a_terminal_is_the_same_plain_text() -> None:
    pid, fd = pty.fork()
    if pid == 0:
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
        os.execve(VIDQUEUE, [VIDQUEUE, "submit", "--help"], env)  # noqa: S606
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    text = out.decode().replace("\r\n", "\n")
    assert text.startswith("Usage: vidqueue submit")
    _clean(text)


def test_pass_through_commands_get_their_own_help() -> None:
    dev = _piped("dev", "--help")
    assert dev.returncode == 0 and "up" in dev.stdout and "status" in dev.stdout
    assert dev.stdout.startswith("usage: vidqueue dev ")
    _clean(dev.stdout)
    sim = _piped("sim", "--help")
    assert sim.returncode == 0 and "--port" in sim.stdout and "--json" in sim.stdout
    assert sim.stdout.startswith("usage: vidqueue sim ")
    _clean(sim.stdout)
    demo = _piped("demo", "--help")
    assert demo.returncode == 0 and "--json" in demo.stdout and "--timeout" in demo.stdout
    _clean(demo.stdout)


def test_usage_errors_are_one_line() -> None:
    done = _piped("submit", "--model", "x")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "vidqueue: Missing option '--provider'. (see `vidqueue submit --help`)"
    ]
    unknown = _piped("frobnicate")
    assert unknown.returncode == 2 and len(unknown.stderr.splitlines()) == 1
    assert "frobnicate" in unknown.stderr


def test_version_is_the_package_version() -> None:
    from importlib.metadata import version

    done = _piped("--version")
    assert done.returncode == 0 and done.stdout == f"vidqueue {version('vidqueue')}\n"


def test_pass_through_commands_get_every_argument_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from producer import cli

    seen: list[tuple[str, list[str]]] = []

    def delegate(command: str, rest: list[str]) -> int:
        seen.append((command, rest))
        return 7

    monkeypatch.setattr(cli, "_delegate", delegate)
    assert cli.main(["dev", "up", "--workers", "2"]) == 7
    assert cli.main(["sim", "--port", "8090", "--debug"]) == 7  # sim keeps its own --debug
    assert cli.main(["--debug", "demo", "--json", "--timeout", "5"]) == 7
    assert cli.main(["dev", "--help"]) == 7
    assert seen == [
        ("dev", ["up", "--workers", "2"]),
        ("sim", ["--port", "8090", "--debug"]),
        ("demo", ["--json", "--timeout", "5"]),
        ("dev", ["--help"]),
    ]


def test_sim_json_prints_where_it_serves_and_its_options() -> None:
    import json
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sim = subprocess.Popen(
        [VIDQUEUE, "sim", "--port", str(port), "--json", "--gen-time-s", "2.5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        line = json.loads(sim.stdout.readline())
    finally:
        sim.terminate()
        sim.wait(timeout=30)
    assert line["url"] == f"http://127.0.0.1:{port}"
    assert line["options"]["gen_time_s"] == 2.5
