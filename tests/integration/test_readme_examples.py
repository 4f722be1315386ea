"""The README's examples, replayed as printed against a local stack.

Every fenced block right below the marker ``<!-- replayed by
tests/integration/test_readme_examples.py -->`` runs here, as a reader would run it: in an
empty environment (``env -i`` with ``.venv/bin`` on ``PATH``, a temporary ``HOME`` and working
directory), after ``eval "$(vidqueue dev env)"`` as the README says; shell blocks with
``bash -euo pipefail``, Python blocks with the venv's Python. The stack is started the way
``make demo`` starts it (``vidqueue dev up``), but on free ports (its ``VIDQUEUE_*`` port
settings) in a temporary run directory, so it never meets a developer's stack; the one
variable the examples get from the test is that ``VIDQUEUE_RUN_DIR``. ``EXPECTED`` names the
sections whose examples must be marked, so removing a marker fails as surely as breaking an
example does. The stack is stopped (``vidqueue dev down``) however the tests end.
"""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = "<!-- replayed by tests/integration/test_readme_examples.py -->"
VENV_BIN = Path(sys.executable).parent
# Sections (their heading's text) and how many replayed blocks each must have.
EXPECTED: Mapping[str, int] = {
    "vidqueue": 1,  # the quick start, under the title
    "OpenAI SDK (a drop-in for `/v1/videos`)": 1,
    "Live events (Server-Sent Events)": 1,
    "CLI": 1,
    "Queue figures: `GET /v1/queue`": 1,
    "The local stack": 1,
}
LANGUAGES = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python", "py": "python"}
EXAMPLE_TIMEOUT_S = 60.0
# What every example runs after, as the README tells its reader; a failing `dev env` stops it.
PRELUDE = 'exports="$(vidqueue dev env)"\neval "$exports"\n'


@dataclass(frozen=True)
class Example:
    section: str
    line: int  # of the opening fence, 1-based
    language: str  # "sh" or "python"
    code: str

    @property
    def name(self) -> str:
        return f"{self.section}:{self.line}"


def marked_examples(text: str) -> list[Example]:
    """The fenced blocks right below a marker (blank lines between are allowed), in order.

    A marker followed by anything but a fenced ``sh`` or ``python`` block is an error naming
    its line. Headings are tracked outside fences only (a ``#`` comment in a block is none)."""
    lines = text.splitlines()
    examples: list[Example] = []
    section, in_fence, i = "", False, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (heading := re.match(r"#{1,6} (.+)", line)):
            section = heading.group(1).strip()
        elif not in_fence and line.strip() == MARKER:
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            fence = re.match(r"```(\w+)\s*$", lines[j]) if j < len(lines) else None
            if not fence or fence.group(1) not in LANGUAGES:
                raise AssertionError(
                    f"README.md:{i + 1}: the marker is not followed by a ```sh or ```python block"
                )
            end = j + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if end == len(lines):
                raise AssertionError(f"README.md:{j + 1}: the block is never closed")
            code = "\n".join(lines[j + 1 : end]) + "\n"
            examples.append(Example(section, j + 1, LANGUAGES[fence.group(1)], code))
            i = end + 1
            continue
        i += 1
    return examples


EXAMPLES = marked_examples(README.read_text(encoding="utf-8"))


def fresh_env(home: Path, run_dir: Path) -> dict[str, str]:
    """What ``env -i`` leaves, plus ``.venv/bin`` on PATH, a HOME and the stack's run dir."""
    return {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "VIDQUEUE_RUN_DIR": str(run_dir),
    }


@dataclass(frozen=True)
class ReadmeStack:
    run_dir: Path
    home: Path
    cwd: Path


def _vidqueue(*args: str, env: Mapping[str, str], cwd: Path, timeout: float) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "vidqueue"), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"vidqueue {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def readme_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadmeStack]:
    """A stack from ``vidqueue dev up`` on free ports in a temporary run directory."""
    base = tmp_path_factory.mktemp("readme")
    run_dir, home, cwd = base / "run", base / "home", base / "cwd"
    home.mkdir()
    cwd.mkdir()
    redis_port, s3_port, sim_port, api_port, flower_port = free_ports(5)
    env = fresh_env(home, run_dir) | {
        "VIDQUEUE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "VIDQUEUE_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "VIDQUEUE_SIM_PORT": str(sim_port),
        "VIDQUEUE_API_PORT": str(api_port),
        "VIDQUEUE_FLOWER_PORT": str(flower_port),
        "VIDQUEUE_WORKER_CONCURRENCY": "2",  # enough for these examples, and quicker to start
    }
    started = time.monotonic()
    try:
        _vidqueue("dev", "up", env=env, cwd=cwd, timeout=240)
        print(f"\nvidqueue dev up: {time.monotonic() - started:.1f} s")
        yield ReadmeStack(run_dir=run_dir, home=home, cwd=cwd)
    finally:
        _vidqueue("dev", "down", env=fresh_env(home, run_dir), cwd=cwd, timeout=120)


def test_the_readme_marks_its_examples() -> None:
    found: dict[str, int] = {}
    for example in EXAMPLES:
        found[example.section] = found.get(example.section, 0) + 1
    assert found == dict(EXPECTED), (
        f"replayed blocks per README section: {found}, expected {dict(EXPECTED)} "
        f"(each needs {MARKER} right above it)"
    )


def test_the_stack_publishes_its_settings_privately(readme_stack: ReadmeStack) -> None:
    settings = readme_stack.run_dir / "vidqueue.env"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    text = settings.read_text()
    for key in ("VIDQUEUE_API_URL", "VIDQUEUE_API_TOKEN", "VIDQUEUE_WEBHOOK_SECRET"):
        assert re.search(rf"^{key}=\S", text, re.M), f"{key} missing from {settings}"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_readme_example_runs_as_printed(readme_stack: ReadmeStack, example: Example) -> None:
    cwd = readme_stack.cwd / f"line-{example.line}"
    cwd.mkdir()
    if example.language == "python":
        (cwd / "example.py").write_text(example.code)
        script = PRELUDE + f'exec "{VENV_BIN / "python"}" example.py\n'
    else:
        script = PRELUDE + example.code
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=fresh_env(readme_stack.home, readme_stack.run_dir),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_S,
    )
    print(f"\nREADME.md:{example.line} ({example.section}): {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, (
        f"README.md:{example.line} ({example.section}) exited {done.returncode}\n"
        f"--- code\n{example.code}--- stdout\n{done.stdout[-3000:]}\n"
        f"--- stderr\n{done.stderr[-3000:]}"
    )


def test_a_missing_marker_or_a_stray_one_is_caught() -> None:
    # The parser itself: a marker over prose is an error; a block without one is not replayed.
    text = f"# t\n\n{MARKER}\n\n```sh\necho hi\n```\n\n```sh\necho no\n```\n"
    (only,) = marked_examples(text)
    assert (only.section, only.line, only.code) == ("t", 5, "echo hi\n")
    with pytest.raises(AssertionError, match=r"README\.md:3: the marker is not followed"):
        marked_examples(f"# t\n\n{MARKER}\nsome prose\n")
