"""A call's keyterms in its announcement on `asr:calls` (`"keyterms": [...]`) reach every
provider stream the call opens, a takeover's too; a bad list is a bad announcement. Real
redis-server, a worker in this process (the mock provider keeps each stream's request), and
`asr-worker publish --keyterm` as a user runs it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from asr_worker.bus.redis.wire import CALLS_KEY, GROUP, parse_announcement, transcript_key
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.tools.audio_files import write_wav
from asr_worker.tools.publish import publish_call
from tests.support.audio import PCM8K
from tests.support.cli import run_cli
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

TERMS = ("Acme  Cloud", "Zorblax", " order ZX-1234 ", "Acme Cloud", "")
EXPECTED = ("Acme Cloud", "Zorblax", "order ZX-1234")


def announcement(iid: str, **extra: object) -> bytes:
    body = {"interaction_id": iid, "encoding": "pcm16", "sample_rate": 8000, **extra}
    return json.dumps(body).encode()


BAD = [
    (7, "keyterms must be a list of strings or a comma-separated string"),
    (["Zorblax", 7], "keyterms must be a list of strings or a comma-separated string"),
    (["ok", "x" * 101], "keyterms[1] must be at most 100 characters"),
    ([f"t{n}" for n in range(101)], "keyterms: at most 100 terms"),
]


def test_an_announcements_keyterms_are_checked_with_the_keyterm_limits() -> None:
    parsed, _, problem = parse_announcement(announcement("k-1", keyterms=list(TERMS)))
    assert parsed is not None and parsed.options.keyterms == EXPECTED and not problem
    parsed, _, _ = parse_announcement(announcement("k-2"))
    assert parsed is not None and parsed.options.keyterms == ()
    parsed, _, _ = parse_announcement(announcement("k-3", keyterms=None))
    assert parsed is not None and parsed.options.keyterms == ()
    parsed, _, _ = parse_announcement(announcement("k-5", keyterms="Zorblax, Acme Cloud"))
    assert parsed is not None and parsed.options.keyterms == ("Zorblax", "Acme Cloud")
    for terms, reason in BAD:
        parsed, iid, problem = parse_announcement(announcement("k-4", keyterms=terms))
        assert parsed is None and iid == "k-4" and problem == reason


async def test_a_bus_calls_keyterms_reach_the_provider(
    redis_server: RedisServer, r: aioredis.Redis, mock_provider: MockProvider
) -> None:
    audio = call_audio(1.2, seed=31)
    async with bus_worker(mock_provider, redis_server):
        await publish_call(audio, redis_server.url, "bus-terms", keyterms=TERMS, speed=0)
        await wait_for_calls_to_end(r, ["bus-terms"])
    [stream] = mock_provider.streams_for("bus-terms")
    assert stream.request.options.keyterms == EXPECTED


@pytest.mark.parametrize(("terms", "reason"), BAD)
async def test_a_bad_keyterms_list_is_a_bad_announcement(
    redis_server: RedisServer, r: aioredis.Redis, mock_provider: MockProvider, terms: object, reason: str
) -> None:
    async with bus_worker(mock_provider, redis_server) as worker:
        await r.xadd(CALLS_KEY, {"data": announcement("bad-terms", keyterms=terms)})

        async def handled() -> bool:
            pending = (await r.xpending(CALLS_KEY, GROUP))["pending"]
            return bool(await r.exists(transcript_key("bad-terms"))) and pending == 0

        await until(handled)
        (event,) = await transcript(r, "bad-terms")
        assert (event["type"], event["code"], event["message"]) == ("error", "bad_call", reason)
        assert worker.manager.sessions == [] and mock_provider.opens == 0


async def test_a_call_continued_after_a_takeover_keeps_its_keyterms(
    redis_server: RedisServer, r: aioredis.Redis, mock_provider: MockProvider
) -> None:
    """Another worker takes the call away and dies; this one continues it from its progress,
    reading the announcement again: the resumed stream asks for the same terms."""
    audio = call_audio(4.0, seed=33)
    thief_alive = asyncio.Event()
    thief_alive.set()

    async with bus_worker(mock_provider, redis_server) as worker, asyncio.TaskGroup() as tg:
        tg.create_task(publish_call(audio, redis_server.url, "taken-terms", keyterms=TERMS, speed=2))
        await until(lambda: has_final(r, "taken-terms"))
        ((entry_id, _),) = await entries(r, CALLS_KEY)
        tg.create_task(hold_as_thief(r, entry_id, "taken-terms", thief_alive))

        async def gone_here() -> bool:
            return worker.manager.get(CallKey("default", "taken-terms")) is None

        await until(gone_here, timeout_s=5)
        thief_alive.clear()  # the taker dies: the call comes back here
        events = (await wait_for_calls_to_end(r, ["taken-terms"]))["taken-terms"]
    started = [e for e in events if e["type"] == "session_started"]
    assert len(started) == 2 and started[1]["resumed"] is True
    assert final_words(events) == expected_words(audio.data, PCM8K)
    streams = mock_provider.streams_for("taken-terms")
    assert len(streams) >= 2 and all(s.request.options.keyterms == EXPECTED for s in streams)


async def test_publish_keyterm_options_go_into_the_announcement(
    redis_server: RedisServer, r: aioredis.Redis, tmp_path: Path
) -> None:
    wav = tmp_path / "a.wav"
    write_wav(wav, b"\x00\x00" * 800, PCM8K)
    args = ["publish", str(wav), "--interaction-id", "cli-terms", "--redis-url", redis_server.url]
    terms = ["--keyterm", "Zorblax", "--keyterm", "Acme  Cloud", "--speed", "0"]
    result = await asyncio.to_thread(run_cli, *args, *terms)
    assert result.returncode == 0, result.stderr
    [(_, fields)] = await entries(r, CALLS_KEY)
    assert json.loads(fields[b"data"])["keyterms"] == ["Zorblax", "Acme Cloud"]
    result = await asyncio.to_thread(run_cli, *args, "--keyterm", "x" * 101)
    assert result.returncode == 2
    assert "--keyterm[0] must be at most 100 characters" in result.stderr
