"""The live stack the integration tests share: Redis, SeaweedFS (S3), the provider simulator,
Celery workers and beat, the HTTP API (fixtures in ``tests/integration/conftest.py``).

One stack per test session, on free loopback ports in a temporary run directory, started by
the same ``devstack`` code as ``vidqueue dev up`` — so the tests exercise the real start-up
path too. Tests that change the simulator's options or kill workers wait for the stack to be
idle first (``idle_stack``), so they cannot disturb each other's jobs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from config.settings import Settings
from devstack.env import LOCAL_DEFAULTS
from devstack.ports import free_ports
from devstack.stack import Stack
from producer.client import Client
from workers.domain.jobs import TERMINAL, JobRecord
from workers.io.storage import Storage

API_TOKEN = "test-token-1"
# A second producer identity, for tests that check one token cannot see another's jobs.
OTHER_TOKEN = "test-token-2"
# The simulator's per-key limits match the providers file below, so a cap violation would
# show as a 429 in the simulator's counters, not only as a high in-flight count.
PROVIDERS_TOML = """
[providers.zhipu]
kind = "zhipu"
base_url = "http://127.0.0.1:{sim_port}/zhipu/api/paas/v4"
api_key_env = ["SIM_ZHIPU_KEY"]
models = ["cogvideox-flash", "cogvideox-3"]
max_in_flight = 3
requests_per_second = 50
first_poll_s = 0.6
min_poll_interval_s = 0.2
max_poll_interval_s = 1.0
timeout_s = 120
request_timeout_s = 5

[providers.solo]
kind = "zhipu"
base_url = "http://127.0.0.1:{sim_port}/zhipu/api/paas/v4"
api_key_env = ["SIM_SOLO_KEY"]
max_in_flight = 1
first_poll_s = 0.3
min_poll_interval_s = 0.2
max_poll_interval_s = 0.5
timeout_s = 3
request_timeout_s = 5

[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:{sim_port}/openai/v1"
api_key_env = ["SIM_OPENAI_KEY"]
max_in_flight = 3
first_poll_s = 0.6
min_poll_interval_s = 0.2
max_poll_interval_s = 1.0
timeout_s = 120
request_timeout_s = 5

[providers.gateway]
kind = "gateway"
base_url = "http://127.0.0.1:{sim_port}/gateway"
api_key_env = ["SIM_GATEWAY_KEY"]
max_in_flight = 3
first_poll_s = 0.6
min_poll_interval_s = 0.2
max_poll_interval_s = 1.0
timeout_s = 120
request_timeout_s = 5

[providers.ark]
kind = "ark"
base_url = "http://127.0.0.1:{sim_port}/ark/api/v3"
api_key_env = ["SIM_ARK_KEY"]
max_in_flight = 3
first_poll_s = 0.6
min_poll_interval_s = 0.2
max_poll_interval_s = 1.0
timeout_s = 120
request_timeout_s = 5

[providers.kling]
kind = "kling"
base_url = "http://127.0.0.1:{sim_port}/kling"
api_key_env = ["SIM_KLING_KEY"]
max_in_flight = 3
first_poll_s = 0.6
min_poll_interval_s = 0.2
max_poll_interval_s = 1.0
timeout_s = 120
request_timeout_s = 5

# The same three kinds with provider callbacks armed (docs/callbacks.md): the simulator calls
# back to the stack's API; a lost callback is covered by a safety poll 6 s apart.
[providers.kling_cb]
kind = "kling"
base_url = "http://127.0.0.1:{sim_port}/kling"
api_key_env = ["SIM_KLING_KEY"]
max_in_flight = 3
min_poll_interval_s = 0.2
timeout_s = 120
request_timeout_s = 5
callback_base_url = "http://127.0.0.1:{api_port}"
callback_safety_poll_s = 6

[providers.ark_cb]
kind = "ark"
base_url = "http://127.0.0.1:{sim_port}/ark/api/v3"
api_key_env = ["SIM_ARK_KEY"]
max_in_flight = 3
min_poll_interval_s = 0.2
timeout_s = 120
request_timeout_s = 5
callback_base_url = "http://127.0.0.1:{api_port}"
callback_safety_poll_s = 6

[providers.gateway_cb]
kind = "gateway"
base_url = "http://127.0.0.1:{sim_port}/gateway"
api_key_env = ["SIM_GATEWAY_KEY"]
max_in_flight = 3
min_poll_interval_s = 0.2
timeout_s = 120
request_timeout_s = 5
callback_base_url = "http://127.0.0.1:{api_port}"
callback_safety_poll_s = 6
"""
CALLBACK_SECRET = "test-callback-secret"

KEYS = {
    "SIM_ZHIPU_KEY": "sim-key-zhipu-test",
    "SIM_SOLO_KEY": "sim-key-solo-test",
    "SIM_OPENAI_KEY": "sim-key-openai-test",
    "SIM_GATEWAY_KEY": "sim-key-gateway-test",
    "SIM_ARK_KEY": "sim-key-ark-test",
    # Kling signs JWTs with an access key and a secret key: one variable holds "AK:SK".
    "SIM_KLING_KEY": "sim-kling-access:sim-kling-secret-test",
}


@dataclass
class LiveStack:
    stack: Stack
    settings: Settings
    client: Client
    sim_url: str
    api_url: str
    redis: redis.Redis

    def sim(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(method, f"{self.sim_url}{path}", timeout=10, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def sim_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.sim("GET", "/_sim/stats")
        return stats

    def set_sim(self, **options: Any) -> None:
        self.sim("POST", "/_sim/options", json=options)

    def wait_all(self, ids: list[str], timeout_s: float = 90) -> list[JobRecord]:
        deadline = time.monotonic() + timeout_s
        while True:
            records = [self.client.get(i) for i in ids]
            done = [r for r in records if r is not None and r.state in TERMINAL]
            if len(done) == len(ids):
                return done
            if time.monotonic() > deadline:
                states = sorted({r.state for r in records if r is not None})
                raise AssertionError(f"{len(ids) - len(done)} jobs not finished: {states}")
            time.sleep(0.2)

    def storage(self) -> Storage:
        return Storage(self.settings)


def use_local_s3_credentials() -> None:
    """The test process presigns and reads S3 with the stack's own credentials."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        os.environ[name] = LOCAL_DEFAULTS[name]


def stack_settings(tmp: Path) -> Settings:
    redis_port, s3_port, sim_port, api_port, flower_port = free_ports(5)
    providers_file = tmp / "providers.toml"
    providers_file.write_text(PROVIDERS_TOML.format(sim_port=sim_port, api_port=api_port))
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        providers_file=str(providers_file),
        s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
        s3_bucket="vidqueue-test",
        api_tokens=f"{API_TOKEN},{OTHER_TOKEN}",
        webhook_secret="whsec_" + "dGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQ=",
        callback_secret=CALLBACK_SECRET,
        allow_private_callbacks=True,
        sweep_interval_s=1.0,
        sweep_grace_s=2.0,
        run_dir=str(tmp / "run"),
        api_port=api_port,
        flower_port=flower_port,
        sim_port=sim_port,
        worker_concurrency=4,
    )
