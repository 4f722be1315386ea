"""The simulator calls back the way each provider does (``simulator.callbacks``).

Real sockets throughout: the simulator runs under uvicorn on a free port, and so does a tiny
receiver that records every POST it gets (and can be told to refuse the next few). Generations
take 0.3 s, so a task's callbacks all arrive within about half a second.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from simulator import cli
from simulator.app import create_app
from simulator.options import SimOptions
from tests.support.sim import serving

GEN_S = 0.3
BASE_OPTIONS: dict[str, Any] = {
    "gen_time_s": GEN_S,
    "gen_jitter_s": 0.0,
    "fail_rate": 0.0,
    "seed": 7,
    "callback_delay_s": 0.0,
    "callback_loss_rate": 0.0,
    "callback_dup_rate": 0.0,
    "callback_reorder": False,
    "callback_bad_token": False,
    "callback_wrapped": False,
    "callback_retry_s": 0.05,
}
ZERO_COUNTS = {"sent": 0, "lost": 0, "duplicates": 0, "failed": 0, "retries": 0, "gave_up": 0}
KLING_ACCESS, KLING_SECRET = "sim-kling-access", "sim-kling-secret-test"
ARK = "/ark/api/v3/contents/generations/tasks"
BEARER = {"Authorization": "Bearer sk-test"}
STATUS_KEY = {"kling": "task_status", "ark": "status", "vidu": "state"}
DOUBAO = "doubao-seedance-1-0-pro-250528"


# --- the receiver -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    at: float  # unix seconds of arrival
    path: str
    query: str
    body: Any
    answered: int


@dataclass
class Inbox:
    """Every POST the receiver got; ``refuse`` makes it answer 503 to the next few."""

    refuse: int = 0
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, path: str, query: str, body: Any) -> int:
        with self.lock:
            status = 503 if self.refuse > 0 else 200
            self.refuse -= status == 503
            self.got.append(Received(time.time(), path, query, body, status))
            return status

    def at(self, path: str, *, acked: bool = True) -> list[Received]:
        with self.lock:
            return [r for r in self.got if r.path == path and (r.answered == 200 or not acked)]


def receiver_app(inbox: Inbox) -> FastAPI:
    app = FastAPI()

    @app.post("/{path:path}")
    async def hook(path: str, request: Request) -> JSONResponse:
        status = inbox.take(f"/{path}", request.url.query, await request.json())
        return JSONResponse({"ok": status == 200}, status_code=status)

    return app


# --- fixtures and helpers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rig:
    base: str  # the simulator's base URL
    sim: httpx.Client
    hooks: str  # the receiver's base URL
    inbox: Inbox


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str, Inbox]]:
    inbox = Inbox()
    sim = create_app(SimOptions(**BASE_OPTIONS))
    with serving(receiver_app(inbox)) as hooks, serving(sim) as base:
        yield base, hooks, inbox


@pytest.fixture
def rig(servers: tuple[str, str, Inbox]) -> Iterator[Rig]:
    """The shared servers, reset: no tasks, no pending callbacks, zero counters, base options."""
    base, hooks, inbox = servers
    with httpx.Client(base_url=base, timeout=10) as sim:
        sim.post("/_sim/reset").raise_for_status()
        sim.post("/_sim/options", json=BASE_OPTIONS).raise_for_status()
        with inbox.lock:
            inbox.got.clear()
            inbox.refuse = 0
        yield Rig(base, sim, hooks, inbox)


def hook_path(kind: str) -> str:
    """A fresh per-job path, its last segment standing for the job's callback token."""
    return f"/hooks/{kind}/{uuid.uuid4().hex}"


