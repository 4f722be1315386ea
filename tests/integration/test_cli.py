"""The `vidqueue` job commands over the HTTP API (the default), against the live stack, as a
remote user runs them: the API's URL and a token, no Redis or S3 settings, no AWS credentials."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from config import local_env
from simulator.media import cover_png
from tests.support.cli import http_env, run
from tests.support.live import API_TOKEN, LiveStack

FLASH = ("--provider", "zhipu", "--model", "cogvideox-flash", "--prompt", "a lantern")
SOLO = ("--provider", "solo", "--model", "cogvideox-flash", "--prompt", "a slow river")


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("vidqueue: ")
    return lines[0]


def test_submit_with_wait_then_status_and_wait(live: LiveStack) -> None:
    env = http_env(live)
    done = run(
        env, "submit", "--provider", "zhipu", "--model", "cogvideox-3", "--prompt", "a fox",
        "--size", "1280x720", "--fps", "60", "--label", "team=growth", "--wait",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout and "s3://vidqueue-test/videos/" in done.stdout
    job_id = done.stdout.split()[0]
    # Off a terminal the bar is one line per change of state.
    assert f"job {job_id} queued" in done.stderr and f"job {job_id} succeeded" in done.stderr
    status = run(env, "status", job_id, "--json")
    assert status.returncode == 0, status.stderr
    record = json.loads(status.stdout)
    assert record["state"] == "succeeded" and record["spec"]["labels"] == {"team": "growth"}
    waited = run(env, "wait", job_id, "--json")
    assert waited.returncode == 0 and json.loads(waited.stdout)["id"] == job_id
    assert waited.stderr == ""  # --json: no progress bar either


def test_submit_json_and_a_bad_spec_naming_the_field(live: LiveStack) -> None:
    env = http_env(live)
    made = run(env, "submit", *FLASH, "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["state"] in ("queued", "submitting", "running")
    refused = run(env, "submit", *FLASH, "--quality", "quality")
    line = _one_line(refused.stderr)
    assert refused.returncode == 2
    assert "quality" in line and "cogvideox-flash" in line


def test_image_upload_and_download_need_no_aws_credentials(
    idle_stack: LiveStack, tmp_path: Path
) -> None:
    env = http_env(idle_stack)
    assert not any(k.startswith("AWS_ACCESS") or k.startswith("AWS_SECRET") for k in env)
    image = tmp_path / "first-frame.png"
    image.write_bytes(cover_png("cli-http-image"))
    done = run(
        env, "submit", "--provider", "zhipu", "--model", "cogvideox-3", "--prompt", "it moves",
        "--image", str(image), "--duration", "5", "--no-with-audio", "--wait", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["state"] == "succeeded" and record["spec"]["image"].startswith("upload:")
    assert record["spec"]["with_audio"] is False
    video = tmp_path / "video.mp4"
    fetched = run(env, "download", record["id"], "-o", str(video), "--json")
    assert fetched.returncode == 0, fetched.stderr
    assert hashlib.sha256(video.read_bytes()).hexdigest() == record["result"]["video"]["sha256"]
    assert json.loads(fetched.stdout) == {
        "id": record["id"],
        "path": str(video),
        "size": video.stat().st_size,
        "sha256": record["result"]["video"]["sha256"],
    }
    cover = tmp_path / "cover.png"
    text = run(env, "download", record["id"], "-o", str(cover), "--cover")
    assert text.returncode == 0, text.stderr
    assert cover.read_bytes().startswith(b"\x89PNG") and "sha256" in text.stdout
    missing = run(env, "submit", *FLASH, "--image", str(tmp_path / "nope.png"))
    assert missing.returncode == 2 and "no such file" in _one_line(missing.stderr)
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    bad = run(env, "submit", *FLASH, "--image", str(not_image))
    assert bad.returncode == 2 and "image" in _one_line(bad.stderr)


def test_list_by_labels_and_cancel(idle_stack: LiveStack) -> None:
    live = idle_stack
    live.set_sim(gen_time_s=2.0, gen_jitter_s=0)
    env = http_env(live)
    run_id = uuid.uuid4().hex[:8]
    made = []
    for team in ("red", "blue", "red"):
        out = run(env, "submit", *SOLO, "--label", f"run={run_id}", "--label", f"team={team}",
                  "--json")  # fmt: skip
        assert out.returncode == 0, out.stderr
        made.append(json.loads(out.stdout)["id"])
    # The last waits behind the other two (solo has one slot): cancelled before it starts.
    cancelled = run(env, "cancel", made[2], "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["state"] == "cancelled"
    listed = run(env, "list", "--label", f"run={run_id}", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)["jobs"]] == made[::-1]
    red = run(env, "list", "--label", f"run={run_id}", "--label", "team=red", "--json")
    assert {j["id"] for j in json.loads(red.stdout)["jobs"]} == {made[0], made[2]}
    paged = json.loads(
        run(env, "list", "--label", f"run={run_id}", "--limit", "2", "--json").stdout
    )
    assert len(paged["jobs"]) == 2 and paged["next_cursor"]
    table = run(env, "list", "--label", f"run={run_id}")
    assert table.returncode == 0 and made[0] in table.stdout and "team=red" in table.stdout
    assert "provider/model" in table.stdout
    only = run(env, "list", "--label", f"run={run_id}", "--state", "cancelled", "--json")
    assert [j["id"] for j in json.loads(only.stdout)["jobs"]] == [made[2]]
    live.wait_all(made[:2], timeout_s=60)
    done = run(env, "cancel", made[0])  # finished (or failed at solo's 3 s deadline)
    assert done.returncode == 1 and "too late to cancel" in _one_line(done.stderr)


def test_batch_over_http(idle_stack: LiveStack, tmp_path: Path) -> None:
    env = http_env(idle_stack)
    run_id = uuid.uuid4().hex[:8]
    specs = [
        {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "p",
         "labels": {"run": run_id, "n": str(i)}}
        for i in range(5)
    ]  # fmt: skip
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("# a comment\n\n" + "\n".join(json.dumps(s) for s in specs) + "\n")
    done = run(env, "batch", str(jobs), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"]["states"] == {"succeeded": 5} and len(report["jobs"]) == 5
    text = run(env, "batch", str(jobs), "--wait")
    assert text.returncode == 0, text.stderr
    assert "enqueued" in text.stderr and "5/5" in text.stderr  # the progress bars
    rows = dict(line.split() for line in text.stdout.splitlines() if line.strip().count(" ") >= 1
                and line.split()[0] in ("succeeded", "total"))  # fmt: skip
    assert rows == {"succeeded": "5", "total": "5"}
    assert "time p50" in text.stdout and "time p95" in text.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text("# header\n" + json.dumps(specs[0]) + "\n" + json.dumps({**specs[0], "fps": 60}))
    refused = run(env, "batch", str(bad))
    assert refused.returncode == 2 and "line 3: fps" in _one_line(refused.stderr)
    listed = json.loads(run(env, "list", "--label", f"run={run_id}", "--json").stdout)
    assert len(listed["jobs"]) == 10  # the refused batch enqueued nothing


def test_the_local_settings_file_is_the_fallback(live: LiveStack, tmp_path: Path) -> None:
    env = http_env(live, token=None, VIDQUEUE_RUN_DIR=str(tmp_path))
    del env["VIDQUEUE_API_URL"]
    local_env.write({"VIDQUEUE_API_URL": live.api_url, "VIDQUEUE_API_TOKEN": API_TOKEN}, tmp_path)
    done = run(env, "list", "--limit", "1", "--json")
    assert done.returncode == 0, done.stderr
    # The file's token goes only to the file's URL: elsewhere, no token is sent.
    other = live.api_url.replace("127.0.0.1", "localhost")
    refused = run(env, "list", "--api-url", other)
    assert refused.returncode == 2 and "no token was sent" in _one_line(refused.stderr)


def test_clear_errors_with_their_exit_codes(live: LiveStack) -> None:
    bad_token = run(http_env(live, token="not-a-token"), "status", "j_x")
    line = _one_line(bad_token.stderr)
    assert bad_token.returncode == 2
    assert "refused the token" in line and "VIDQUEUE_API_TOKEN" in line and "--token" in line
    assert "not-a-token" not in line
    no_token = run(http_env(live, token=None), "list")
    assert no_token.returncode == 2 and "no token was sent" in _one_line(no_token.stderr)
    env = http_env(live)
    unknown = run(env, "status", "no-such-job")
    assert unknown.returncode == 2 and "no job no-such-job" in _one_line(unknown.stderr)
    for command in (("wait", "no-such-job"), ("cancel", "no-such-job"),
                    ("download", "no-such-job", "-o", "/dev/null")):  # fmt: skip
        gone = run(env, *command)
        assert gone.returncode == 2 and "no job" in _one_line(gone.stderr), command
    label = run(env, "list", "--label", "team:red")
    assert label.returncode == 2
    assert "--label 'team:red': expected KEY=VALUE" in _one_line(label.stderr)
    assert run(env, "submit", *FLASH, "--label", "oops").returncode == 2
    everyone = run(env, "list", "--all")
    assert everyone.returncode == 2 and "--direct" in _one_line(everyone.stderr)
    down = run(http_env(live, VIDQUEUE_API_URL="http://127.0.0.1:1"), "status", "j_x")
    line = _one_line(down.stderr)
    assert down.returncode == 3
    assert "cannot reach the API at http://127.0.0.1:1" in line and "vidqueue dev up" in line
    usage = run(env, "submit", "--model", "x")
    assert usage.returncode == 2 and "--provider" in _one_line(usage.stderr)


def test_version(live: LiveStack) -> None:
    from importlib.metadata import version

    done = run(http_env(live), "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"vidqueue {version('vidqueue')}"
