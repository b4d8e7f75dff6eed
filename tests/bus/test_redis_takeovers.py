"""A call whose holders keep dying is given up, not re-claimed forever (ASR_MAX_TAKEOVERS),
and only takeovers count: a worker that lets go on purpose (shutdown, no room) hands the call
over without adding to it. Real redis-server, the bus's own scripts."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from asr_worker.bus.redis.bus import RedisStreamsBus
from asr_worker.bus.redis.calls import OwnedCall
from asr_worker.bus.redis.outbox import Finish, Outgoing
from asr_worker.bus.redis.scripts import NotHeld, Scripts, Verdict
from asr_worker.bus.redis.wire import CALLS_KEY, GROUP, audio_key, progress_key, text
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.tools.publish import publish_call
from tests.support.audio import PCM8K
from tests.support.redis_server import (
    RedisServer,
    entries,
    final_words,
    transcript,
    until,
    wait_for_calls_to_end,
)

from .conftest import call_audio, hold_as_thief
from .test_redis_streams import bus_worker, has_final

IID = "poison-1"


async def pending_entry(r: aioredis.Redis, consumer: str) -> str:
    """Announce the call and deliver its entry to `consumer`, as XREADGROUP does."""
    await r.xgroup_create(CALLS_KEY, GROUP, id="0", mkstream=True)
    entry_id = await r.xadd(CALLS_KEY, {"data": b"{}"})
    await r.xreadgroup(GROUP, consumer, {CALLS_KEY: ">"}, count=1)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def moves_to(r: aioredis.Redis, entry_id: str, consumer: str) -> None:
    """The entry goes to `consumer`, as XAUTOCLAIM gives a dead or departed holder's entry."""
    await r.xclaim(CALLS_KEY, GROUP, consumer, 0, [entry_id], justid=True)


async def test_start_counts_takeovers_and_not_hand_overs(
    redis_server: RedisServer, r: aioredis.Redis
) -> None:
    scripts = Scripts(r)
    entry_id = await pending_entry(r, "a")
    assert (await scripts.start(IID, "a", entry_id, 1)).verdict is Verdict.NEW
    await r.hset(progress_key(IID), "offset", "16000")  # a's progress
    assert await scripts.hand_back("b", IID, entry_id, idle_ms=0) == 0, "only the holder hands back"
    assert await scripts.hand_back("a", IID, entry_id, idle_ms=0) == 1  # shutdown: handed over
    await moves_to(r, entry_id, "b")
    start = await scripts.start(IID, "b", entry_id, 1)
    assert (start.verdict, start.offset, start.takeovers) == (Verdict.RESUME, 16000, 0)
    await moves_to(r, entry_id, "c")  # b died holding it
    start = await scripts.start(IID, "c", entry_id, 1)
    assert (start.verdict, start.takeovers) == (Verdict.RESUME, 1)
    await moves_to(r, entry_id, "d")  # so did c: past the most (1)
    start = await scripts.start(IID, "d", entry_id, 1)
    assert (start.verdict, start.takeovers) == (Verdict.POISON, 2)
    # Every start by a worker that did not get the call handed to it counts again.
    start = await scripts.start(IID, "d", entry_id, 5)
    assert (start.verdict, start.takeovers) == (Verdict.RESUME, 3)


async def test_an_ended_call_whose_acknowledgement_was_lost_is_done_for_its_next_holder(
    redis_server: RedisServer, r: aioredis.Redis
) -> None:
    """The end is written by a script on the call's keys, the acknowledgement is a command on
    asr:calls after it: a worker that stops between the two leaves the entry pending, and
    whoever is handed it next must acknowledge it, not serve the call again."""
    scripts = Scripts(r)
    entry_id = await pending_entry(r, "a")
    assert (await scripts.start(IID, "a", entry_id, 3)).verdict is Verdict.NEW
    call = OwnedCall(IID, "default", PCM8K, entry_id, "0-0")
    end = Outgoing(IID, 1, True, '{"type":"session_ended","seq":1}', call, Finish.ACK)
    assert await scripts.write_events("a", [[end]], retry=False) == [1]
    await moves_to(r, entry_id, "b")  # a stopped before acknowledging
    assert (await scripts.start(IID, "b", entry_id, 3)).verdict is Verdict.DONE


async def test_a_second_announcement_is_a_duplicate_while_the_first_is_held_then_a_new_call(
    redis_server: RedisServer, r: aioredis.Redis
) -> None:
    scripts = Scripts(r)
    first = await pending_entry(r, "a")
    assert (await scripts.start(IID, "a", first, 3)).verdict is Verdict.NEW
    second = text(await r.xadd(CALLS_KEY, {"data": b"{}"}))
    await r.xreadgroup(GROUP, "b", {CALLS_KEY: ">"}, count=1)
    start = await scripts.start(IID, "b", second, 3)
    assert (start.verdict, start.live_entry) == (Verdict.OTHER, first)
    assert await scripts.holder(first) == "a"  # held: the second is a duplicate (intake acks it)
    await r.xack(CALLS_KEY, GROUP, first)  # a stopped before writing the end, and it was acked
    assert await scripts.holder(first) is None
    start = await scripts.start(IID, "b", second, 3, replaces=first)
    assert start.verdict is Verdict.NEW  # a new call with the old id
    assert await r.hget(progress_key(IID), "owner") == b"b"


