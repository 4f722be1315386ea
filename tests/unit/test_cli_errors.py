"""The `vidqueue` command line with its services down: one line on stderr naming the problem and
the fix, the documented exit code, and a traceback only with ``--debug``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import botocore.exceptions
import httpx
import kombu.exceptions
import pytest
import redis.exceptions

from config.settings import Settings
from producer import cli_args, cli_conn, cli_errors, cli_http
from producer.aio import ApiError
from producer.cli_errors import BAD_INPUT, FAILED, UNAVAILABLE, outcome, take_debug
from workers.domain.errors import JobNotFound, RetryableError

VIDQUEUE = str(Path(sys.executable).parent / "vidqueue")
SUBMIT = ("submit", "--provider", "zhipu", "--model", "cogvideox-flash", "--prompt", "a cat")
REDIS_DOWN = "cannot reach Redis at 127.0.0.1:"
UP = "run `vidqueue dev up`"
# A 1x1 PNG, enough for the upload's checks.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415478"
    "9c63000100000500010d0a2db40000000049454e44ae426082"
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def down_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every service on a closed port, and no S3 credentials."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIDQUEUE_", "AWS_ACCESS", "AWS_SECRET", "AWS_SESSION", "AWS_PROFILE"))
    }
    run = tmp_path_factory.mktemp("run")
    env.update(
        VIDQUEUE_REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0",
        VIDQUEUE_S3_ENDPOINT_URL=f"http://127.0.0.1:{_closed_port()}",
        VIDQUEUE_API_PORT=str(_closed_port()),
        VIDQUEUE_SIM_PORT=str(_closed_port()),
        VIDQUEUE_RUN_DIR=str(run),
        AWS_SHARED_CREDENTIALS_FILE=str(run / "none"),
        AWS_CONFIG_FILE=str(run / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("files")
    (d / "frame.png").write_bytes(PNG)
    (d / "jobs.jsonl").write_text(
        '{"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a cat"}\n'
    )
    (d / "bad.toml").write_text("x = [\n")
    return {p.name: str(p) for p in d.iterdir()}


def _run(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VIDQUEUE, *args], env={**env, **extra}, capture_output=True, text=True, timeout=120
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("vidqueue: ")
    return lines[0]


JOB_COMMANDS = [
    SUBMIT,
    ("status", "j_nope"),
    ("wait", "j_nope", "--timeout", "5"),
    ("list",),
    ("cancel", "j_nope"),
    ("batch", "@jobs.jsonl"),
    ("download", "j_nope", "-o", "/dev/null"),
]


@pytest.mark.parametrize(
    "args", [(*a, "--direct") for a in JOB_COMMANDS] + [("list", "--json", "--all", "--direct"),
                                                      ("top", "--once")]
)  # fmt: skip
def test_redis_down_is_one_line_naming_it_and_the_fix(
    down_env: dict[str, str], files: dict[str, str], args: tuple[str, ...]
) -> None:
    argv = [files[a[1:]] if a.startswith("@") else a for a in args]
    done = _run(down_env, *argv)
    line = _one_line(done)
    assert REDIS_DOWN in line and UP in line
    assert done.returncode == UNAVAILABLE == 3


@pytest.mark.parametrize("args", JOB_COMMANDS)
def test_api_down_is_one_line_naming_it_and_the_fix(
    down_env: dict[str, str], files: dict[str, str], args: tuple[str, ...]
) -> None:
    """Without a URL (flag, env or settings file) the API is 127.0.0.1 on VIDQUEUE_API_PORT."""
    argv = [files[a[1:]] if a.startswith("@") else a for a in args]
    done = _run(down_env, *argv)
    line = _one_line(done)
    port = down_env["VIDQUEUE_API_PORT"]
    assert f"cannot reach the API at http://127.0.0.1:{port}" in line and UP in line
    assert done.returncode == UNAVAILABLE == 3
    elsewhere = _run(down_env, *argv, VIDQUEUE_API_URL=f"http://127.0.0.1:{port}/base/")
    assert f"cannot reach the API at http://127.0.0.1:{port}/base" in _one_line(elsewhere)


def test_debug_adds_the_traceback(down_env: dict[str, str]) -> None:
    for argv in (["--debug", "list", "--direct"], ["list", "--direct", "--debug"],
                 ["--debug", "top", "--once"]):  # fmt: skip
        done = _run(down_env, *argv)
        assert done.returncode == 3
        assert "Traceback (most recent call last)" in done.stderr
        assert "redis.exceptions.ConnectionError" in done.stderr
        assert REDIS_DOWN in done.stderr.splitlines()[-1]


def test_no_s3_credentials(down_env: dict[str, str], files: dict[str, str]) -> None:
    done = _run(down_env, *SUBMIT, "--direct", "--image", files["frame.png"])
    line = _one_line(done)
    assert "no S3 credentials" in line and "AWS_ACCESS_KEY_ID" in line
    assert "vidqueue dev env" in line
    assert done.returncode == 3
    debug = _run(down_env, "--debug", *SUBMIT, "--direct", "--image", files["frame.png"])
    assert "NoCredentialsError" in debug.stderr and debug.returncode == 3


def test_s3_unreachable(down_env: dict[str, str], files: dict[str, str]) -> None:
    creds = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    done = _run(down_env, *SUBMIT, "--direct", "--image", files["frame.png"], **creds)
    line = _one_line(done)
    assert f"cannot reach S3 at {down_env['VIDQUEUE_S3_ENDPOINT_URL']}" in line and UP in line
    assert done.returncode == 3
    archived = _run(down_env, "list", "--direct", "--archived-on", "2026-01-01", **creds)
    assert "cannot reach S3" in _one_line(archived) and archived.returncode == 3


def test_demo_with_the_stack_down(down_env: dict[str, str]) -> None:
    done = _run(down_env, "demo")
    line = _one_line(done)
    assert "cannot reach the provider simulator at http://127.0.0.1:" in line and UP in line
    assert done.returncode == 3
    assert "httpx.ConnectError" in _run(down_env, "--debug", "demo").stderr


def test_bad_providers_file_and_bad_setting(
    down_env: dict[str, str], files: dict[str, str]
) -> None:
    bad = _run(down_env, *SUBMIT, "--direct", VIDQUEUE_PROVIDERS_FILE=files["bad.toml"])
    assert "not valid TOML" in _one_line(bad) and bad.returncode == 1
    missing = _run(
        down_env, *SUBMIT, "--direct", VIDQUEUE_PROVIDERS_FILE="/nonexistent/providers.toml"
    )
    assert "providers file not found" in _one_line(missing) and missing.returncode == 1
    setting = _run(down_env, "list", VIDQUEUE_API_PORT="eighty")
    assert "VIDQUEUE_API_PORT" in _one_line(setting) and setting.returncode == 2


def test_dev_status_and_env_with_the_stack_down(down_env: dict[str, str]) -> None:
    status = _run(down_env, "dev", "status")
    assert status.returncode == 1 and "Traceback" not in status.stderr
    env = _run(down_env, "dev", "env")
    assert env.returncode == 0 and "export AWS_ACCESS_KEY_ID=" in env.stdout


# -- the table, in-process -----------------------------------------------------------------


def test_redis_refusing_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(redis_url="redis://:secret@10.0.0.5:6380/0")
    monkeypatch.setattr(cli_errors, "_settings", lambda: settings)
    oom = redis.exceptions.OutOfMemoryError("OOM command not allowed")
    message, code = outcome(oom)
    assert code == 3 and "Redis at 10.0.0.5:6380 refuses writes (OOM" in message
    assert "maxmemory" in message
    assert "secret" not in message
    message, code = outcome(redis.exceptions.ReadOnlyError("READONLY replica"))
    assert code == 3 and "READONLY" in message and "VIDQUEUE_REDIS_URL" in message


def _caused(outer: Exception, cause: Exception) -> Exception:
    outer.__cause__ = cause
    return outer


def test_wrapped_causes_and_the_api() -> None:
    wrapped = _caused(
        RetryableError("storage: upload failed"), botocore.exceptions.NoCredentialsError()
    )
    message, code = outcome(wrapped)
    assert code == 3 and "no S3 credentials" in message
    published = _caused(
        kombu.exceptions.OperationalError("publish"), redis.exceptions.ConnectionError("refused")
    )
    assert outcome(published)[1] == 3
    port = Settings().api_port
    request = httpx.Request("POST", f"http://127.0.0.1:{port}/v1/jobs")
    message, code = outcome(httpx.ConnectError("refused", request=request))
    assert code == 3 and f"cannot reach the API at http://127.0.0.1:{port}" in message


def test_the_rest_keeps_its_codes_and_stays_one_line() -> None:
    assert outcome(JobNotFound("j_x"))[1] == BAD_INPUT
    assert outcome(TimeoutError("still running"))[1] == FAILED
    message, code = outcome(ValueError("two\nlines"))
    assert code == 1 and "\n" not in message and "--debug" in message


def test_take_debug() -> None:
    assert take_debug(["--debug", "list"]) == (True, ["list"])
    assert take_debug(["list", "--debug"]) == (True, ["list"])
    assert take_debug(["sim", "--debug"]) == (False, ["sim", "--debug"])
    assert cli_errors.EXITS[Exception][1] == FAILED


# -- the HTTP API's refusals, in-process -------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "field", "expected", "exit_code"),
    [
        (401, "unauthorized", None, "refused the token", BAD_INPUT),
        (403, "tenant_not_allowed", None, "the API refused", BAD_INPUT),
        (422, "invalid_request", "label", "bad input: label", BAD_INPUT),
        (503, "unavailable", None, "is unavailable", UNAVAILABLE),
        (502, "bad_gateway", None, "is unavailable", UNAVAILABLE),
        (500, "internal", None, "the API failed", FAILED),
        (409, "job_archived", None, "the API failed", FAILED),
    ],
)
def test_api_refusals_by_status(
    status: int, code: str, field: str | None, expected: str, exit_code: int
) -> None:
    refused = ApiError(status, code, "the reason", field)
    error = cli_http._translated(refused, "http://api.example:8000", sent_token=True)
    error.__cause__ = refused
    message, got = outcome(error)
    assert got == exit_code and expected in message and "\n" not in message
    if status == 401:
        assert "VIDQUEUE_API_TOKEN" in message and "--token" in message
        assert "http://api.example:8000" in message


def test_no_token_sent_says_so_and_unreachable_names_the_url() -> None:
    error = cli_http._translated(ApiError(401, "unauthorized", "x"), "http://h:1", False)
    assert "no token was sent" in outcome(error)[0]
    request = httpx.Request("GET", "http://10.1.2.3:8000/v1/jobs/x")
    wrapped = cli_errors.ApiUnreachable("ConnectError", url="http://10.1.2.3:8000")
    wrapped.__cause__ = httpx.ConnectError("refused", request=request)
    message, code = outcome(wrapped)
    assert code == UNAVAILABLE
    assert "cannot reach the API at http://10.1.2.3:8000" in message and UP in message
    assert outcome(cli_errors.BadArgument("--label 'a': expected KEY=VALUE"))[1] == BAD_INPUT


def test_the_connection_comes_from_flags_env_then_the_settings_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saved = {"VIDQUEUE_API_URL": "http://127.0.0.1:9999/", "VIDQUEUE_API_TOKEN": "file-token"}
    monkeypatch.setattr(cli_conn, "local_settings", lambda: dict(saved))
    assert cli_conn.resolve("http://a:1", "t") == cli_conn.Connection("http://a:1", "t")
    assert cli_conn.resolve(None, None) == cli_conn.Connection(
        "http://127.0.0.1:9999", "file-token"
    )
    assert cli_conn.resolve(None, "mine").token == "mine"
    # the file's token goes to the file's URL only
    assert cli_conn.resolve("http://elsewhere:8000", None).token is None
    assert cli_conn.resolve("http://127.0.0.1:9999", "").token == "file-token"
    assert "file-token" not in repr(cli_conn.resolve(None, None))
    monkeypatch.setattr(cli_conn, "local_settings", dict)
    monkeypatch.setattr(cli_conn, "get_settings", lambda: Settings(api_port=8123))
    assert cli_conn.resolve(None, None) == cli_conn.Connection("http://127.0.0.1:8123", None)


def test_label_syntax() -> None:
    assert cli_args.key_values(["team=growth", "a=b=c"], flag="--label") == {
        "team": "growth",
        "a": "b=c",
    }
    for bad in ("team:growth", "=x", "plain"):
        with pytest.raises(cli_errors.BadArgument, match="expected KEY=VALUE"):
            cli_args.key_values([bad], flag="--label")
    with pytest.raises(cli_errors.BadArgument, match="cannot contain ':'"):
        cli_args.list_labels(["a:b=c"])
    assert cli_args.key_values(["n=3", "s=x"], flag="--option", as_json=True) == {"n": 3, "s": "x"}
