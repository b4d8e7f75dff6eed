"""`/v1/twilio` end to end: real sockets, a real worker, the mock provider, watched over SSE."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.events import SessionEnded, SessionStarted
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, silence, speechlike
from tests.support.telephony import (
    fixture_text,
    open_sse,
    twilio_media,
    twilio_start,
    twilio_stop,
    wait_until,
    ws_url,
)

TRACK = AudioFormat(Encoding.MULAW, 8000, 1)
STEREO = AudioFormat(Encoding.MULAW, 8000, 2)


def interleave(left: bytes, right: bytes) -> bytes:
    out = bytearray(2 * len(left))
    out[0::2], out[1::2] = left, right
    return bytes(out)


async def send_both_tracks(
    ws: aiohttp.ClientWebSocketResponse, inbound: bytes, outbound: bytes, t0_ms: int = 0
) -> None:
    """Twilio's pattern: a 20 ms chunk of each track in turn, timestamps from the stream start."""
    for i, (a, b) in enumerate(zip(frames(inbound, TRACK), frames(outbound, TRACK), strict=True)):
        await ws.send_str(twilio_media("inbound", i + 1, t0_ms + 20 * i, a))
        await ws.send_str(twilio_media("outbound", i + 1, t0_ms + 20 * i, b))


async def assert_nothing_sent_back(ws: aiohttp.ClientWebSocketResponse, code: int = 1000) -> None:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), (
        f"worker sent {msg.type} {msg.data!r}"
    )
    assert ws.close_code == code