async def test_only_the_owner_writes_saves_and_refreshes(
    redis_server: RedisServer, r: aioredis.Redis
) -> None:
    scripts = Scripts(r)
    entry_id = await pending_entry(r, "a")
    await scripts.start(IID, "a", entry_id, 3)
    call = OwnedCall(IID, "default", PCM8K, entry_id, "0-0")
    event = Outgoing(IID, 1, True, '{"type":"session_started","seq":1}', call, Finish.NONE)
    await moves_to(r, entry_id, "b")
    assert (await scripts.start(IID, "b", entry_id, 3)).verdict is Verdict.RESUME
    assert await scripts.write_events("a", [[event]], retry=False) == [-1]
    assert await scripts.refresh("a", [(IID, entry_id)]) == {entry_id: NotHeld.TAKEN}
    assert await scripts.refresh("b", [(IID, entry_id)]) == {}
    assert await scripts.write_events("b", [[event]], retry=False) == [1]
    await r.xack(CALLS_KEY, GROUP, entry_id)
    assert await scripts.refresh("b", [(IID, entry_id)]) == {entry_id: NotHeld.GONE}


async def test_a_call_whose_holders_keep_vanishing_is_given_up_and_the_worker_goes_on(
    redis_server: RedisServer, r: aioredis.Redis, mock_provider: MockProvider
) -> None:
    """Twice another consumer takes the call and vanishes without handing it back; with
    ASR_MAX_TAKEOVERS=1 the second return is one too many."""
    audio = call_audio(30.0, seed=11)
    thief_alive = asyncio.Event()

    async with bus_worker(mock_provider, redis_server, max_takeovers=1) as worker:
        producer = asyncio.create_task(publish_call(audio, redis_server.url, IID, speed=1))
        await until(lambda: has_final(r, IID))
        ((entry_id, _),) = await entries(r, CALLS_KEY)
        for holding in (1, 2):

            async def served_here(holding: int = holding) -> bool:
                """Held here, and its start written: a thief quicker than that write would make
                this holding leave no trace (its events are refused once it has lost the call)."""
                starts = [e for e in await transcript(r, IID) if e["type"] == "session_started"]
                return worker.manager.get(CallKey("default", IID)) is not None and len(starts) == holding

            await until(served_here, timeout_s=10)  # the call is (back) here
            thief_alive.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(hold_as_thief(r, entry_id, IID, thief_alive))

                async def gone_here() -> bool:
                    return worker.manager.get(CallKey("default", IID)) is None

                await until(gone_here, timeout_s=5)
                thief_alive.clear()  # it dies holding the call
        events = (await wait_for_calls_to_end(r, [IID], timeout_s=15))[IID]
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)

        started = [e for e in events if e["type"] == "session_started"]
        ended = [e for e in events if e["type"] == "session_ended"]
        errors = [e for e in events if e["type"] == "error"]
        assert len(started) == 3 and started[1]["resumed"] is True  # back once, then given up
        assert [e["reason"] for e in ended] == ["call_abandoned"]
        assert [e["code"] for e in errors] == ["call_abandoned"]
        assert "ASR_MAX_TAKEOVERS=1" in str(errors[0]["message"])
        assert events[-2:] == [errors[0], ended[0]]  # nothing of the call's audio was read again
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert await r.xpending(CALLS_KEY, GROUP) == {
            "pending": 0,
            "min": None,
            "max": None,
            "consumers": [],
        }, "acknowledged: no worker takes it again"
        assert await r.hget(progress_key(IID), "ended") == b"1"  # a worker handed it finds it done
        # Its audio stays a day for whoever investigates, and expires even if a producer goes on.
        assert 0 < await r.ttl(audio_key(IID)) <= 86_400
        assert isinstance(worker.bus, RedisStreamsBus) and worker.bus.counters.calls_abandoned == 1
        assert worker.manager.get(CallKey("default", IID)) is None

        # The worker goes on: the next call is served whole.
        follow = call_audio(2.0, seed=12)
        await r.delete(audio_key("after-1"))
        await publish_call(follow, redis_server.url, "after-1", speed=0)
        after = (await wait_for_calls_to_end(r, ["after-1"], timeout_s=15))["after-1"]
        assert final_words(after) == expected_words(follow.data, PCM8K)
        assert [e["reason"] for e in after if e["type"] == "session_ended"] == ["end"]
