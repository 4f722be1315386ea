"""Every setting vidqueue reads from the environment, in one frozen object.

This module is the only reader of the environment (besides boto3, which reads its own
``AWS_*`` variables). Names and defaults are a contract: see docs/design.md §6 and the README.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.redis_url import SentinelTarget, is_sentinel, sentinel_target


class Settings(BaseSettings):
    """Process-wide settings, read once from ``VIDQUEUE_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="VIDQUEUE_", frozen=True, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis Sentinel (config.redis_url): with a sentinel:// URL, the master's name and the
    # Sentinels' own password. A write that must survive a failover (a job's creation, the mark
    # that a submit is about to be sent) waits for this many replicas to confirm it, at most
    # redis_wait_timeout_ms; -1 (the default) means 1 with Sentinel, 0 without
    # (docs/operations.md).
    redis_sentinel_master: str = ""
    redis_sentinel_password: str = ""
    redis_wait_replicas: int = Field(default=-1, ge=-1)
    redis_wait_timeout_ms: int = Field(default=1000, ge=1)
    providers_file: str = "config/providers.toml"

    s3_endpoint_url: str = "http://127.0.0.1:8333"
    s3_public_endpoint_url: str = ""
    s3_bucket: str = "vidqueue"
    s3_prefix: str = "videos/"
    presign_ttl_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # S3 as the API's requests reach it (uploads, ownership checks, downloads, deletes): short
    # timeouts, one attempt, a few threads of its own, and an answer (503 at worst) within the
    # deadline, so a stalled S3 costs a caller seconds and never the API's shared thread pool
    # (producer.files). A healthy S3 answers in milliseconds; the deadline (connect + read)
    # leaves a second of the API's 5 s promise for its own work. The workers' mirror keeps its
    # own long timeouts and retries.
    s3_request_connect_timeout_s: float = Field(default=1.0, gt=0)
    s3_request_read_timeout_s: float = Field(default=3.0, gt=0)
    s3_request_deadline_s: float = Field(default=4.0, gt=0)
    s3_request_concurrency: int = Field(default=8, ge=1)
    # Storage hygiene (workers.io.hygiene): the sweep aborts the multipart uploads under
    # s3_prefix left incomplete longer than this (a mirror killed mid-copy leaves its parts
    # stored, and billed), at most once per s3_hygiene_interval_s and a bounded number a pass.
    s3_multipart_max_age_s: int = Field(default=86400, ge=0)
    s3_hygiene_interval_s: float = Field(default=300.0, gt=0)

    api_tokens: str = ""
    # A TOML file of named API tokens and the fair-share tenants each may name
    # (producer.tokens); used with api_tokens, which keeps meaning one producer per token.
    api_tokens_file: str = ""
    webhook_secret: str = ""
    allow_private_callbacks: bool = False

    # Provider callbacks (docs/callbacks.md): where providers can reach this API from outside
    # (e.g. https://vidqueue.example.com), and the secret each job's callback token is derived
    # from. Callbacks are armed only where a base URL is set (here, or per provider).
    public_base_url: str = ""
    callback_secret: str = ""

    # How often Celery beat runs the sweep (leases, index pruning, dispatch).
    sweep_interval_s: float = Field(default=10.0, gt=0)
    # How long a published step may stay unclaimed before a due poller checks whether its
    # message was lost (workers.steps.due); also how late a claimed step's lease may run.
    sweep_grace_s: float = Field(default=15.0, ge=0)
    # Job history (workers.steps.archive): a finished job stays in Redis this long after it
    # ended, then the sweep writes its record and timeline to S3 (the mirror's bucket, under
    # ``{s3_prefix}records/``) and only then removes it from Redis. Reads fall back to S3, so
    # Redis holds the hot window only. With the archive off, records expire after 14 days.
    hot_retention_s: int = Field(default=86400, ge=0)
    archive_enabled: bool = True
    # Celery task events (what Flower shows). On by default; off saves about 2 Redis PUBLISHes
    # and some CPU per task (`make bench` lean measures it).
    task_events: bool = True
    # Live job events (workers.redis.changes): each producer's change stream keeps about this
    # many entries (a job's creation and each of its state changes, ~100 bytes each); a client
    # that resumes (Last-Event-ID) from further back gets the job's current state instead.
    events_maxlen: int = Field(default=10_000, ge=100, le=10_000_000)

    # The local stack (`vidqueue dev up`): where its state lives and the ports it binds.
    run_dir: str = ".run"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    flower_port: int = 5555
    flower_basic_auth: str = "vidqueue:vidqueue-local"
    sim_port: int = 8090
    worker_concurrency: int = Field(default=4, ge=1)

    @property
    def s3_presign_endpoint_url(self) -> str:
        """The endpoint put into presigned URLs (what producers can reach)."""
        return self.s3_public_endpoint_url or self.s3_endpoint_url

    @property
    def api_token_set(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.api_tokens.split(",") if t.strip())

    @property
    def sentinel(self) -> SentinelTarget | None:
        """The Sentinel target of ``redis_url``, None for one plain Redis server."""
        return sentinel_target(
            self.redis_url, self.redis_sentinel_master, self.redis_sentinel_password
        )

    @property
    def replicas_to_wait(self) -> int:
        """How many replicas confirm the writes that must survive a failover."""
        if self.redis_wait_replicas >= 0:
            return self.redis_wait_replicas
        return 1 if is_sentinel(self.redis_url) else 0

    @property
    def redis_port(self) -> int:
        return urlsplit(self.redis_url).port or 6379

    @property
    def s3_port(self) -> int:
        return urlsplit(self.s3_endpoint_url).port or 8333


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings()
