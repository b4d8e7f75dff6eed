"""`/v1/exotel` end to end: real sockets, a real worker, the mock provider, watched over SSE."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, silence, speechlike
from tests.support.telephony import (
    exotel_media,
    exotel_start,
    exotel_stop,
    fixture_text,
    open_sse,
    wait_until,
    ws_url,
)


async def send_audio(
    ws: aiohttp.ClientWebSocketResponse, audio: bytes, fmt: AudioFormat, first_chunk: int = 1
) -> None:
    """Exotel's pattern: about 100 ms of 16-bit PCM a message."""
    for i, chunk in enumerate(frames(audio, fmt, ms=100)):
        await ws.send_str(exotel_media(first_chunk + i, 100 * (first_chunk + i - 1), chunk))


async def closed_without_a_word(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), f"worker sent {msg.data!r}"
    return ws.close_code


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_an_exotel_call_end_to_end(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider, rate: int
) -> None:
    fmt = AudioFormat(Encoding.LINEAR16, rate, 1)
    call = f"exo-{rate}"
    watcher = await open_sse(http, worker, f"/v1/calls/{call}/events")
    audio = speechlike(1.2, fmt, seed=41) + silence(0.4, fmt) + speechlike(1.0, fmt, seed=42)
    ws = await http.ws_connect(ws_url(worker, "/v1/exotel"))
    await ws.send_str(fixture_text("exotel", "connected"))
    await ws.send_str(exotel_start(sample_rate=rate, interaction_id=call))
    await send_audio(ws, audio, fmt)
    for name in ("dtmf", "mark", "clear"):
        await ws.send_str(fixture_text("exotel", name))
    await ws.send_str(exotel_stop())
    assert await closed_without_a_word(ws) == 1000
    await watcher.rest()

    started = watcher.of("session_started")[0]
    assert (started["encoding"], started["sample_rate"], started["channels"]) == ("linear16", rate, 1)
    assert watcher.of("session_ended")[0]["reason"] == "stop" and not watcher.of("error")
    (dtmf,) = watcher.of("dtmf")
    assert (dtmf["digit"], dtmf["channel"], dtmf["at"]) == ("5", 0, 2.6)
    assert mock_provider.opens == 1
    assert bytes(mock_provider.streams[0].received) == audio  # linear16 byte for byte
    finals = [w for e in watcher.of("transcript") if e["is_final"] for w in str(e["text"]).split()]
    assert finals == expected_words(audio, fmt)


