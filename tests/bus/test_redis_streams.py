"""The Redis Streams bus with a real redis-server and a worker in this process (so the mock
provider's record of every byte it received can be checked)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from asr_worker.bus.redis.bus import RedisStreamsBus
from asr_worker.bus.redis.housekeeping import Housekeeping
from asr_worker.bus.redis.wire import CALLS_KEY, GROUP, audio_key, progress_key, transcript_key
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockOptions, MockProvider, expected_words
from asr_worker.tools.audio_files import AudioFile
from asr_worker.tools.publish import publish_call
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.redis_server import (
    RedisServer,
    entries,
    final_words,
    transcript,
    until,
    wait_for_calls_to_end,
)

from .conftest import call_audio, hold_as_thief


def bus(server: RedisServer, **overrides: object) -> dict[str, object]:
    return {"pubsub_adapter": "redis_streams", "redis_url": server.url, "claim_idle_s": 1.0, **overrides}


@asynccontextmanager
async def bus_worker(
    provider: MockProvider, server: RedisServer, **overrides: object
) -> AsyncIterator[Worker]:
    """A worker on the Redis bus, once its bus is connected (the group exists)."""
    async with running_worker(provider, **bus(server, **overrides)) as worker:

        async def connected() -> bool:
            return worker.bus.healthy()

        await until(connected)
        yield worker


def received(provider: MockProvider, interaction_id: str) -> bytes:
    """What the provider got for a call, stream after stream (for a call without replays)."""
    return b"".join(bytes(s.received) for s in provider.streams_for(interaction_id))


# Another tenant's call: its keys carry the tenant (`acme/bus-1`), so two tenants' calls with one id
# never share a stream.
TAG = "acme/bus-1"


async def test_a_call_on_the_bus_is_transcribed_in_order_then_cleaned_up(
    redis_server: RedisServer, r: aioredis.Redis, mock_provider: MockProvider, http: aiohttp.ClientSession
) -> None:
    audio = call_audio(2.4, seed=1)
    async with bus_worker(mock_provider, redis_server) as worker:
        result = await publish_call(audio, redis_server.url, "bus-1", tenant_id="acme", speed=0)
        events = (await wait_for_calls_to_end(r, [TAG]))[TAG]
        async with http.get(f"{base_url(worker)}/metrics") as response:
            metrics = await response.text()
        async with http.get(f"{base_url(worker)}/health") as response:
            health = await response.json()
    assert 'asr_bus_calls_taken_total{how="new"} 1.0' in metrics
    assert "asr_bus_up 1.0" in metrics and "asr_bus_events_queued 0.0" in metrics
    assert f"asr_bus_audio_entries_total {result.frames + 1}.0" in metrics  # the frames and the end
    bus_status = health["checks"]["bus"]
    assert bus_status["ok"] is True and bus_status["adapter"] == "redis_streams"
    assert "password" not in json.dumps(bus_status) and bus_status["redis"].startswith("127.0.0.1:")
    assert received(mock_provider, "bus-1") == audio.data  # every frame, byte for byte, once
    assert final_words(events) == expected_words(audio.data, PCM8K)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "session_started" and events[0]["tenant_id"] == "acme"
    assert "resumed" not in events[0]
    (ended,) = [e for e in events if e["type"] == "session_ended"]
    assert ended["reason"] == "end" and ended["audio_s"] == pytest.approx(audio.duration_s)
    # acknowledged only now, and nothing of the call left but its transcript and the note that
    # it ended (for a worker handed the entry before the acknowledgement), which both expire
    assert (await r.xpending(CALLS_KEY, GROUP))["pending"] == 0
    assert await r.exists(audio_key(TAG)) == 0
    assert await r.hget(progress_key(TAG), "ended") == b"1"
    assert 0 < await r.ttl(progress_key(TAG)) <= 86_400
    assert 0 < await r.ttl(transcript_key(TAG)) <= 86_400
    assert result.frames == len(frames(audio.data))


async def test_bad_entries_give_error_events_and_disturb_nothing_else(
    redis_server: RedisServer, r: aioredis.Redis, mock_provider: MockProvider
) -> None:
    good = frames(speechlike(1.2, seed=4))
    key = audio_key("bad-1")

    def frame(audio: bytes, **extra: object) -> dict[FieldT, EncodableT]:
        body = {"interaction_id": "bad-1", "encoding": "pcm16", "sample_rate": 8000, **extra}
        body["audio"] = base64.b64encode(audio).decode()
        return {"data": json.dumps(body)}

    async with bus_worker(mock_provider, redis_server):
        announcement = {"interaction_id": "bad-1", "encoding": "pcm16", "sample_rate": 8000}
        await r.xadd(CALLS_KEY, {"data": json.dumps(announcement)})
        half = len(good) // 2
        for chunk in good[:half]:
            await r.xadd(key, frame(chunk))
        await r.xadd(key, {b"data": b"{not json"})
        await r.xadd(key, {b"data": json.dumps({"audio": "***not base64***"}).encode()})
        await r.xadd(key, frame(good[0], sample_rate=16000))
        await r.xadd(key, frame(b"\x01\x02\x03"))  # not whole samples
        await r.xadd(key, {b"other": b"field"})
        for chunk in good[half:]:
            await r.xadd(key, frame(chunk))
        await r.xadd(key, {b"data": json.dumps({"interaction_id": "bad-1", "seq": 99, "end": True}).encode()})
        events = (await wait_for_calls_to_end(r, ["bad-1"]))["bad-1"]
    errors = [(e["code"], str(e["message"])) for e in events if e["type"] == "error"]
    assert [code for code, _ in errors] == ["bad_entry", "bad_entry", "bad_entry", "bad_audio", "bad_entry"]
    assert "not a JSON object" in errors[0][1] and "base64" in errors[1][1] and "16000 Hz" in errors[2][1]
    assert received(mock_provider, "bad-1") == b"".join(good)
    assert final_words(events) == expected_words(b"".join(good), PCM8K)
    assert events[-1]["type"] == "session_ended" and events[-1]["reason"] == "end"


async def test_a_bad_announcement_is_acknowledged_with_an_error_event(
    redis_server: RedisServer, r: aioredis.Redis, mock_provider: MockProvider
) -> None:
    async with bus_worker(mock_provider, redis_server) as worker:
        await r.xadd(CALLS_KEY, {"data": json.dumps({"interaction_id": "odd-1", "encoding": "opus"})})
        await r.xadd(CALLS_KEY, {"data": b"[]"})

        async def both_handled() -> bool:
            pending = (await r.xpending(CALLS_KEY, GROUP))["pending"]
            return bool(await r.exists(transcript_key("odd-1"))) and pending == 0

        await until(both_handled)
        (event,) = await transcript(r, "odd-1")
        assert event["type"] == "error" and event["code"] == "bad_call" and "opus" in str(event["message"])
        assert worker.manager.sessions == []
        # and the bus still takes good calls
        await publish_call(call_audio(1.0, seed=2), redis_server.url, "after-odd", speed=0)
        await wait_for_calls_to_end(r, ["after-odd"])


async def test_audio_is_trimmed_only_behind_what_finals_covered(
    redis_server: RedisServer, r: aioredis.Redis, mock_provider: MockProvider
) -> None:
    audio = call_audio(6.0, seed=7)
    key = audio_key("trim-1")
    smallest_left: list[int] = []
    async with bus_worker(mock_provider, redis_server), asyncio.TaskGroup() as tg:
        publishing = tg.create_task(publish_call(audio, redis_server.url, "trim-1", speed=3))
        while not publishing.done():
            left = await entries(r, key)
            progress = await r.hgetall(progress_key("trim-1"))
            seqs = [json.loads(f[b"data"]).get("seq") for _, f in left]
            if seqs:
                # what is left is every frame from some point on: nothing unread was removed
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                smallest_left.append(seqs[0])
                if progress and progress[b"next"]:
                    # the entry the resume point falls in is still there
                    assert progress[b"next"] in [e for e, _ in left]
                covered_frames = int(progress.get(b"offset", b"0")) // PCM8K.bytes_for(0.02)
                assert seqs[0] <= covered_frames  # never trimmed ahead of the covered audio
            await asyncio.sleep(0.05)
        events = (await wait_for_calls_to_end(r, ["trim-1"]))["trim-1"]
    assert max(smallest_left) > 50, "the stream was trimmed while the call went on"
    assert final_words(events) == expected_words(audio.data, PCM8K)
    assert await r.exists(key) == 0


async def test_ready_says_bus_down_while_redis_is_unreachable(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    server = RedisServer(tmp_path / "redis")  # not started yet
    try:
        async with running_worker(MockProvider(), **bus(server)) as worker:
            async with http.get(f"{base_url(worker)}/ready") as response:
                assert response.status == 503 and (await response.json())["reason"] == "bus_down"
            async with http.get(f"{base_url(worker)}/health") as response:
                health = await response.json()
            assert health["status"] == "degraded" and health["checks"]["bus"]["ok"] is False
            assert "lastError" in health["checks"]["bus"]
            server.start()
            await wait_ready(http, worker)
    finally:
        server.kill()


async def has_final(r: aioredis.Redis, interaction_id: str) -> bool:
    return any(e.get("is_final") for e in await transcript(r, interaction_id))


async def wait_ready(http: aiohttp.ClientSession, worker: Worker, timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            async with http.get(f"{base_url(worker)}/ready") as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.02)


async def test_redis_restarted_mid_call_loses_no_frame(
    tmp_path: Path, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    audio = call_audio(5.0, seed=11)
    try:
        async with bus_worker(mock_provider, server) as worker, asyncio.TaskGroup() as tg:
            r = aioredis.Redis.from_url(server.url)
            publishing = tg.create_task(publish_call(audio, server.url, "restart-1", speed=1))
            await until(lambda: has_final(r, "restart-1"))  # mid-call: some finals are out
            await r.aclose()
            server.stop()
            async with asyncio.timeout(10):
                while True:
                    async with http.get(f"{base_url(worker)}/ready") as response:
                        if response.status == 503:
                            assert (await response.json())["reason"] == "bus_down"
                            break
                    await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)  # Redis stays away for a while; the call goes on being spoken
            assert not publishing.done()
            assert worker.manager.get(CallKey("default", "restart-1")) is not None, (
                "the worker kept the session"
            )
            server.start()
            await wait_ready(http, worker)
            r = aioredis.Redis.from_url(server.url)
            events = (await wait_for_calls_to_end(r, ["restart-1"]))["restart-1"]
            await r.aclose()
        assert publishing.result().outage_retries > 0
    finally:
        server.kill()
    assert received(mock_provider, "restart-1") == audio.data
    assert final_words(events) == expected_words(audio.data, PCM8K)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["reason"] for e in events if e["type"] == "session_ended"] == ["end"]


async def test_a_call_taken_away_is_not_written_and_comes_back_when_its_taker_dies(
    redis_server: RedisServer, r: aioredis.Redis, mock_provider: MockProvider
) -> None:
    audio = call_audio(4.0, seed=5)
    thief_alive = asyncio.Event()
    thief_alive.set()

    async with bus_worker(mock_provider, redis_server) as worker, asyncio.TaskGroup() as tg:
        tg.create_task(publish_call(audio, redis_server.url, "stolen-1", speed=2))
        await until(lambda: has_final(r, "stolen-1"))
        ((entry_id, _),) = await entries(r, CALLS_KEY)
        tg.create_task(hold_as_thief(r, entry_id, "stolen-1", thief_alive))

        async def gone_here() -> bool:
            return worker.manager.get(CallKey("default", "stolen-1")) is None

        await until(gone_here, timeout_s=5)
        written = await transcript(r, "stolen-1")
        await asyncio.sleep(0.6)
        assert await transcript(r, "stolen-1") == written, "a worker that lost the call writes nothing more"
        assert not [e for e in written if e["type"] == "session_ended"]
        assert (await r.xpending_range(CALLS_KEY, GROUP, "-", "+", 10))[0]["consumer"] == b"thief"
        assert await r.exists(audio_key("stolen-1")) == 1, "the audio stays for the new owner"
        thief_alive.clear()  # the taker dies: the call comes back here and is finished
        events = (await wait_for_calls_to_end(r, ["stolen-1"]))["stolen-1"]
    started = [e for e in events if e["type"] == "session_started"]
    assert len(started) == 2 and started[1]["resumed"] is True
    assert final_words(events) == expected_words(audio.data, PCM8K)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["reason"] for e in events if e["type"] == "session_ended"] == ["end"]
    # the provider heard the whole call: the first session's audio, then the resumed one's,
    # which starts where finals had covered it
    first, *rest = mock_provider.streams_for("stolen-1")
    offset_s = started[1]["offset_s"]
    assert isinstance(offset_s, float)
    resumed_at = PCM8K.bytes_for(offset_s)
    assert bytes(first.received)[:resumed_at] == audio.data[:resumed_at]
    assert b"".join(bytes(s.received) for s in rest) == audio.data[resumed_at:]


async def test_audio_frames_need_not_be_20_ms(
    redis_server: RedisServer, r: aioredis.Redis, mock_provider: MockProvider
) -> None:
    audio = AudioFile(Path("x.wav"), PCM8K, speechlike(1.4, seed=9))
    async with bus_worker(mock_provider, redis_server):
        await publish_call(audio, redis_server.url, "chunky", chunk_ms=100, speed=0)
        events = (await wait_for_calls_to_end(r, ["chunky"]))["chunky"]
    assert received(mock_provider, "chunky") == audio.data
    assert final_words(events) == expected_words(audio.data, PCM8K)


async def test_while_the_provider_is_away_the_audio_waits_in_redis_and_none_is_shed(
    redis_server: RedisServer, r: aioredis.Redis
) -> None:
    provider = MockProvider(MockOptions(fail_opens=1_000_000))  # the provider is down
    audio = call_audio(8.0, seed=12)
    async with bus_worker(provider, redis_server, max_retained_s=4.0) as worker:
        await publish_call(audio, redis_server.url, "away-1", speed=0)  # all of it is in Redis now

        async def reading_stopped() -> bool:
            runner = worker.manager.get(CallKey("default", "away-1"))
            return runner is not None and runner.core.retained_bytes >= PCM8K.bytes_for(2.0)

        await until(reading_stopped)
        runner = worker.manager.get(CallKey("default", "away-1"))
        assert runner is not None
        for _ in range(10):  # it stays stopped: half of ASR_MAX_RETAINED_S, plus one read at most
            assert runner.core.retained_bytes <= PCM8K.bytes_for(3.0)
            await asyncio.sleep(0.05)
        assert runner.core.audio_s <= 3.0  # read so far; the rest waits in the stream, untrimmed
        assert len(await entries(r, audio_key("away-1"))) == len(frames(audio.data)) + 1
        provider.options.fail_opens = 0  # the provider is back
        events = (await wait_for_calls_to_end(r, ["away-1"]))["away-1"]
    assert runner.core.stats.bytes_dropped == 0
    assert not [e for e in events if e["type"] == "error"]
    assert received(provider, "away-1") == audio.data
    assert final_words(events) == expected_words(audio.data, PCM8K)


async def test_housekeeping_trims_finished_calls_and_forgets_dead_consumers(
    redis_server: RedisServer, r: aioredis.Redis, mock_provider: MockProvider
) -> None:
    async with bus_worker(mock_provider, redis_server, max_sessions=1) as worker:
        for i in range(3):
            await publish_call(call_audio(0.6, seed=30 + i), redis_server.url, f"old-{i}", speed=0)
            await wait_for_calls_to_end(r, [f"old-{i}"])
        await r.xgroup_createconsumer(CALLS_KEY, GROUP, "long-gone-worker")
        async with asyncio.TaskGroup() as tg:
            tg.create_task(publish_call(call_audio(2.0, seed=40), redis_server.url, "live", speed=1))
            await until(lambda: has_final(r, "live"))
            # a call waiting for room: announced, not yet delivered to anyone
            await r.xadd(CALLS_KEY, {"data": json.dumps({"interaction_id": "waiting", "sample_rate": 8000})})
            bus_under_test = worker.bus
            assert isinstance(bus_under_test, RedisStreamsBus)
            # A sweep by this worker, with "long gone" old enough for the consumer just made.
            housekeeping = Housekeeping(bus_under_test.consumer, dead_consumer_after_s=0.001)
            await asyncio.sleep(0.01)
            await housekeeping.sweep(r)
            left = [json.loads(f[b"data"])["interaction_id"] for _, f in await entries(r, CALLS_KEY)]
            assert left == ["live", "waiting"], "only finished calls were trimmed"
            consumers = [c["name"] for c in await r.xinfo_consumers(CALLS_KEY, GROUP)]
            assert consumers == [bus_under_test.consumer.encode()], "the dead one is gone, not this one"
        await r.xadd(audio_key("waiting"), {b"data": json.dumps({"end": True}).encode()})
        await wait_for_calls_to_end(r, ["live", "waiting"])
