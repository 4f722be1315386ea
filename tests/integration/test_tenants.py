"""Fair share cannot be bypassed through the HTTP API: a job's fair-share key is its token's
tenant (``producer.tokens``), never a ``labels.tenant`` the token may not name.

The adversarial run this answers: producer A sent 300 jobs under 300 self-chosen tenants (300
fair shares) and B's 3 jobs waited behind them. Here A's self-chosen tenants are 403s, A's
jobs share one fair-share key, and the gate (as in ``test_governor``) gives B its slots
within the first few dispatches behind A's 300 jobs. The app runs in process on database 15,
where no worker listens, and the app's own dispatch after enqueue is turned off, so the jobs
stay queued until the test dispatches them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from producer import web
from producer.client import Client
from tests.support.api import GOOD, bearer, in_process_api
from tests.support.live import LiveStack
from workers.redis import keys
from workers.redis.gate import Gate

A, B = "secret-team-a", "secret-team-b"
TOKENS_FILE = f"""
[[tokens]]
name = "team-a"
token = "{A}"
tenants = ["shop-1", "shop-2"]

[[tokens]]
name = "team-b"
sha256 = "{hashlib.sha256(B.encode()).hexdigest()}"
tenants = ["shop-9"]
"""


@pytest.fixture
def local(
    live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, redis.Redis]]:
    """The app with the tokens file; it fills no slot itself (the tests dispatch)."""
    monkeypatch.setattr(Client, "dispatch", lambda self, providers: None)
    path = tmp_path / "tokens.toml"
    path.write_text(TOKENS_FILE)
    with in_process_api(live, tokens_file=str(path)) as pair:
        yield pair


def _job(tenant: str | None = None, **more: Any) -> dict[str, Any]:
    return {**GOOD, **more, **({"labels": {"tenant": tenant}} if tenant else {})}


def _waiting(store: redis.Redis, fair: str) -> int:
    return int(store.zcard(keys.waiting("zhipu", fair)))


def test_self_chosen_tenants_are_refused_and_a_token_is_one_fair_share(
    local: Any, live: LiveStack
) -> None:
    app, store = local
    # When A sends 300 jobs, each under a tenant of its own choosing
    for i in range(300):
        refused = app.post("/v1/jobs", json=_job(f"tenant-{i}"), headers=bearer(A))
        # Then each is a 403 naming the field, and nothing is enqueued
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["field"] == "labels.tenant"
        assert refused.json()["error"]["code"] == "tenant_not_allowed"
    batch = [_job(f"tenant-{i}") for i in range(300)]
    refused = app.post("/v1/jobs/batch", json={"jobs": batch}, headers=bearer(A))
    assert refused.status_code == 403
    assert refused.json()["error"]["field"] == "jobs.0.labels.tenant"
    assert store.zcard(keys.fair_queue("zhipu")) == 0
    # When A sends them without a tenant label, then B sends 3
    many = app.post("/v1/jobs/batch", json={"jobs": [_job()] * 300}, headers=bearer(A))
    assert many.status_code == 202, many.text
    theirs = [app.post("/v1/jobs", json=_job(), headers=bearer(B)).json()["id"] for _ in range(3)]
    # Then A's 300 jobs share one fair-share key (the token's name), B's 3 another
    assert (_waiting(store, "team-a"), _waiting(store, "team-b")) == (300, 3)
    assert store.zcard(keys.fair_queue("zhipu")) == 2
    # And the gate gives B a share of the slots at once, behind A's 300: of the live zhipu's 3
    # slots, B holds one from the first round and all its 3 jobs are out within the first 9
    # slots (3 rounds), where 300 tenants of A's would have put B's last job near slot 300.
    order = _dispatch_order(Gate(store), live, slots=9)
    assert set(theirs) & set(order[:3]), order
    assert set(theirs) <= set(order[:9]), order


def _dispatch_order(gate: Gate, live: LiveStack, slots: int) -> list[str]:
    """The first ``slots`` jobs the gate hands out, freeing the oldest slot after each round."""
    config = live.client.catalogue.get("zhipu")
    order: list[str] = []
    held: list[tuple[str, str]] = []
    while len(order) < slots:
        taken = gate.dispatch(config)
        order += [d.job_id for d in taken]
        held += [(d.key_id, d.job_id) for d in taken]
        key_id, job_id = held.pop(0)
        assert gate.release("zhipu", key_id, job_id)
    return order


def test_an_allowed_tenant_is_the_fair_key_and_the_spec_is_stored_as_sent(local: Any) -> None:
    app, store = local
    # When A names one of its own tenants
    made = app.post("/v1/jobs", json=_job("shop-1"), headers=bearer(A))
    # Then it is accepted, queued under that tenant, and the spec keeps its label as sent
    assert made.status_code == 202, made.text
    assert made.json()["spec"]["labels"] == {"tenant": "shop-1"}
    assert _waiting(store, "shop-1") == 1
    # And naming its own name is its default share
    assert app.post("/v1/jobs", json=_job("team-a"), headers=bearer(A)).status_code == 202
    assert _waiting(store, "team-a") == 1
    # When A names B's name or B's tenant: 403, and nothing is queued for either
    for other in ("team-b", "shop-9"):
        refused = app.post("/v1/jobs", json=_job(other), headers=bearer(A))
        assert refused.status_code == 403
        assert refused.json()["error"]["field"] == "labels.tenant"
        assert _waiting(store, other) == 0
    # And in a batch the refusal names the job, and no job of the batch is made
    jobs = {"jobs": [_job("shop-2"), _job("shop-9")]}
    refused = app.post("/v1/jobs/batch", json=jobs, headers=bearer(A))
    assert refused.status_code == 403
    assert refused.json()["error"]["field"] == "jobs.1.labels.tenant"
    assert _waiting(store, "shop-2") == 0
    # B (a sha256 token) may use its own tenant
    assert app.post("/v1/jobs", json=_job("shop-9"), headers=bearer(B)).status_code == 202
    assert _waiting(store, "shop-9") == 1


def test_the_openai_facade_uses_the_tokens_default_tenant(local: Any) -> None:
    app, store = local
    body = {"prompt": "a kite", "model": "cogvideox-flash"}
    made = app.post("/v1/videos", json=body, headers=bearer(A))
    assert made.status_code == 200, made.text
    assert _waiting(store, "team-a") == 1


def test_plain_api_tokens_keep_their_identity_and_no_other_tenant(local: Any) -> None:
    app, store = local
    me = web.identity("token-a")
    # A VIDQUEUE_API_TOKENS token is its own producer and its own fair share, as before
    made = app.post("/v1/jobs", json=_job(), headers=bearer("token-a"))
    assert made.status_code == 202, made.text
    assert _waiting(store, me) == 1
    listed = app.get("/v1/jobs", headers=bearer("token-a")).json()["jobs"]
    assert [job["id"] for job in listed] == [made.json()["id"]]
    # It may name its own identity, and no other tenant
    assert app.post("/v1/jobs", json=_job(me), headers=bearer("token-a")).status_code == 202
    refused = app.post("/v1/jobs", json=_job("shop-1"), headers=bearer("token-a"))
    assert refused.status_code == 403
    # An unknown token is still a 401
    assert app.post("/v1/jobs", json=_job(), headers=bearer("nope")).status_code == 401