async def test_the_documented_exotel_call_uses_its_custom_parameter_or_call_sid(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    ws = await http.ws_connect(ws_url(worker, "/v1/exotel"))
    for name in ("connected", "start", "media", "stop"):
        await ws.send_str(fixture_text("exotel", name))
    assert await closed_without_a_word(ws) == 1000
    assert [s.request.interaction_id for s in mock_provider.streams] == ["exotel-call-1"]
    plain = await http.ws_connect(ws_url(worker, "/v1/exotel"))
    await plain.send_str(exotel_start(call_sid="exo-sid-77"))
    await plain.send_str(exotel_media(1, 0, speechlike(0.1)))
    await plain.send_str(exotel_stop())
    assert await closed_without_a_word(plain) == 1000
    assert [s.request.interaction_id for s in mock_provider.streams] == ["exotel-call-1", "exo-sid-77"]
    # The applet's URL may carry it instead (`?interaction_id=`); a custom parameter still wins.
    for query, start, expected in (
        ("?interaction_id=from-url&tenant_id=acme", exotel_start(call_sid="exo-sid-78"), "from-url"),
        (
            "?interaction_id=from-url-2",
            exotel_start(call_sid="exo-sid-79", interaction_id="from-param"),
            "from-param",
        ),
    ):
        by_url = await http.ws_connect(ws_url(worker, "/v1/exotel" + query))
        await by_url.send_str(start)
        await by_url.send_str(exotel_media(1, 0, speechlike(0.1)))
        await by_url.send_str(exotel_stop())
        assert await closed_without_a_word(by_url) == 1000
        assert mock_provider.streams[-1].request.interaction_id == expected
    assert mock_provider.streams[-2].request.tenant_id == "acme"


async def test_a_dropped_exotel_socket_resumes_on_reconnect_with_one_provider_connection(
    http: aiohttp.ClientSession,
) -> None:
    fmt = AudioFormat(Encoding.LINEAR16, 8000, 1)
    provider = MockProvider()
    async with running_worker(provider, session_grace_s=5) as worker:
        watcher = await open_sse(http, worker, "/v1/calls/exo-resume/events")
        part1, part2 = speechlike(1.0, fmt, seed=51), speechlike(1.0, fmt, seed=52)
        first = await http.ws_connect(ws_url(worker, "/v1/exotel"))
        await first.send_str(exotel_start(interaction_id="exo-resume"))
        await send_audio(first, part1, fmt)
        await watcher.until("transcript")
        await first.close()
        runner = worker.manager.get(CallKey("default", "exo-resume"))
        assert runner is not None
        await wait_until(lambda: runner.core.source_count == 0)
        second = await http.ws_connect(ws_url(worker, "/v1/exotel"))
        await second.send_str(exotel_start(interaction_id="exo-resume"))
        await send_audio(second, part2, fmt)
        await second.send_str(exotel_stop())
        await closed_without_a_word(second)
        await watcher.rest()
    assert provider.opens == 1
    assert bytes(provider.streams[0].received) == part1 + part2
    ended = watcher.of("session_ended")[0]
    assert ended["reason"] == "stop" and ended["audio_s"] == 2.0


async def test_bad_exotel_audio_is_an_error_event_and_the_call_goes_on(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    fmt = AudioFormat(Encoding.LINEAR16, 8000, 1)
    watcher = await open_sse(http, worker, "/v1/calls/exo-bad/events")
    audio = speechlike(1.0, fmt, seed=61)
    ws = await http.ws_connect(ws_url(worker, "/v1/exotel"))
    await ws.send_str(exotel_start(interaction_id="exo-bad"))
    await send_audio(ws, audio[:8000], fmt)
    await ws.send_str(exotel_media(50, 5000, b"\x01\x02\x03"))  # a sample and a half
    await ws.send_str(exotel_media(51, 5100, b"").replace('"payload": ""', '"payload": "not base64!"'))
    await ws.send_str('{"event": "start"}')
    await send_audio(ws, audio[8000:], fmt, first_chunk=6)
    await ws.send_str(exotel_stop())
    await closed_without_a_word(ws)
    await watcher.rest()
    assert [e["code"] for e in watcher.of("error")] == ["bad_audio", "bad_audio", "bad_message"]
    assert bytes(mock_provider.streams[0].received) == audio
    assert watcher.of("session_ended")[0]["reason"] == "stop"


async def test_an_unsupported_exotel_format_is_refused_with_a_reason(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(ws_url(worker, "/v1/exotel"))
    await ws.send_str(exotel_start(sample_rate=44100))
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert ws.close_code == 1008 and "44100" in str(msg.extra)
    assert worker.manager.sessions == []


async def test_a_plain_http_request_says_upgrade_required(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    for path in ("/v1/exotel", "/v1/twilio"):
        async with http.get(f"http://127.0.0.1:{worker.port}{path}") as response:
            assert response.status == 426


async def test_a_call_beyond_capacity_is_closed_with_try_again_later(http: aiohttp.ClientSession) -> None:
    async with running_worker(MockProvider(), max_sessions=1) as worker:
        first = await http.ws_connect(ws_url(worker, "/v1/exotel"))
        await first.send_str(exotel_start(interaction_id="one"))
        await wait_until(lambda: worker.manager.get(CallKey("default", "one")) is not None)
        second = await http.ws_connect(ws_url(worker, "/v1/exotel"))
        await second.send_str(exotel_start(interaction_id="two"))
        msg = await asyncio.wait_for(second.receive(), 5)
        assert second.close_code == 1013 and "limit of 1 calls" in str(msg.extra)
        await first.send_str(exotel_stop())
        await closed_without_a_word(first)
