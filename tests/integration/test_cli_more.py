"""The ``vidqueue`` commands with ``--direct`` (Redis and S3, in-cluster), and ``top``: one
snapshot, JSON, and the live view in a terminal (a pty) quitting on ``q``."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from simulator.media import cover_png
from tests.support.cli import VIDQUEUE, direct_env, http_env, run
from tests.support.live import LiveStack
from workers.redis import keys

FLASH = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a lantern"}


@pytest.fixture
def idle_db(live: LiveStack) -> Iterator[tuple[str, redis.Redis]]:
    """Database 13 of the live Redis: no worker listens there, so jobs stay queued."""
    url = live.settings.redis_url.rsplit("/", 1)[0] + "/13"
    db = redis.Redis.from_url(url)
    db.flushdb()
    yield url, db
    db.flushdb()


def _jsonl(path: Path, specs: list[dict[str, object]], extra: str = "") -> Path:
    path.write_text("# a comment\n\n" + "\n".join(json.dumps(s) for s in specs) + "\n" + extra)
    return path


def test_batch_with_wait_follows_every_job_and_ends_with_a_summary_table(
    idle_stack: LiveStack, tmp_path: Path
) -> None:
    env = direct_env(idle_stack)
    specs = [{**FLASH, "labels": {"run": "cli-batch", "n": str(i)}} for i in range(6)]
    done = run(env, "batch", "--direct", str(_jsonl(tmp_path / "jobs.jsonl", specs)), "--wait")
    assert done.returncode == 0, done.stderr
    assert "enqueued 6/6" in done.stderr and "finished 6/6 succeeded=6" in done.stderr
    rows = dict(
        line.split()
        for line in done.stdout.splitlines()
        if line.split()[:1] in (["succeeded"], ["total"])
    )
    assert rows == {"succeeded": "6", "total": "6"}
    assert "time p50" in done.stdout and "time p95" in done.stdout


def test_batch_enqueues_thousands_in_batches_of_1000(
    live: LiveStack, tmp_path: Path, idle_db: tuple[str, redis.Redis]
) -> None:
    url, db = idle_db
    env = direct_env(live, VIDQUEUE_REDIS_URL=url)
    specs = [{**FLASH, "labels": {"n": str(i)}} for i in range(2500)]
    done = run(env, "batch", str(_jsonl(tmp_path / "big.jsonl", specs)), "--json", "--direct")
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout)["ids"]
    assert len(ids) == len(set(ids)) == 2500
    assert db.zcard(keys.by_producer("cli")) == 2500


def test_a_batch_with_a_bad_line_enqueues_nothing_and_names_the_line(
    live: LiveStack, tmp_path: Path, idle_db: tuple[str, redis.Redis]
) -> None:
    url, db = idle_db
    env = direct_env(live, VIDQUEUE_REDIS_URL=url)
    specs = [FLASH, FLASH, {**FLASH, "fps": 60}]
    done = run(env, "batch", "--direct", str(_jsonl(tmp_path / "bad.jsonl", specs)))
    assert done.returncode == 2
    assert "line 5: fps" in done.stderr  # two header lines, then the third spec
    broken = run(
        env, "batch", "--direct", str(_jsonl(tmp_path / "broken.jsonl", [FLASH], "{oops\n"))
    )
    assert broken.returncode == 2 and "line 4" in broken.stderr
    assert db.zcard(keys.all_jobs()) == 0


def test_list_and_cancel_direct(live: LiveStack, idle_db: tuple[str, redis.Redis]) -> None:
    url, _ = idle_db
    env = direct_env(live, VIDQUEUE_REDIS_URL=url)
    submitted = []
    for team in ("red", "blue", "red"):
        out = run(
            env, "submit", "--direct", "--provider", "solo", "--model", "cogvideox-flash",
            "--prompt", "p", "--label", f"team={team}", "--json",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        submitted.append(json.loads(out.stdout)["id"])
    listed = json.loads(run(env, "list", "--direct", "--json").stdout)
    assert [j["id"] for j in listed["jobs"]] == submitted[::-1]
    red = json.loads(run(env, "list", "--direct", "--label", "team=red", "--json").stdout)
    assert {j["id"] for j in red["jobs"]} == {submitted[0], submitted[2]}
    paged = json.loads(run(env, "list", "--direct", "--limit", "2", "--json").stdout)
    assert len(paged["jobs"]) == 2 and paged["next_cursor"]
    text = run(env, "list", "--direct").stdout
    assert submitted[0] in text and "team=red" in text
    cancelled = run(env, "cancel", "--direct", submitted[1], "--json")
    assert json.loads(cancelled.stdout)["state"] == "cancelled"
    only = json.loads(run(env, "list", "--direct", "--state", "cancelled", "--json").stdout)
    assert [j["id"] for j in only["jobs"]] == [submitted[1]]
    other = run(env, "list", "--direct", "--producer", "someone-else", "--json")
    assert json.loads(other.stdout)["jobs"] == []
    everyone = json.loads(run(env, "list", "--direct", "--all", "--json").stdout)
    assert {j["id"] for j in everyone["jobs"]} == set(submitted)
    unknown = run(env, "cancel", "--direct", "no-such-job")
    assert unknown.returncode == 2 and "no job" in unknown.stderr
    producer = run(env, "list", "--producer", "x")  # a producer is the token's, over HTTP
    assert producer.returncode == 2 and "--producer needs --direct" in producer.stderr


def test_direct_submit_uploads_to_s3_and_downloads_from_s3(
    idle_stack: LiveStack, tmp_path: Path
) -> None:
    env = direct_env(idle_stack)
    image = tmp_path / "first-frame.png"
    image.write_bytes(cover_png("cli-image"))
    done = run(
        env, "submit", "--direct", "--provider", "zhipu", "--model", "cogvideox-3",
        "--prompt", "it moves", "--image", str(image), "--duration", "5", "--wait", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["state"] == "succeeded" and record["spec"]["image"].startswith("upload:")
    video = tmp_path / "video.mp4"
    fetched = run(env, "download", "--direct", record["id"], "-o", str(video), "--json")
    assert fetched.returncode == 0, fetched.stderr
    assert hashlib.sha256(video.read_bytes()).hexdigest() == record["result"]["video"]["sha256"]
    status = run(env, "status", "--direct", record["id"], "--json")
    assert json.loads(status.stdout)["id"] == record["id"]
    waited = run(env, "wait", "--direct", record["id"])
    assert waited.returncode == 0 and "succeeded" in waited.stdout


# -- top -----------------------------------------------------------------------------------


def test_top_once_prints_each_provider_key_and_tenant(live: LiveStack) -> None:
    done = run(direct_env(live), "top", "--once")
    assert done.returncode == 0, done.stderr
    for name in ("zhipu", "SIM_ZHIPU_KEY", "kling", "in flight", "submits/m", "per tenant"):
        assert name in done.stdout
    assert "\x1b[" not in done.stdout  # piped: no terminal codes


def test_top_once_json_is_one_snapshot(live: LiveStack) -> None:
    done = run(direct_env(live), "top", "--once", "--json")
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)
    assert set(snap["jobs_by_state"]) >= {"queued", "running", "succeeded"}
    zhipu = next(p for p in snap["providers"] if p["name"] == "zhipu")
    assert zhipu["keys"][0]["key_id"] == "SIM_ZHIPU_KEY" and zhipu["keys"][0]["cap"] == 3
    assert isinstance(zhipu["waiting_by_fair"], dict)
    assert "sim-key-zhipu-test" not in done.stdout  # key ids, never the keys


class _Terminal:
    """A command on a new pseudo-terminal (``pty.fork``): its output, keys, exit code."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec, or exit at once
            try:
                os.execve(argv[0], argv, env)  # noqa: S606 (the command itself, no shell)
            finally:
                os._exit(127)
        self.code: int | None = None
        self.seen = b""

    def read_until(self, wanted: bytes, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        while wanted not in self.seen and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if not ready:
                continue
            try:
                self.seen += os.read(self.fd, 65536)
            except OSError:  # the child closed the terminal
                break
        return self.seen

    def press(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait(self, timeout_s: float) -> int | None:
        """The exit code once the command ends (its output drained meanwhile), or None."""
        deadline = time.monotonic() + timeout_s
        while self.code is None and time.monotonic() < deadline:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.code = os.waitstatus_to_exitcode(status)
            else:
                self.read_until(b"\0never", 0.2)
        return self.code

    def close(self) -> None:
        if self.wait(0.1) is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_top_live_in_a_terminal_quits_on_q(live: LiveStack) -> None:
    env = {**direct_env(live), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    term = _Terminal([VIDQUEUE, "top", "--interval", "0.3"], env)
    try:
        started = time.monotonic()
        shown = term.read_until(b"per tenant", 60)
        assert b"SIM_ZHIPU_KEY" in shown and b"per tenant" in shown, shown[-2000:]
        print(f"top showed its first frame after {time.monotonic() - started:.2f}s")
        time.sleep(0.5)  # a refresh or two
        term.press(b"q")
        quit_at = time.monotonic()
        code = term.wait(15)
        print(f"top exited {time.monotonic() - quit_at:.2f}s after q")
        assert code == 0
    finally:
        term.close()


def test_top_live_quits_cleanly_on_ctrl_c(live: LiveStack) -> None:
    env = {**direct_env(live), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    term = _Terminal([VIDQUEUE, "top", "--interval", "0.3"], env)
    try:
        assert b"per tenant" in term.read_until(b"per tenant", 60)
        term.press(b"\x03")  # Ctrl-C, through the terminal's line discipline
        assert term.wait(15) == 0
        assert b"Traceback" not in term.seen
    finally:
        term.close()


def test_submit_wait_draws_a_progress_bar_in_a_terminal(idle_stack: LiveStack) -> None:
    env = {**http_env(idle_stack), "TERM": "xterm-256color", "COLUMNS": "120"}
    argv = [VIDQUEUE, "submit", "--provider", "zhipu", "--model", "cogvideox-flash",
            "--prompt", "a bar", "--wait"]  # fmt: skip
    term = _Terminal(argv, env)
    try:
        term.read_until(b"s3://", 90)
        assert term.wait(30) == 0
        assert "━".encode() in term.seen and b"100%" in term.seen
        assert b"succeeded" in term.seen
    finally:
        term.close()


def test_demo_json_prints_the_results_as_one_object(idle_stack: LiveStack) -> None:
    done = run(direct_env(idle_stack), "demo", "--timeout", "120", "--json")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)  # the progress and the table went to stderr
    assert report["ok"] is True and report["total"] == report["succeeded"] == 12
    assert report["verified_in_s3"] == 12 and len(report["jobs"]) == 12
    assert all(job["state"] == "succeeded" for job in report["jobs"])
    assert "enqueued 12 jobs" in done.stderr
