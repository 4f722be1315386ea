"""Security checks: secrets stay secret, every door needs its key, vidqueue fetches no private URL.

- API keys never appear in logs, Celery task arguments, Flower, or job records (the chaos run
  also greps every log of its run for its keys: ``tests/integration/test_chaos.py``).
- The HTTP API refuses requests without a valid bearer token.
- Flower answers 401 without basic auth and listens on loopback only. Its ``/metrics`` needs no
  auth (Flower's own choice): it lists task names and counts, never arguments; keep Flower
  unpublished, as the local stack and docker-compose.yml do.
- Uploads are checked by content (PNG or JPEG by magic bytes) and size (5 MB).
- The SSRF guard refuses callback URLs resolving to private, loopback or link-local addresses.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config import providers as provider_config
from config.settings import Settings
from devstack.apps import flower_spec
from devstack.env import make_context
from producer.api import app as api_app
from producer.client import Client
from tests.support.compose import REQUIRED, compose
from tests.support.live import API_TOKEN, KEYS, LiveStack
from workers.deps import build
from workers.domain.errors import InvalidSpec, PermanentError
from workers.domain.jobs import State
from workers.io.webhooks import check_public_url

TEXT = {"provider": "zhipu", "model": "cogvideox-flash", "prompt": "a quiet harbour"}
AUTH = {"authorization": f"Bearer {API_TOKEN}"}
# How Flower shows a task's arguments: one job id (32 hex digits), or none for the sweep.
JOB_ID_ONLY = r"[\[(]'[0-9a-f]{32}',?[\])]"
NO_ARGS = r"\[\]|\(\)"


# -- secrets -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flower(live: LiveStack) -> Iterator[tuple[str, tuple[str, str]]]:
    """Flower on the live stack (loopback, basic auth from the settings), for this module."""
    live.stack.start_flower()
    user, _, password = live.settings.flower_basic_auth.partition(":")
    try:
        yield f"http://127.0.0.1:{live.settings.flower_port}", (user, password)
    finally:
        live.stack.stop("flower")


def _flower_tasks(url: str, auth: tuple[str, str], job_ids: list[str]) -> dict[str, Any]:
    """Flower's view of every task, once it has seen one task for each of ``job_ids``."""
    deadline = time.monotonic() + 30
    while True:
        tasks: dict[str, Any] = httpx.get(f"{url}/api/tasks", auth=auth, timeout=10).json()
        seen = " ".join(str(t.get("args")) for t in tasks.values())
        if all(job_id in seen for job_id in job_ids) or time.monotonic() > deadline:
            return tasks
        time.sleep(0.5)


def test_api_keys_stay_out_of_logs_task_arguments_flower_and_job_records(
    idle_stack: LiveStack, flower: tuple[str, tuple[str, str]]
) -> None:
    # Given a run that submitted, polled and mirrored one job and failed another, with Flower
    # watching the workers' task events
    live = idle_stack
    url, auth = flower
    ok = live.client.enqueue(TEXT)
    live.wait_all([ok.id])
    live.set_sim(fail_rate=1.0)
    bad = live.client.enqueue(TEXT)
    assert live.wait_all([bad.id])[0].state == State.FAILED
    tasks = _flower_tasks(url, auth, [ok.id, bad.id])
    # Then every task Flower saw carries exactly one argument: its job id
    ours = [t for t in tasks.values() if str(t.get("name", "")).startswith("vidqueue.")]
    assert {t["name"] for t in ours} >= {"vidqueue.submit", "vidqueue.poll", "vidqueue.mirror"}
    for task in ours:
        expected = NO_ARGS if task["name"] == "vidqueue.sweep" else JOB_ID_ONLY
        assert re.fullmatch(expected, task["args"]), task
        assert task["kwargs"] == "{}", task
    # And no API key is in Flower, in any job record the API returns, or in any log
    records = [
        httpx.get(f"{live.api_url}/v1/jobs/{job_id}", headers=AUTH, timeout=10).text
        for job_id in (ok.id, bad.id)
    ]
    logs = {p.name: p.read_text(errors="replace") for p in (live.stack.run_dir / "logs").iterdir()}
    assert "flower.log" in logs
    for secret in KEYS.values():
        assert secret not in json.dumps(tasks)
        assert not [r for r in records if secret in r]
        assert not [name for name, text in logs.items() if secret in text]


# -- who may come in ---------------------------------------------------------------------------

# Routes anyone may call: health and readiness, metrics (counts only), the API's own docs.
OPEN_ROUTES = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
}
# Providers' callbacks carry no bearer token: the job's own token in the URL is checked instead
# (a forged one is a 404 here; tests/integration/test_callbacks.py checks what it may change).
CALLBACKS = "/v1/callbacks/"


def _routes() -> list[tuple[str, str]]:
    """Every (method, path) the API serves, but the open ones: the routes on the app itself
    and every route its OpenAPI document lists (routes included from routers show up there,
    not in ``app.routes``, on recent FastAPI versions)."""
    served: set[tuple[str, str]] = set()
    for route in api_app.routes:
        methods = getattr(route, "methods", None) or set()
        served |= {(method, getattr(route, "path", "")) for method in methods}
    for path, operations in api_app.openapi()["paths"].items():
        served |= {(method.upper(), path) for method in operations}
    found = []
    for method, path in sorted(served):
        if path in OPEN_ROUTES or path.startswith(CALLBACKS) or method in ("HEAD", "OPTIONS"):
            continue
        found.append((method, path.replace("{job_id}", "j-1").replace("{video_id}", "v-1")))
    return found


