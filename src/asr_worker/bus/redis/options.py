"""The Redis bus's options: which Redis, and how calls are shared and taken over."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ...settings import Section, Setting, boolean, int_range, seconds, url


@dataclass(frozen=True)
class RedisOptions:
    url: str = field(default="redis://127.0.0.1:6379/0", repr=False)  # may hold a password
    cluster: bool = False
    claim_idle_s: float = 15.0
    max_takeovers: int = 3
    read_interval_ms: int = 40


SETTINGS: Final = Section(
    "redis",
    "Redis bus",
    RedisOptions,
    (
        Setting("url", "REDIS_URL", "Redis for the redis_streams bus", url("redis", "rediss", "unix")),
        Setting(
            "cluster",
            "REDIS_CLUSTER",
            "REDIS_URL names a node of a Redis Cluster; per-call keys carry the call's id as a hash "
            "tag, {ID}",
            boolean,
        ),
        Setting(
            "claim_idle_s",
            "ASR_CLAIM_IDLE_S",
            "take over a dead worker's calls after this many idle seconds",
            seconds(1.0, 3600.0),
        ),
        Setting(
            "max_takeovers",
            "ASR_MAX_TAKEOVERS",
            "give a call up (ack it, error and session_ended) once more than this many workers died "
            "holding it",
            int_range(0, 1000),
        ),
        Setting(
            "read_interval_ms",
            "ASR_BUS_READ_INTERVAL_MS",
            "read calls' audio from Redis at most this often: longer costs the worker and Redis less, "
            "and adds up to that much latency",
            int_range(0, 1000),
        ),
    ),
)
