"""The ``vidqueue`` commands beyond submit/status: batch, list, cancel, download, images."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from simulator.media import cover_png
from tests.support.live import LiveStack
from workers.redis import keys

VIDQUEUE = str(Path(sys.executable).parent / "vidqueue")
FLASH = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a lantern"}


def _run(
    live: LiveStack, *args: str, redis_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(live.stack.env)
    if redis_url:
        env["VIDQUEUE_REDIS_URL"] = redis_url
    return subprocess.run([VIDQUEUE, *args], env=env, capture_output=True, text=True, timeout=180)


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
    live = idle_stack
    specs = [{**FLASH, "labels": {"run": "cli-batch", "n": str(i)}} for i in range(6)]
    done = _run(live, "batch", str(_jsonl(tmp_path / "jobs.jsonl", specs)), "--wait")
    assert done.returncode == 0, done.stderr
    assert "enqueued [" in done.stderr and "6/6" in done.stderr  # the progress bars
    assert "finished [" in done.stderr
    table = dict(line.rsplit(None, 1) for line in done.stdout.splitlines() if "  " in line)
    assert table["succeeded"] == "6" and table["total"] == "6"
    assert "time p50" in done.stdout and "time p95" in done.stdout


def test_batch_enqueues_thousands_in_batches_of_1000(
    live: LiveStack, tmp_path: Path, idle_db: tuple[str, redis.Redis]
) -> None:
    url, db = idle_db
    specs = [{**FLASH, "labels": {"n": str(i)}} for i in range(2500)]
    done = _run(live, "batch", str(_jsonl(tmp_path / "big.jsonl", specs)), "--json", redis_url=url)
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout)["ids"]
    assert len(ids) == len(set(ids)) == 2500
    assert db.zcard(keys.by_producer("cli")) == 2500


def test_a_batch_with_a_bad_line_enqueues_nothing_and_names_the_line(
    live: LiveStack, tmp_path: Path, idle_db: tuple[str, redis.Redis]
) -> None:
    url, db = idle_db
    specs = [FLASH, FLASH, {**FLASH, "fps": 60}]
    done = _run(live, "batch", str(_jsonl(tmp_path / "bad.jsonl", specs)), redis_url=url)
    assert done.returncode == 2
    assert "line 5: fps" in done.stderr  # two header lines, then the third spec
    broken = _run(
        live, "batch", str(_jsonl(tmp_path / "broken.jsonl", [FLASH], "{oops\n")), redis_url=url
    )
    assert broken.returncode == 2 and "line 4" in broken.stderr
    assert db.zcard(keys.all_jobs()) == 0


def test_list_and_cancel(live: LiveStack, idle_db: tuple[str, redis.Redis]) -> None:
    url, _ = idle_db
    submitted = []
    for team in ("red", "blue", "red"):
        out = _run(
            live, "submit", "--provider", "solo", "--model", "cogvideox-flash", "--prompt", "p",
            "--label", f"team={team}", "--json", redis_url=url,
        )  # fmt: skip
        submitted.append(json.loads(out.stdout)["id"])
    listed = json.loads(_run(live, "list", "--json", redis_url=url).stdout)
    assert [j["id"] for j in listed["jobs"]] == submitted[::-1]
    red = json.loads(_run(live, "list", "--label", "team:red", "--json", redis_url=url).stdout)
    assert {j["id"] for j in red["jobs"]} == {submitted[0], submitted[2]}
    paged = json.loads(_run(live, "list", "--limit", "2", "--json", redis_url=url).stdout)
    assert len(paged["jobs"]) == 2 and paged["next_cursor"]
    text = _run(live, "list", redis_url=url).stdout
    assert submitted[0] in text and "team=red" in text
    cancelled = _run(live, "cancel", submitted[1], "--json", redis_url=url)
    assert json.loads(cancelled.stdout)["state"] == "cancelled"
    only = json.loads(_run(live, "list", "--state", "cancelled", "--json", redis_url=url).stdout)
    assert [j["id"] for j in only["jobs"]] == [submitted[1]]
    assert (
        _run(live, "list", "--producer", "someone-else", "--json", redis_url=url).stdout.count(
            '"id"'
        )
        == 0
    )
    unknown = _run(live, "cancel", "no-such-job", redis_url=url)
    assert unknown.returncode == 2 and "no job" in unknown.stderr


def test_submit_uploads_a_local_image_and_download_fetches_the_files(
    idle_stack: LiveStack, tmp_path: Path
) -> None:
    live = idle_stack
    image = tmp_path / "first-frame.png"
    image.write_bytes(cover_png("cli-image"))
    done = _run(
        live, "submit", "--provider", "zhipu", "--model", "cogvideox-3", "--prompt", "it moves",
        "--image", str(image), "--duration", "5", "--no-with-audio", "--wait", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["state"] == "succeeded" and record["spec"]["image"].startswith("upload:")
    assert record["spec"]["with_audio"] is False
    video = tmp_path / "video.mp4"
    fetched = _run(live, "download", record["id"], "-o", str(video), "--json")
    assert fetched.returncode == 0, fetched.stderr
    assert hashlib.sha256(video.read_bytes()).hexdigest() == record["result"]["video"]["sha256"]
    assert json.loads(fetched.stdout)["size"] == video.stat().st_size
    cover = tmp_path / "cover.png"
    assert _run(live, "download", record["id"], "-o", str(cover), "--cover").returncode == 0
    assert cover.read_bytes().startswith(b"\x89PNG")
    missing = _run(live, "submit", "--provider", "zhipu", "--model", "cogvideox-3",
                   "--prompt", "x", "--image", str(tmp_path / "nope.png"))  # fmt: skip
    assert missing.returncode == 2 and "no such file" in missing.stderr
