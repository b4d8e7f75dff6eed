"""Limits refuse clearly, count what they refused, and disturb nothing else."""

from __future__ import annotations

import json

import aiohttp

from asr_worker.providers.mock import MockOptions, MockProvider, expected_words
from tests.conftest import base_url, running_worker
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.client import connect


async def _metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(f"{url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_a_flooding_call_loses_the_excess_with_one_error_a_second(http: aiohttp.ClientSession) -> None:
    async with running_worker(MockProvider(), max_frames_per_s=50) as worker:
        call = await connect(http, worker, "flood")
        await call.send_frames(frames(speechlike(4.0)))  # 200 messages at once
        await call.end()
        await call.collect()
        errors = call.of("error")
        assert [e["code"] for e in errors] == ["rate_limited"]
        assert "50 audio messages a second" in str(errors[0]["message"])
        dropped = await _metric(http, base_url(worker), "asr_audio_frames_rate_limited_total")
        assert dropped == 150
        assert call.of("session_ended")[0]["audio_s"] == 1.0


async def test_sources_beyond_the_limit_are_refused_and_the_call_goes_on(http: aiohttp.ClientSession) -> None:
    async with running_worker(MockProvider(), max_sources_per_call=2) as worker:
        first = await connect(http, worker, "crowded")
        second = await connect(http, worker, "crowded")
        third = await connect(http, worker, "crowded")
        refusal = await third.next_event("error")
        assert refusal["code"] == "too_many_sources"
        await third.ws.receive()
        assert third.ws.close_code == 1013
        audio = speechlike(0.6)
        await first.send_frames(frames(audio))
        await first.end()
        await first.collect()
        await second.collect()
        assert first.final_words() == expected_words(audio, PCM8K)
        assert second.of("session_ended")


async def test_an_oversized_message_closes_that_socket_with_a_reason_only(
    http: aiohttp.ClientSession,
) -> None:
    async with running_worker(MockProvider(), max_message_bytes=4096) as worker:
        big = await connect(http, worker, "big")
        await big.next_event("session_started")
        steady = await connect(http, worker, "big")
        await big.ws.send_bytes(b"\x00\x01" * 4096)
        await big.collect()
        assert big.close_code == 1009
        error = await steady.next_event("error")
        assert error["code"] == "too_large"
        audio = speechlike(0.6)
        await steady.send_frames(frames(audio))
        await steady.end()
        await steady.collect()
        assert steady.final_words() == expected_words(audio, PCM8K)


async def test_new_calls_are_refused_while_too_much_audio_is_held(http: aiohttp.ClientSession) -> None:
    stuck = MockProvider(MockOptions(open_delay_ms=60_000))  # the provider never answers
    async with running_worker(stuck, max_buffered_audio_s=1.0, finalize_timeout_s=0.2) as worker:
        held = await connect(http, worker, "held")
        await held.send_frames(frames(speechlike(1.5)))
        await held.next_event("session_started")
        async with http.get(f"{base_url(worker)}/ready") as response:
            assert response.status == 503 and (await response.json())["reason"] == "overloaded"
        refused = await connect(http, worker, "next")
        error = await refused.next_event("error")
        assert error["code"] == "overloaded"
        await refused.ws.receive()
        assert refused.ws.close_code == 1013
        await held.ws.send_str(json.dumps({"type": "end"}))
        await held.collect()
        assert [e["code"] for e in held.of("error")] == ["finalize_timeout"]
