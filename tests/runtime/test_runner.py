"""The session runner on a real event loop with a stream that takes audio at once: audio that
arrives while the loop sleeps is sent from `feed` itself when a chunk is full, and otherwise
leaves by its max_buffer deadline, with nothing but the runner's own timer to send it."""

from __future__ import annotations

import asyncio
import gc
import random
import weakref
from collections.abc import AsyncIterator

from asr_worker.core.clock import SystemClock
from asr_worker.core.provider_events import ProviderEvent
from asr_worker.core.session import SessionCore
from asr_worker.core.session_types import SessionConfig
from asr_worker.metrics import LiveTotals, WorkerMetrics
from asr_worker.providers.base import ProviderHealth, StreamRequest
from asr_worker.runtime.runner import SessionRunner
from asr_worker.runtime.wakeup import TimerWheel
from tests.support.audio import PCM8K

FRAME = b"\x01\x00" * 160  # 20 ms of 8 kHz linear16


class ImmediateStream:
    """Takes audio without awaiting (as the Deepgram client does while its socket drains)."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.arrived = asyncio.Event()
        self._closed = asyncio.Event()

    def send_audio_now(self, data: bytes) -> bool:
        self.received += data
        self.arrived.set()
        return True

    async def send_audio(self, data: bytes) -> None:
        self.send_audio_now(data)

    async def keepalive(self) -> None:
        pass

    async def finalize(self) -> None:
        pass

    async def close_stream(self) -> None:
        self._closed.set()

    async def abort(self) -> None:
        self._closed.set()

    async def events(self) -> AsyncIterator[ProviderEvent]:
        await self._closed.wait()
        none: tuple[ProviderEvent, ...] = ()  # an async generator with no events
        for event in none:
            yield event


class OneStream:
    name = "test"

    def __init__(self) -> None:
        self.stream = ImmediateStream()

    async def open(self, request: StreamRequest) -> ImmediateStream:
        return self.stream

    def health(self) -> ProviderHealth:
        return ProviderHealth(True)

    async def aclose(self) -> None:
        pass


async def _running(config: SessionConfig) -> tuple[SessionRunner, OneStream]:
    clock = SystemClock()
    provider = OneStream()
    core = SessionCore(
        interaction_id="call-1",
        tenant_id=None,
        fmt=PCM8K,
        provider=provider.name,
        config=config,
        created_at=clock.monotonic(),
        wall_ms_at_create=clock.wall_ms(),
        rng=random.Random(7),
    )
    metrics = WorkerMetrics(LiveTotals, provider.name)
    runner = SessionRunner(core, provider, lambda event: None, metrics, clock, TimerWheel())
    runner.attach()
    return runner, provider


async def _connected(runner: SessionRunner, provider: OneStream) -> None:
    """The first frame opens the stream; wait until it went out and the loop sleeps again."""
    assert runner.feed(FRAME)
    await asyncio.wait_for(provider.stream.arrived.wait(), 5)
    for _ in range(100):  # a few loop turns: the session loop carries out the open, then parks
        if runner.loop_parked:
            return
        await asyncio.sleep(0)
    raise AssertionError("the session loop did not go back to sleep")


async def test_waiting_audio_leaves_by_its_max_buffer_deadline_while_the_loop_sleeps() -> None:
    # A chunk is 3 frames; one frame alone waits. Nothing else happens for 30 s (keepalive),
    # so only the timer `feed` armed for the new waiting audio can send it.
    runner, provider = await _running(SessionConfig(max_buffer_ms=60, send_chunk_ms=60, keepalive_s=30.0))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runner.run())
        await _connected(runner, provider)
        stream = provider.stream
        stream.arrived.clear()
        assert runner.feed(FRAME)
        assert len(stream.received) == len(FRAME)  # not yet: it waits for more audio or its deadline
        await asyncio.wait_for(stream.arrived.wait(), 5)
        assert bytes(stream.received) == FRAME * 2
        runner.end("end")


async def test_a_full_chunk_goes_out_from_feed_without_waking_the_loop() -> None:
    runner, provider = await _running(SessionConfig(max_buffer_ms=100, send_chunk_ms=60, keepalive_s=30.0))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runner.run())
        await _connected(runner, provider)
        stream = provider.stream
        for _ in range(3):
            assert runner.feed(FRAME)
        assert bytes(stream.received) == FRAME * 4  # sent within the third feed call
        assert runner.loop_parked  # and the loop slept through it
        runner.end("end")


async def test_an_ended_session_is_freed_at_once_not_left_to_the_garbage_collector() -> None:
    """The worker's garbage collector runs its full passes rarely (see cli.run_loop), so an
    ended session that is part of a reference cycle stays in memory long after its call; in a
    fault drill they piled up by the hundred. Reference counting alone must free it."""
    gc.disable()
    try:
        runner, provider = await _running(SessionConfig(keepalive_s=30.0))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(runner.run())
            await _connected(runner, provider)
            runner.end("end")
        session = weakref.ref(runner)  # its core, buffers and stream go with it
        del runner, provider
        assert session() is None
    finally:
        gc.enable()