def test_every_api_route_but_health_and_docs_needs_a_valid_token(live: LiveStack) -> None:
    routes = _routes()
    assert ("POST", "/v1/jobs") in routes and ("GET", "/v1/jobs/j-1") in routes
    assert ("GET", "/v1/videos/v-1") in routes and ("POST", "/v1/uploads") in routes
    wrong = {"authorization": "Bearer not-a-token"}
    plain = {"authorization": API_TOKEN}  # the token without the Bearer scheme
    for method, path in routes:
        for headers in ({}, wrong, plain):
            answer = httpx.request(method, f"{live.api_url}{path}", headers=headers, timeout=10)
            assert answer.status_code == 401, (method, path, headers, answer.text)
        # Only the status is read: a stream (``/v1/events/stream``) never ends
        with httpx.stream(method, f"{live.api_url}{path}", headers=AUTH, timeout=10) as answer:
            assert answer.status_code != 401, (method, path)
    # The callback route, open to providers, takes no bearer token as a key either
    forged = f"{live.api_url}{CALLBACKS}kling_cb/j-1/forged"
    for headers in ({}, AUTH):
        assert httpx.post(forged, headers=headers, timeout=10).status_code == 404


def test_flower_needs_basic_auth_and_listens_on_loopback_only(
    live: LiveStack, flower: tuple[str, tuple[str, str]]
) -> None:
    url, (user, password) = flower
    # Without credentials, or with wrong ones: 401
    assert httpx.get(f"{url}/api/tasks", timeout=10).status_code == 401
    assert httpx.get(f"{url}/api/tasks", auth=(user, "wrong"), timeout=10).status_code == 401
    assert httpx.get(f"{url}/", timeout=10).status_code == 401
    assert httpx.get(f"{url}/api/tasks", auth=(user, password), timeout=10).status_code == 200
    # /metrics is open (Flower's choice): task names and counts only, no arguments, no keys
    metrics = httpx.get(f"{url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert not [s for s in KEYS.values() if s in metrics.text]
    # Every socket Flower listens on is bound to 127.0.0.1
    assert _listening(live.settings.flower_port) == {"127.0.0.1"}


def _listening(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                if size == 4:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def test_flower_is_bound_to_loopback_by_default(tmp_path: Path) -> None:
    # The local stack's Flower listens on loopback only ...
    ctx = make_context(Settings(run_dir=str(tmp_path)), tmp_path)
    assert "--address=127.0.0.1" in flower_spec(ctx).argv
    # ... and docker-compose publishes it on the host's loopback only (reach it by SSH tunnel)
    result = compose("config", "--format", "json", env=REQUIRED)
    assert result.returncode == 0, result.stderr
    ports = json.loads(result.stdout)["services"]["flower"]["ports"]
    assert [p.get("host_ip") for p in ports] == ["127.0.0.1"]


def test_uploads_are_checked_by_content_and_size(live: LiveStack) -> None:
    assert ("POST", "/v1/uploads") in _routes()
    url = f"{live.api_url}/v1/uploads"
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    assert httpx.post(url, content=png, timeout=10).status_code == 401
    html = b"<html><script>alert(1)</script></html>"
    named = {"file": ("cat.png", html, "image/png")}
    assert httpx.post(url, files=named, headers=AUTH, timeout=10).status_code == 422
    assert httpx.post(url, content=html, headers=AUTH, timeout=10).status_code == 422
    huge = png + b"\x00" * (5 * 1024 * 1024)
    assert httpx.post(url, content=huge, headers=AUTH, timeout=30).status_code == 413


# -- the SSRF guard ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "http://100.64.0.1/hook",  # carrier-grade NAT
        "http://0.0.0.0/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
        "http://0x7f000001/hook",  # ... and in hex
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    ],
)
def test_the_ssrf_guard_refuses_private_loopback_and_link_local_callbacks(url: str) -> None:
    with pytest.raises(PermanentError):
        check_public_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "file:///etc/passwd", "http:///hook"])
def test_the_ssrf_guard_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(PermanentError):
        check_public_url(url, allow_private=True)


def test_the_ssrf_guard_lets_public_addresses_and_allowed_private_ones_through() -> None:
    check_public_url("https://93.184.215.14/hook", allow_private=False)
    check_public_url("http://[2606:4700:4700::1111]/hook", allow_private=False)
    check_public_url("http://127.0.0.1:9000/hook", allow_private=True)


def test_a_private_callback_is_refused_at_enqueue_and_no_redirect_is_ever_followed(
    tmp_path: Path,
) -> None:
    # Given settings that refuse private callbacks (the default)
    providers = tmp_path / "providers.toml"
    providers.write_text(
        '[providers.zhipu]\nkind = "zhipu"\nbase_url = "http://127.0.0.1:9/v4"\n'
        'api_key_env = ["SIM_ZHIPU_KEY"]\n'
    )
    settings = Settings(providers_file=str(providers), run_dir=str(tmp_path))
    assert settings.allow_private_callbacks is False
    client = Client(settings, provider_config.load(str(providers)))
    # Then a job whose callback points inside the network is refused, naming the field
    with pytest.raises(InvalidSpec) as refused:
        client.validate({**TEXT, "callback_url": "http://169.254.169.254/latest/meta-data/"})
    assert refused.value.field == "callback_url"
    # And the client that sends webhooks (and downloads results) never follows a redirect,
    # so a public receiver cannot bounce a request to a private address
    assert build(settings).http.follow_redirects is False
