"""The Deepgram-protocol test server: `asr-worker dg-server`'s server over the mock provider,
in-process on a free port, recording every connection; tests flip `server.faults` at run time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asr_worker.credentials import Secret
from asr_worker.dgserver import ConnectionRecord, DeepgramServer, Faults
from asr_worker.providers.deepgram import DeepgramOptions, DeepgramProvider
from asr_worker.providers.mock import MockOptions, MockProvider
from asr_worker.worker import Worker

from ..conftest import running_worker


@asynccontextmanager
async def running_dg_server(
    *, api_key: str | None = None, idle_timeout_s: float = 10.0, faults: Faults | None = None, **mock: Any
) -> AsyncIterator[DeepgramServer]:
    server = DeepgramServer(
        MockProvider(MockOptions(**mock)), api_key=api_key, idle_timeout_s=idle_timeout_s, faults=faults
    )
    async with server.running():
        yield server


def deepgram_provider(server: DeepgramServer, key: str = "test-key", **options: Any) -> DeepgramProvider:
    return DeepgramProvider(DeepgramOptions(url=server.url, api_key=Secret(key), **options))


@asynccontextmanager
async def deepgram_worker(
    server: DeepgramServer,
    key: str = "test-key",
    provider: DeepgramProvider | None = None,
    **overrides: Any,
) -> AsyncIterator[Worker]:
    """A real worker whose provider is `deepgram`, pointed at `server`."""
    async with running_worker(provider or deepgram_provider(server, key), **overrides) as worker:
        yield worker


def all_audio(connections: list[ConnectionRecord]) -> bytes:
    return b"".join(bytes(c.audio) for c in connections)
