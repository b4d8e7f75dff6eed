"""Fixtures for the Redis Streams bus: a real redis-server per test, and calls to publish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from asr_worker.bus.redis.wire import CALLS_KEY, GROUP, progress_key
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


async def hold_as_thief(
    r: aioredis.Redis, entry_id: bytes, interaction_id: str, alive: asyncio.Event
) -> None:
    """Another worker that claims the call's entry, makes itself the call's owner (as the start
    script does) and keeps its claim fresh while `alive` is set; then it dies, holding it."""
    await r.xclaim(CALLS_KEY, GROUP, "thief", 0, [entry_id], justid=True)
    await r.hset(progress_key(interaction_id), "owner", "thief")
    while alive.is_set():
        await r.xclaim(CALLS_KEY, GROUP, "thief", 0, [entry_id], justid=True)
        await asyncio.sleep(0.1)
