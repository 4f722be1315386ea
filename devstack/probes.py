"""Readiness probes: each answers "is this service ready?" once, quickly, without raising."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
import httpx
import redis
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from devstack.processes import Launch, Probe

PROBE_TIMEOUT_S = 2.0


def http_ok(url: str) -> Probe:
    """Ready when ``GET url`` answers 200 (proxies from the environment are ignored)."""

    def probe(launch: Launch) -> bool:
        try:
            return httpx.get(url, timeout=PROBE_TIMEOUT_S, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def redis_ping(port: int, host: str = "127.0.0.1") -> Probe:
    """Ready when the server answers PING."""

    def probe(launch: Launch) -> bool:
        client = redis.Redis(host=host, port=port, socket_timeout=PROBE_TIMEOUT_S)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    return probe


def s3_lists_buckets(endpoint_url: str, env: Mapping[str, str], bucket: str = "") -> Probe:
    """Ready when a SigV4 ``ListBuckets`` with the stack's credentials succeeds.

    With ``bucket``, the listing must also show it (``weed mini -bucket`` creates it at start).
    """
    client = s3_client(endpoint_url, env, retries=1)

    def probe(launch: Launch) -> bool:
        try:
            names = {b.get("Name") for b in client.list_buckets().get("Buckets", [])}
        except (BotoCoreError, ClientError):
            return False
        return not bucket or bucket in names

    return probe


def log_says(text: str, min_alive_s: float = 1.0) -> Probe:
    """Ready when the process has lived ``min_alive_s`` and logged ``text`` since this start."""

    def probe(launch: Launch) -> bool:
        return launch.alive_for() >= min_alive_s and text in launch.log_since_start()

    return probe


def s3_client(endpoint_url: str, env: Mapping[str, str], retries: int = 3) -> Any:
    """A boto3 S3 client as vidqueue configures one: SigV4, path-style, checksums when required."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=PROBE_TIMEOUT_S,
            read_timeout=PROBE_TIMEOUT_S * 5,
            retries={"max_attempts": retries, "mode": "standard"},
        ),
    )
