"""Fixtures for the Redis Streams bus: a real redis-server per test, and calls to publish."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from asr_worker.tools.audio_files import AudioFile
from tests.support.audio import PCM8K, silence, speechlike
from tests.support.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def r(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


def call_audio(seconds: float, seed: int) -> AudioFile:
    """Speech, a pause, speech: finals at word counts and at the pause. Lengths are whole
    mock words (200 ms), so the words a call must come out as are `expected_words` of it."""
    first = round(seconds * 0.6 / 0.2) * 0.2
    rest = max(0.2, round((seconds - first - 0.4) / 0.2) * 0.2)
    data = speechlike(first, seed=seed) + silence(0.4) + speechlike(rest, seed=seed + 1000)
    return AudioFile(Path(f"call-{seed}.wav"), PCM8K, data)
