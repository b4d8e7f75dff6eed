"""The HTTP edge's options: where it listens, who may use it, and the largest message it takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..credentials import Secret
from ..settings import Section, Setting, boolean, host, int_range, seconds, secret
from ..tenancy import ApiKeys

# The request line a server reads: long enough for the most keyterms a call may name,
# percent-encoded, with the other parameters (aiohttp's default, 8190 bytes, holds about 75 of
# 100 terms of 100 characters).
MAX_REQUEST_LINE_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class HttpOptions:
    host: str = "127.0.0.1"
    port: int = 3001
    worker_token: Secret | None = None
    api_keys: ApiKeys | None = None  # tenants' keys
    allow_unauthenticated: bool = False  # serve beyond loopback without a token, on purpose
    max_message_bytes: int = 1 << 20  # the largest WebSocket message any route takes
    head_timeout_s: float = 5.0  # a connection's request head must arrive within this
    first_message_timeout_s: float = 10.0  # a call's WebSocket must send its first message within this
    idle_timeout_s: float = 15.0  # a kept-alive HTTP connection with no request is closed after this
    max_connections_per_address: int = 0  # 0: a quarter of the connections the fd limit allows
    max_connections_per_key: int = 2000
    fd_headroom: int = 64  # file descriptors kept free for calls in progress (providers, Redis)


SETTINGS: Final = Section(
    "http",
    "listener and access",
    HttpOptions,
    (
        Setting("host", "HOST", "listen address", host),
        Setting("port", "PORT", "listen port (0 picks a free one)", int_range(0, 65535)),
        Setting(
            "worker_token",
            "ASR_WORKER_TOKEN",
            "one key with every scope, for a single-tenant deployment (it may name a call's tenant "
            "with tenant_id); with it or ASR_API_KEYS set, every endpoint but /health and /metrics "
            "needs a key",
            secret,
            secret=True,
        ),
        Setting(
            "api_keys",
            "ASR_API_KEYS",
            "tenants' keys: KEY:TENANT:SCOPES entries (scopes stream, watch, operate joined by +), "
            "comma-separated, or the path of a file of them (one a line, # comments), read again "
            "when it changes; never logged",
            ApiKeys.parse,
            secret=True,
        ),
        Setting(
            "max_message_bytes",
            "ASR_MAX_MESSAGE_BYTES",
            "largest WebSocket message taken",
            int_range(1024, 64 << 20),
        ),
        Setting(
            "head_timeout_s",
            "ASR_HEAD_TIMEOUT_S",
            "a connection's request line and headers must arrive within this, or it is closed (408)",
            seconds(0.5, 300.0),
        ),
        Setting(
            "first_message_timeout_s",
            "ASR_FIRST_MESSAGE_TIMEOUT_S",
            "a call's WebSocket must send its first message within this after the upgrade, or it is closed",
            seconds(0.5, 3600.0),
        ),
        Setting(
            "idle_timeout_s",
            "ASR_IDLE_TIMEOUT_S",
            "a kept-alive HTTP connection with no request in flight is closed after this",
            seconds(1.0, 3600.0),
        ),
        Setting(
            "max_connections_per_address",
            "ASR_MAX_CONNECTIONS_PER_ADDRESS",
            "most connections open at once from one client address (0: a quarter of what the "
            "file-descriptor limit leaves after the headroom)",
            int_range(0, 1_000_000),
        ),
        Setting(
            "max_connections_per_key",
            "ASR_MAX_CONNECTIONS_PER_KEY",
            "most WebSockets and event streams open at once with one key",
            int_range(1, 1_000_000),
        ),
        Setting(
            "fd_headroom",
            "ASR_FD_HEADROOM",
            "file descriptors kept free below the process's limit: new connections are refused "
            "(503) within this many of it, so calls in progress keep theirs",
            int_range(8, 100_000),
        ),
        Setting(
            "allow_unauthenticated",
            "ASR_ALLOW_UNAUTHENTICATED",
            "serve on a non-loopback address without ASR_WORKER_TOKEN (say so on purpose)",
            boolean,
            switch=True,
        ),
    ),
)