def kling_jwt() -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": KLING_ACCESS, "exp": now + 1800, "nbf": now - 5}
    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{head}.{part(json.dumps(claims).encode())}"
    signature = hmac.new(KLING_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def submit_kling(rig: Rig, url: str, external: str = "job-1") -> str:
    body = {"prompt": "a cat surfing", "callback_url": url, "external_task_id": external}
    headers = {"Authorization": f"Bearer {kling_jwt()}"}
    answer = rig.sim.post("/kling/v1/videos/text2video", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"]["task_id"])


def poll_kling(rig: Rig, task_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {kling_jwt()}"}
    answer = rig.sim.get(f"/kling/v1/videos/text2video/{task_id}", headers=headers)
    data: dict[str, Any] = answer.json()["data"]
    return data


def submit_ark(rig: Rig, url: str) -> str:
    body = {"model": DOUBAO, "content": [{"type": "text", "text": "x"}], "callback_url": url}
    answer = rig.sim.post(ARK, json=body, headers=BEARER)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def submit_gateway(rig: Rig, model: str, url: str) -> str:
    metadata = {"callback_url": url, "external_task_id": f"job-{uuid.uuid4().hex[:8]}"}
    body = {"model": model, "prompt": "a cat surfing", "metadata": metadata}
    answer = rig.sim.post("/gateway/v1/video/generations", json=body, headers=BEARER)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["task_id"])


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def arrivals(rig: Rig, path: str, count: int) -> list[Received]:
    """The first ``count`` acknowledged callbacks to ``path``, waiting for them."""
    wait_until(lambda: len(rig.inbox.at(path)) >= count, f"{count} callbacks to {path}")
    return rig.inbox.at(path)[:count]


def counts(rig: Rig) -> dict[str, int]:
    stats: dict[str, int] = rig.sim.get("/_sim/stats").json()["callbacks"]
    return stats


def settled(rig: Rig) -> dict[str, int]:
    """The callback counters once nothing is pending any more."""
    wait_until(lambda: counts(rig)["pending"] == 0, "no pending callbacks")
    return {name: value for name, value in counts(rig).items() if name != "pending"}


def times(rig: Rig, task_id: str) -> tuple[float, float]:
    """When the task started and finishes, in unix seconds."""
    body = rig.sim.get(f"/_sim/tasks/{task_id}").json()
    return float(body["started_at"]), float(body["finish_at"])


def statuses(received: list[Received], kind: str, *, wrapped: bool = False) -> list[str]:
    bodies = [r.body["data"] if wrapped else r.body for r in received]
    return [str(body[STATUS_KEY[kind]]) for body in bodies]


def options(rig: Rig, **changes: Any) -> None:
    rig.sim.post("/_sim/options", json=changes).raise_for_status()


# --- each kind's callbacks ----------------------------------------------------------------------


def test_kling_calls_back_each_status_change_with_the_bare_task_object(rig: Rig) -> None:
    path = hook_path("kling")
    task_id = submit_kling(rig, rig.hooks + path, external="job-kling")
    got = arrivals(rig, path, 3)
    assert statuses(got, "kling") == ["submitted", "processing", "succeed"]
    started, finished = times(rig, task_id)
    assert got[1].at >= started + 0.2 * GEN_S  # not before a poll says processing
    assert got[2].at >= finished  # not before a poll says succeed
    for received in got:
        body = received.body
        assert "code" not in body and "data" not in body  # the bare task object
        assert body["task_id"] == task_id
        assert body["task_info"] == {"external_task_id": "job-kling"}
        assert isinstance(body["created_at"], int) and isinstance(body["updated_at"], int)
        assert body["task_status_msg"] == ""
    final = got[2].body
    video_url = final["task_result"]["videos"][0]["url"]
    assert video_url.split("?")[0] == f"{rig.base}/files/{task_id}/video.mp4"
    assert "task_result" not in got[0].body and "task_result" not in got[1].body
    polled = poll_kling(rig, task_id)
    assert {k: v for k, v in polled.items() if k != "task_result"} == {
        k: v for k, v in final.items() if k != "task_result"
    }
    assert settled(rig) == {**ZERO_COUNTS, "sent": 3}


def test_kling_wraps_the_task_object_when_the_option_says_so(rig: Rig) -> None:
    options(rig, callback_wrapped=True)
    path = hook_path("kling")
    task_id = submit_kling(rig, rig.hooks + path)
    got = arrivals(rig, path, 3)
    assert statuses(got, "kling", wrapped=True) == ["submitted", "processing", "succeed"]
    for received in got:
        assert set(received.body) == {"code", "message", "request_id", "data"}
        assert received.body["code"] == 0
        assert received.body["data"]["task_id"] == task_id


def test_ark_calls_back_each_status_change_with_what_a_get_answers(rig: Rig) -> None:
    path = hook_path("ark")
    task_id = submit_ark(rig, rig.hooks + path)
    got = arrivals(rig, path, 3)
    assert statuses(got, "ark") == ["queued", "running", "succeeded"]
    started, finished = times(rig, task_id)
    assert got[1].at >= started + 0.2 * GEN_S
    assert got[2].at >= finished
    assert all(r.body["id"] == task_id and r.body["model"] == DOUBAO for r in got)
    polled = rig.sim.get(f"{ARK}/{task_id}", headers=BEARER).json()
    final = got[2].body
    assert set(final) == set(polled)
    assert (
        final["content"]["video_url"].split("?")[0] == polled["content"]["video_url"].split("?")[0]
    )
    assert {k: v for k, v in final.items() if k != "content"} == {
        k: v for k, v in polled.items() if k != "content"
    }


@pytest.mark.parametrize(
    ("model", "kind", "words"),
    [
        ("kling-v1", "kling", ["submitted", "processing", "succeed"]),
        ("viduq1", "vidu", ["created", "queueing", "processing", "success"]),
        (DOUBAO, "ark", ["queued", "running", "succeeded"]),
    ],
)
def test_the_gateway_upstream_calls_back_in_its_own_shape(
    rig: Rig, model: str, kind: str, words: list[str]
) -> None:
    path = hook_path("gateway")
    task_id = submit_gateway(rig, model, rig.hooks + path)
    got = arrivals(rig, path, len(words))
    assert statuses(got, kind) == words
    assert got[-1].at >= times(rig, task_id)[1]
    poll = rig.sim.get(f"/gateway/v1/video/generations/{task_id}", headers=BEARER).json()
    assert poll["data"]["status"] == "SUCCESS"
    final = got[-1].body
    if kind == "vidu":
        assert set(final) == {"id", "state", "creations"}
        assert final["id"] == task_id
        [creation] = final["creations"]
        assert creation["url"].split("?")[0].endswith(f"/files/{task_id}/video.mp4")
        assert creation["cover_url"].split("?")[0].endswith(f"/files/{task_id}/cover.png")
        assert all("creations" not in r.body for r in got[:-1])
    elif kind == "kling":
        assert final["task_id"] == task_id
        assert final["task_result"]["videos"][0]["url"].split("?")[0].endswith("/video.mp4")
    else:
        assert final["id"] == task_id
        assert final["content"]["video_url"].split("?")[0].endswith("/video.mp4")


@pytest.mark.parametrize("model", ["sora-2", "jimeng_vgfm_t2v_l20", "some-other-model"])
def test_the_gateway_ignores_callback_url_for_other_families(rig: Rig, model: str) -> None:
    ignored = hook_path("ignored")
    submit_gateway(rig, model, rig.hooks + ignored)
    control = hook_path("control")  # submitted after, so it ends after the ignored one
    submit_gateway(rig, "kling-v1", rig.hooks + control)
    arrivals(rig, control, 3)
    assert rig.inbox.at(ignored, acked=False) == []
    assert settled(rig) == {**ZERO_COUNTS, "sent": 3}


def test_a_generation_shorter_than_the_watchers_start_repeats_no_status(rig: Rig) -> None:
    # Its status boundaries have passed before the simulator first looks: one callback per
    # status actually seen, never the same status twice in a row, the final one last.
    options(rig, gen_time_s=0.002)
    path = hook_path("kling")
    task_id = submit_kling(rig, rig.hooks + path)
    wait_until(lambda: statuses(rig.inbox.at(path), "kling")[-1:] == ["succeed"], "the end")
    assert settled(rig)["sent"] == len(rig.inbox.at(path))
    words = statuses(rig.inbox.at(path), "kling")
    assert all(a != b for a, b in itertools.pairwise(words)), words
    assert words[-1] == "succeed" and words.count("succeed") == 1
    assert rig.inbox.at(path)[-1].at >= times(rig, task_id)[1]


# --- options that bend delivery -----------------------------------------------------------------


def test_loss_rate_one_sends_no_callback_and_counts_them_lost(rig: Rig) -> None:
    options(rig, callback_loss_rate=1.0)
    path = hook_path("kling")
    task_id = submit_kling(rig, rig.hooks + path)
    wait_until(lambda: poll_kling(rig, task_id)["task_status"] == "succeed", "the task to end")
    assert settled(rig) == {**ZERO_COUNTS, "lost": 3}
    assert rig.inbox.at(path, acked=False) == []


def test_dup_rate_one_sends_every_callback_twice(rig: Rig) -> None:
    options(rig, callback_dup_rate=1.0)
    path = hook_path("ark")
    submit_ark(rig, rig.hooks + path)
    got = arrivals(rig, path, 6)
    assert statuses(got, "ark") == ["queued", "queued", "running", "running"] + ["succeeded"] * 2
    assert got[0].body == got[1].body and got[4].body == got[5].body
    assert settled(rig) == {**ZERO_COUNTS, "sent": 6, "duplicates": 3}


@pytest.mark.parametrize("kind", ["kling", "ark"])
def test_reorder_delivers_the_final_callback_first(rig: Rig, kind: str) -> None:
    options(rig, callback_reorder=True)
    path = hook_path(kind)
    url = rig.hooks + path
    task_id = submit_kling(rig, url) if kind == "kling" else submit_ark(rig, url)
    got = arrivals(rig, path, 3)
    expected = {"kling": ["succeed", "processing", "submitted"]}
    assert statuses(got, kind) == expected.get(kind, ["succeeded", "running", "queued"])
    assert got[0].at >= times(rig, task_id)[1]


def test_bad_token_alters_the_last_path_segment_only(rig: Rig) -> None:
    options(rig, callback_bad_token=True)
    token = uuid.uuid4().hex
    submit_kling(rig, f"{rig.hooks}/hooks/kling/{token}?job=j1")
    wait_until(lambda: len(rig.inbox.got) >= 3, "3 callbacks")
    for received in rig.inbox.got:
        head, _, spoiled = received.path.rpartition("/")
        assert head == "/hooks/kling"
        assert spoiled != token and len(spoiled) == len(token)
        assert received.query == "job=j1"
    assert rig.inbox.at(f"/hooks/kling/{token}") == []


def test_delay_postpones_each_callback(rig: Rig) -> None:
    options(rig, callback_delay_s=0.4)
    path = hook_path("ark")
    task_id = submit_ark(rig, rig.hooks + path)
    got = arrivals(rig, path, 3)
    started, finished = times(rig, task_id)
    assert got[0].at >= started + 0.4
    assert got[2].at >= finished + 0.4


# --- failed deliveries --------------------------------------------------------------------------


def closed_port_url() -> str:
    """A loopback URL nobody listens on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/kling/{uuid.uuid4().hex}"


def test_a_refusing_receiver_is_retried_three_times_and_counted(rig: Rig) -> None:
    task_id = submit_kling(rig, closed_port_url())
    wait_until(lambda: poll_kling(rig, task_id)["task_status"] == "succeed", "the task to end")
    # Three status changes, each tried once and retried three times.
    assert settled(rig) == {**ZERO_COUNTS, "failed": 12, "retries": 9, "gave_up": 3}


def test_a_5xx_answer_is_retried_until_the_receiver_acknowledges(rig: Rig) -> None:
    with rig.inbox.lock:
        rig.inbox.refuse = 2
    path = hook_path("kling")
    submit_kling(rig, rig.hooks + path)
    got = arrivals(rig, path, 3)
    assert statuses(got, "kling") == ["submitted", "processing", "succeed"]
    everything = rig.inbox.at(path, acked=False)
    assert [r.answered for r in everything[:3]] == [503, 503, 200]
    assert statuses(everything[:3], "kling") == ["submitted"] * 3
    assert settled(rig) == {**ZERO_COUNTS, "sent": 3, "failed": 2, "retries": 2}


def test_cancelling_a_queued_ark_task_calls_back_cancelled(rig: Rig) -> None:
    options(rig, gen_time_s=2.0)  # queued for its first 0.4 s
    path = hook_path("ark")
    task_id = submit_ark(rig, rig.hooks + path)
    assert rig.sim.delete(f"{ARK}/{task_id}", headers=BEARER).status_code == 200
    got = arrivals(rig, path, 2)
    assert statuses(got, "ark") == ["queued", "cancelled"]
    assert settled(rig) == {**ZERO_COUNTS, "sent": 2}


# --- control: reset, faults off, options, CLI ---------------------------------------------------


def test_reset_cancels_pending_callbacks_and_zeroes_the_counters(rig: Rig) -> None:
    options(rig, callback_delay_s=0.5, callback_dup_rate=1.0)
    path = hook_path("kling")
    submitted = time.monotonic()
    submit_kling(rig, rig.hooks + path)
    wait_until(lambda: counts(rig)["duplicates"] >= 1, "the first callback to be queued")
    assert counts(rig)["pending"] == 1
    rig.sim.post("/_sim/reset").raise_for_status()
    assert counts(rig) == {**ZERO_COUNTS, "pending": 0}
    time.sleep(max(0.0, submitted + 0.5 + GEN_S + 0.3 - time.monotonic()))
    assert rig.inbox.at(path, acked=False) == []


def test_faults_off_turns_the_callback_faults_off_but_not_the_shape(rig: Rig) -> None:
    faults = {"callback_loss_rate": 0.5, "callback_dup_rate": 0.5, "callback_reorder": True}
    options(rig, **faults, callback_bad_token=True, callback_wrapped=True)
    after = rig.sim.post("/_sim/faults/off").json()
    assert after["callback_loss_rate"] == after["callback_dup_rate"] == 0
    assert after["callback_reorder"] is after["callback_bad_token"] is False
    assert after["callback_wrapped"] is True


def test_callback_options_default_off_and_are_validated(rig: Rig) -> None:
    defaults = SimOptions()
    assert (defaults.callback_delay_s, defaults.callback_loss_rate) == (0.0, 0.0)
    assert defaults.callback_dup_rate == 0.0
    assert not (defaults.callback_reorder or defaults.callback_bad_token)
    assert not defaults.callback_wrapped
    assert rig.sim.post("/_sim/options", json={"callback_loss_rate": 1.5}).status_code == 422
    assert rig.sim.post("/_sim/options", json={"callback_delay_s": -1}).status_code == 422


def test_every_callback_option_has_a_cli_flag() -> None:
    flags = ["--callback-reorder", "--no-callback-wrapped", "--callback-bad-token"]
    flags += ["--callback-loss-rate", "0.25", "--callback-dup-rate", "0.5"]
    flags += ["--callback-delay-s", "2", "--callback-retry-s", "0.1"]
    _, _, parsed = cli.parse_args(flags)
    assert parsed.callback_reorder is True and parsed.callback_bad_token is True
    assert parsed.callback_wrapped is False
    assert (parsed.callback_loss_rate, parsed.callback_dup_rate) == (0.25, 0.5)
    assert (parsed.callback_delay_s, parsed.callback_retry_s) == (2.0, 0.1)
    assert cli.parse_args([])[2].callback_reorder is False
