"""The HTTP edge's options: where it listens, who may use it, and the largest message it takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..credentials import Secret
from ..settings import Section, Setting, boolean, host, int_range, secret

# The request line a server reads: long enough for the most keyterms a call may name,
# percent-encoded, with the other parameters (aiohttp's default, 8190 bytes, holds about 75 of
# 100 terms of 100 characters).
MAX_REQUEST_LINE_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class HttpOptions:
    host: str = "127.0.0.1"
    port: int = 3001
    worker_token: Secret | None = None
    allow_unauthenticated: bool = False  # serve beyond loopback without a token, on purpose
    max_message_bytes: int = 1 << 20  # the largest WebSocket message any route takes


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
            "bearer token required on every endpoint but /health and /metrics",
            secret,
            secret=True,
        ),
        Setting(
            "max_message_bytes",
            "ASR_MAX_MESSAGE_BYTES",
            "largest WebSocket message taken",
            int_range(1024, 64 << 20),
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