async def test_a_both_tracks_call_is_one_two_channel_session_end_to_end(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    watcher = await open_sse(http, worker, "/v1/calls/twilio-call-1/events")
    inbound = speechlike(1.6, TRACK, seed=11) + silence(0.4, TRACK) + speechlike(0.6, TRACK, seed=12)
    outbound = silence(0.8, TRACK) + speechlike(1.8, TRACK, seed=13)
    ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await ws.send_str(fixture_text("twilio", "connected"))
    await ws.send_str(fixture_text("twilio", "start"))  # interaction_id twilio-call-1, tenant acme
    await send_both_tracks(ws, inbound, outbound)
    await ws.send_str(fixture_text("twilio", "mark"))
    await ws.send_str(fixture_text("twilio", "dtmf"))
    await ws.send_str(fixture_text("twilio", "stop"))
    await assert_nothing_sent_back(ws)
    await watcher.rest()

    started = watcher.of("session_started")[0]
    assert started["tenant_id"] == "acme"
    assert (started["encoding"], started["sample_rate"], started["channels"]) == ("mulaw", 8000, 2)
    assert watcher.of("session_ended")[0]["reason"] == "stop" and not watcher.of("error")
    (dtmf,) = watcher.of("dtmf")  # the fixture's key 1 on the inbound track, after all the audio
    assert (dtmf["digit"], dtmf["channel"], dtmf["at"]) == ("1", 0, 2.6)
    assert mock_provider.opens == 1
    stream = mock_provider.streams[0]
    assert stream.request.fmt == STEREO
    call_audio = interleave(inbound, outbound)
    assert bytes(stream.received) == call_audio  # mu-law end to end, tracks as channels 0 and 1
    finals = [w for e in watcher.of("transcript") if e["is_final"] for w in str(e["text"]).split()]
    assert finals == expected_words(call_audio, STEREO)
    assert [e.id for e in watcher.events] == [str(i) for i in range(1, len(watcher.events) + 1)]
    async with http.get(f"http://127.0.0.1:{worker.port}/metrics") as response:
        metrics = await response.text()
    media_messages = 2 * len(frames(inbound, TRACK))
    assert f'asr_telephony_messages_total{{event="media",platform="twilio"}} {media_messages}.0' in metrics
    assert 'asr_telephony_messages_total{event="dtmf",platform="twilio"} 1.0' in metrics
    assert 'asr_telephony_silence_filled_seconds_total{platform="twilio"} 0.0' in metrics  # aligned tracks
    assert 'asr_telephony_interleave_pending_seconds{platform="twilio"} 0.0' in metrics


async def test_the_call_sid_is_the_id_when_no_interaction_id_is_given_and_one_track_is_mono(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    call_sid = "CAfeedfacefeedfacefeedfacefeedface"
    watcher = worker.hub.subscribe(CallKey("default", call_sid))
    audio = speechlike(1.0, TRACK, seed=3)
    ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await ws.send_str(twilio_start(call_sid, tracks=("inbound",)))
    for i, chunk in enumerate(frames(audio, TRACK)):
        await ws.send_str(twilio_media("inbound", i + 1, 20 * i, chunk))
    await ws.send_str(twilio_stop())
    await assert_nothing_sent_back(ws)
    events = []
    async with asyncio.timeout(10):
        async for event in watcher:
            events.append(event)
            if isinstance(event, SessionEnded):
                break
    assert isinstance(events[0], SessionStarted) and events[0].channels == 1
    assert isinstance(events[-1], SessionEnded) and events[-1].reason == "stop"
    assert bytes(mock_provider.streams_for(call_sid)[0].received) == audio


async def test_a_dropped_socket_waits_in_grace_and_a_reconnect_resumes_on_the_same_provider_connection(
    http: aiohttp.ClientSession,
) -> None:
    provider = MockProvider()
    async with running_worker(provider, session_grace_s=5) as worker:
        watcher = await open_sse(http, worker, "/v1/calls/resumed/events")
        part1_in, part1_out = speechlike(1.0, TRACK, seed=21), speechlike(1.0, TRACK, seed=22)
        part2_in, part2_out = speechlike(1.0, TRACK, seed=23), speechlike(1.0, TRACK, seed=24)
        first = await http.ws_connect(ws_url(worker, "/v1/twilio"))
        await first.send_str(twilio_start(interaction_id="resumed"))
        await send_both_tracks(first, part1_in, part1_out)
        await watcher.until("transcript")
        await first.close()  # the platform's socket drops: no stop
        runner = worker.manager.get(CallKey("default", "resumed"))
        assert runner is not None
        await wait_until(lambda: runner.core.source_count == 0)
        assert runner.core.phase == "active"  # waiting in its grace period

        second = await http.ws_connect(ws_url(worker, "/v1/twilio"))
        await second.send_str(twilio_start(interaction_id="resumed", stream_sid="MZ2"))
        await send_both_tracks(second, part2_in, part2_out)  # a new stream: timestamps from 0 again
        await second.send_str(twilio_stop())
        await assert_nothing_sent_back(second)
        await watcher.rest()
    assert provider.opens == 1 and provider.open_attempts == 1
    audio = interleave(part1_in + part2_in, part1_out + part2_out)
    assert bytes(provider.streams[0].received) == audio
    ended = watcher.of("session_ended")[0]
    assert ended["reason"] == "stop" and ended["audio_s"] == 2.0 and ended["reconnects"] == 0
    finals = [w for e in watcher.of("transcript") if e["is_final"] for w in str(e["text"]).split()]
    assert finals == expected_words(audio, STEREO)


async def test_a_dropped_socket_that_never_returns_finalizes_after_the_grace_period(
    http: aiohttp.ClientSession,
) -> None:
    provider = MockProvider()
    async with running_worker(provider, session_grace_s=0.3) as worker:
        watcher = await open_sse(http, worker, "/v1/calls/gone/events")
        ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
        await ws.send_str(twilio_start(interaction_id="gone"))
        inbound = speechlike(0.5, TRACK, seed=5)
        for i, chunk in enumerate(frames(inbound, TRACK)):  # the outbound track never comes
            await ws.send_str(twilio_media("inbound", i + 1, 20 * i, chunk))
        await ws.close()
        await watcher.rest()
    assert watcher.of("session_ended")[0]["reason"] == "grace_timeout"
    # the lagging outbound track was padded with mu-law silence; no inbound sample was lost
    assert bytes(provider.streams[0].received)[0::2] == inbound
    assert set(bytes(provider.streams[0].received)[1::2]) == {0xFF}
    assert provider.streams[0].controls[-2:] == ["Finalize", "CloseStream"]


# --- hostile input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (twilio_media("inbound", 1, 0, b"\xff" * 160), "`media` before `start`"),
        ("{not json", "not JSON"),
        (json.dumps({"event": "mark", "mark": {"name": "x"}}), "`mark` before `start`"),
        (twilio_start().replace("audio/x-mulaw", "audio/x-opus"), "is not audio/x-mulaw"),
        (twilio_start(interaction_id="bad id!"), "interaction_id must be"),
        (twilio_start().replace('"callSid"', '"callSID"'), "start needs a string `callSid`"),
    ],
)
async def test_bad_input_before_start_is_logged_and_closed_with_a_reason(
    worker: Worker, http: aiohttp.ClientSession, first: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.telephony")
    ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    await ws.send_str(first)
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1008 and reason in str(msg.extra)
    assert worker.manager.sessions == []
    refusals = [r for r in caplog.records if r.getMessage() == "telephony stream refused"]
    assert len(refusals) == 1


async def test_bad_input_during_a_call_becomes_error_events_and_nothing_else_is_disturbed(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    watcher = await open_sse(http, worker, "/v1/calls/messy/events")
    bystander_watch = await open_sse(http, worker, "/v1/calls/bystander/events")
    bystander = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await bystander.send_str(twilio_start(interaction_id="bystander", tracks=("inbound",)))

    inbound, outbound = speechlike(1.0, TRACK, seed=31), speechlike(1.0, TRACK, seed=32)
    ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await ws.send_str(twilio_start(interaction_id="messy"))
    await send_both_tracks(ws, inbound[:4000], outbound[:4000])
    bad = [
        twilio_media("inbound", 99, 500, b"").replace('"payload": ""', '"payload": "@@@"'),
        json.dumps({"event": "media", "media": {"track": "sideways", "payload": ""}}),
        twilio_start(interaction_id="messy"),  # start twice
        json.dumps({"event": "hangup"}),
        "[" * 70_000,  # over the parser's limit, under the socket's
        "{not json",
    ]
    for text in bad:
        await ws.send_str(text)
    await ws.send_bytes(b"\x00\x01")
    await send_both_tracks(ws, inbound[4000:], outbound[4000:], t0_ms=500)
    await ws.send_str(twilio_stop())
    await assert_nothing_sent_back(ws)
    await watcher.rest()

    errors = watcher.of("error")
    assert [e["code"] for e in errors] == [
        "bad_audio",
        "bad_message",
        "bad_message",
        "unknown_message",
        "too_large",
        "bad_message",
        "bad_message",
    ]
    assert "not valid base64" in str(errors[0]["message"])
    assert "a second `start`" in str(errors[2]["message"])
    assert "binary messages" in str(errors[6]["message"])
    audio = interleave(inbound, outbound)
    assert bytes(mock_provider.streams_for("messy")[0].received) == audio
    finals = [w for e in watcher.of("transcript") if e["is_final"] for w in str(e["text"]).split()]
    assert finals == expected_words(audio, STEREO)

    await bystander.send_str(twilio_media("inbound", 1, 0, speechlike(0.4, TRACK)))
    await bystander.send_str(twilio_stop())
    await assert_nothing_sent_back(bystander)
    await bystander_watch.rest()
    assert not bystander_watch.of("error") and bystander_watch.of("session_ended")[0]["reason"] == "stop"


async def test_a_message_over_the_socket_limit_drops_the_socket_and_the_call_waits_for_a_reconnect(
    http: aiohttp.ClientSession,
) -> None:
    provider = MockProvider()
    async with running_worker(provider, session_grace_s=0.5) as worker:
        watcher = await open_sse(http, worker, "/v1/calls/huge/events")
        ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
        await ws.send_str(twilio_start(interaction_id="huge", tracks=("inbound",)))
        await ws.send_str(twilio_media("inbound", 1, 0, speechlike(0.4, TRACK)))
        await ws.send_str("x" * (1 << 20))
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 1009
        await watcher.rest()
    (error,) = watcher.of("error")
    assert error["code"] == "too_large" and "exceeds limit" in str(error["message"])
    assert watcher.of("session_ended")[0]["reason"] == "grace_timeout"


async def test_a_reconnect_in_another_format_is_refused_and_the_call_goes_on(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    first = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await first.send_str(twilio_start(interaction_id="pinned"))
    await first.send_str(twilio_media("inbound", 1, 0, b"\xff" * 160))
    other = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await other.send_str(twilio_start(interaction_id="pinned", tracks=("inbound",)))
    msg = await asyncio.wait_for(other.receive(), 5)
    assert other.close_code == 1008 and "mulaw 8000 Hz x2" in str(msg.extra)
    runner = worker.manager.get(CallKey("default", "pinned"))
    assert runner is not None and runner.core.phase == "active" and runner.core.source_count == 1
    await first.send_str(twilio_stop())
    await assert_nothing_sent_back(first)


async def test_a_call_ended_by_shutdown_closes_its_socket_instead_of_refusing_each_message(
    http: aiohttp.ClientSession,
) -> None:
    async with running_worker(MockProvider()) as worker:
        watcher = await open_sse(http, worker, "/v1/calls/draining-call/events")
        ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
        await ws.send_str(twilio_start(interaction_id="draining-call", tracks=("inbound",)))
        for i, chunk in enumerate(frames(speechlike(0.4, TRACK), TRACK)):
            await ws.send_str(twilio_media("inbound", i + 1, 20 * i, chunk))
        await watcher.until("transcript")
        await worker.manager.drain()  # what SIGTERM does first
        await ws.send_str(twilio_media("inbound", 99, 2000, b"\xff" * 160))  # Twilio keeps streaming
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 1001
        await watcher.rest()
    assert watcher.of("session_ended")[0]["reason"] == "shutdown" and not watcher.of("error")


async def test_an_outbound_only_stream_is_channel_1_with_a_silent_channel_0(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    outbound = speechlike(0.4, TRACK, seed=71)
    ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await ws.send_str(twilio_start(interaction_id="agent-only", tracks=("outbound",)))
    for i, chunk in enumerate(frames(outbound, TRACK)):
        await ws.send_str(twilio_media("outbound", i + 1, 20 * i, chunk))
    await ws.send_str(twilio_stop())
    await assert_nothing_sent_back(ws)
    await wait_until(lambda: worker.manager.get(CallKey("default", "agent-only")) is None)
    received = bytes(mock_provider.streams_for("agent-only")[0].received)
    assert mock_provider.streams_for("agent-only")[0].request.fmt == STEREO
    assert received[1::2] == outbound and set(received[0::2]) == {0xFF}


async def test_a_close_reason_quoting_non_ascii_input_stays_valid_utf8(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await ws.send_str(twilio_start(interaction_id="é" * 30))
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 1008
    assert "interaction_id must be" in str(msg.extra)
