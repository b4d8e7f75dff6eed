"""`/v1/telnyx`: Telnyx Media Streaming, its messages as Telnyx documents them
(tests/transports/fixtures/telnyx/), into a real worker on the mock provider, watched over SSE."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.transports import telephony_messages as tm
from asr_worker.transports.forks import telnyx_messages
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, silence, speechlike
from tests.support.forks import interleave
from tests.support.telephony import fixture, fixture_text, open_sse, wait_until, ws_url

TRACK = AudioFormat(Encoding.MULAW, 8000, 1)
STEREO = AudioFormat(Encoding.MULAW, 8000, 2)
L16 = AudioFormat(Encoding.LINEAR16, 16000, 1)


@pytest.fixture
async def long_grace_worker(mock_provider: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(mock_provider, session_grace_s=120) as worker:
        yield worker


def test_the_documented_messages_parse() -> None:
    start = telnyx_messages.parse(fixture_text("telnyx", "start"))
    assert isinstance(start, tm.Start)
    assert start.call_sid == "v3:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"
    assert start.fmt == TRACK and start.tracks == ()
    media = telnyx_messages.parse(fixture_text("telnyx", "media"))
    assert isinstance(media, tm.Media)
    assert (media.track, media.chunk, media.timestamp_ms) == ("inbound", 2, 5)
    documented = fixture("telnyx", "media")["media"]
    assert isinstance(documented, dict) and media.payload == base64.b64decode(documented["payload"])
    assert telnyx_messages.parse(fixture_text("telnyx", "dtmf")) == tm.Dtmf("1")
    assert telnyx_messages.parse(fixture_text("telnyx", "stop")) == tm.Stop()
    assert isinstance(telnyx_messages.parse(fixture_text("telnyx", "connected")), tm.Connected)
    with pytest.raises(Exception, match="Telnyx reported 100002 unknown_error"):
        telnyx_messages.parse(fixture_text("telnyx", "error"))


async def test_both_tracks_out_of_order_are_one_two_channel_call_in_order_ending_on_stop(
    long_grace_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    worker = long_grace_worker
    call = "v3:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"  # the fixture's call_control_id
    watcher = await open_sse(http, worker, f"/v1/calls/{call}/events")
    inbound = speechlike(1.2, TRACK, seed=1) + silence(0.4, TRACK)
    outbound = silence(0.4, TRACK) + speechlike(1.2, TRACK, seed=2)
    messages = []
    for i, (a, b) in enumerate(zip(frames(inbound, TRACK), frames(outbound, TRACK), strict=True)):
        messages += [
            telnyx_messages.media("inbound", i + 1, 20 * i, a),
            telnyx_messages.media("outbound", i + 1, 20 * i, b),
        ]
    for i in range(4, len(messages) - 4, 10):  # swap neighbours of one track: frames out of order
        messages[i], messages[i + 2] = messages[i + 2], messages[i]
    ws = await http.ws_connect(ws_url(worker, "/v1/telnyx?track=both_tracks"))
    await ws.send_str(fixture_text("telnyx", "connected"))
    await ws.send_str(fixture_text("telnyx", "start"))
    for message in messages:
        await ws.send_str(message)
    await ws.send_str(fixture_text("telnyx", "dtmf"))
    await ws.send_str(fixture_text("telnyx", "stop"))
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1000
    await watcher.rest()  # `stop` ended it, not the 120 s grace
    started = watcher.of("session_started")[0]
    assert (started["encoding"], started["channels"]) == ("mulaw", 2)
    assert watcher.of("session_ended")[0]["reason"] == "end" and not watcher.of("error")
    assert [(d["digit"], d["channel"]) for d in watcher.of("dtmf")] == [("1", 0)]
    (stream,) = mock_provider.streams
    assert bytes(stream.received) == interleave(inbound, outbound)  # every frame in its place
    held = worker.metrics.registry.get_sample_value(
        "asr_telephony_frames_reordered_total", {"platform": "telnyx", "outcome": "held"}
    )
    assert held is not None and held > 0
    finals = [w for e in watcher.of("transcript") if e["is_final"] for w in str(e["text"]).split()]
    assert finals == expected_words(interleave(inbound, outbound), STEREO)


async def test_an_l16_stream_named_by_its_custom_parameter(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    audio = speechlike(0.6, L16, seed=4)
    ws = await http.ws_connect(ws_url(worker, "/v1/telnyx"))
    await ws.send_str(
        telnyx_messages.start(encoding="L16", sample_rate=16000, params={"interaction_id": "tx-l16"})
    )
    for i, frame in enumerate(frames(audio, L16)):
        await ws.send_str(telnyx_messages.media("inbound", i + 1, 20 * i, frame))
    await ws.send_str(fixture_text("telnyx", "stop"))
    await asyncio.wait_for(ws.receive(), 10)
    await wait_until(lambda: not worker.manager.sessions)  # ended, all its audio sent
    (stream,) = mock_provider.streams
    assert stream.request.interaction_id == "tx-l16" and stream.request.fmt == L16
    assert bytes(stream.received) == audio


@pytest.mark.parametrize(
    ("path", "first", "reason"),
    [
        ("/v1/telnyx", fixture_text("telnyx", "media"), "`media` before `start`"),
        ("/v1/telnyx", telnyx_messages.start(encoding="G722", sample_rate=16000), "is not PCMU, PCMA or L16"),
        ("/v1/telnyx", telnyx_messages.start(encoding="PCMU", sample_rate=16000), "G.711 comes at 8000 Hz"),
        ("/v1/telnyx?track=all", fixture_text("telnyx", "start"), "?track= must be one of"),
        ("/v1/telnyx", fixture_text("telnyx", "error"), "Telnyx reported 100002"),
    ],
)
async def test_bad_input_before_the_call_is_closed_with_the_reason_and_a_log_line(
    worker: Worker,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    path: str,
    first: str,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.telephony")
    ws = await http.ws_connect(ws_url(worker, path))
    await ws.send_str(first)
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008 and reason in str(msg.extra), msg
    assert [r for r in caplog.records if r.getMessage() == "telephony stream refused"]


async def test_an_unknown_event_or_telnyxs_error_mid_call_is_an_error_event_and_the_call_goes_on(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    watcher = await open_sse(http, worker, "/v1/calls/tx-bad/events")
    ws = await http.ws_connect(ws_url(worker, "/v1/telnyx?interaction_id=tx-bad"))
    await ws.send_str(fixture_text("telnyx", "start"))
    await ws.send_str(telnyx_messages.media("inbound", 1, 0, speechlike(0.1, TRACK)))
    await ws.send_str(json.dumps({"event": "transcription", "stream_id": "x"}))
    await ws.send_str(fixture_text("telnyx", "error"))
    await ws.send_str(telnyx_messages.media("inbound", 2, 100, speechlike(0.1, TRACK, seed=3)))
    await ws.send_str(fixture_text("telnyx", "stop"))
    await watcher.rest()
    assert [e["code"] for e in watcher.of("error")] == ["unknown_message", "platform_error"]
    assert watcher.of("session_ended")[0]["reason"] == "end"
