"""`/v1/signalwire`: SignalWire's cXML `<Stream>`, its messages as SignalWire documents them
(tests/transports/fixtures/signalwire/, in the documentation's envelope) and bare, into a real
worker on the mock provider, watched over SSE."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.credentials import Secret
from asr_worker.providers.mock import MockProvider
from asr_worker.transports import telephony_messages as tm
from asr_worker.transports.forks import signalwire_messages
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, silence, speechlike
from tests.support.forks import interleave
from tests.support.telephony import fixture_text, open_sse, ws_url

TRACK = AudioFormat(Encoding.MULAW, 8000, 1)
L16_24K = AudioFormat(Encoding.LINEAR16, 24000, 1)
KEY = "k-signalwire-7d3f"


def test_the_documented_messages_parse_from_their_envelope() -> None:
    start = signalwire_messages.parse(fixture_text("signalwire", "start"))
    assert isinstance(start, tm.Start) and start.fmt == L16_24K and start.tracks == ("inbound",)
    assert start.call_sid == "76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad"
    media = signalwire_messages.parse(fixture_text("signalwire", "media"))
    assert isinstance(media, tm.Media) and (media.chunk, media.timestamp_ms, len(media.payload)) == (
        1001,
        20041,
        1280,
    )
    assert signalwire_messages.parse(fixture_text("signalwire", "dtmf")) == tm.Dtmf("8")
    assert signalwire_messages.parse(fixture_text("signalwire", "mark")) == tm.Mark(
        "item_CK5XvgANb1jVorf5VQlKQ:43500"
    )
    assert signalwire_messages.parse(fixture_text("signalwire", "stop")) == tm.Stop()
    assert signalwire_messages.parse(fixture_text("signalwire", "connected")) == tm.Connected("Call", "0.2.0")


async def test_an_l16_stream_with_its_bearer_token_ends_on_stop(http: aiohttp.ClientSession) -> None:
    provider = MockProvider()
    async with running_worker(provider, worker_token=Secret(KEY), session_grace_s=120) as worker:
        call = "76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad"  # the documented start's callSid
        watcher = await open_sse(http, worker, f"/v1/calls/{call}/events", {"Authorization": f"Bearer {KEY}"})
        url = ws_url(worker, "/v1/signalwire")
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(url)  # no authBearerToken
        ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {KEY}"})
        await ws.send_str(fixture_text("signalwire", "connected"))
        await ws.send_str(fixture_text("signalwire", "start"))
        audio = speechlike(0.6, L16_24K, seed=3)
        for i, frame in enumerate(frames(audio, L16_24K)):
            await ws.send_str(signalwire_messages.media("inbound", i + 1, 20 * i, frame))
        await ws.send_str(fixture_text("signalwire", "dtmf"))
        await ws.send_str(fixture_text("signalwire", "stop"))
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1000
        await watcher.rest()  # `stop` ended it, not the 120 s grace
        assert watcher.of("session_ended")[0]["reason"] == "end"
        assert [d["digit"] for d in watcher.of("dtmf")] == ["8"]
        (stream,) = provider.streams
        assert (stream.request.interaction_id, stream.request.fmt) == (call, L16_24K)
        assert bytes(stream.received) == audio


async def test_both_tracks_bare_are_one_two_channel_call_named_by_its_parameter(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    watcher = await open_sse(http, worker, "/v1/calls/sw-call-1/events")
    inbound = speechlike(0.8, TRACK, seed=1) + silence(0.2, TRACK)
    outbound = silence(0.2, TRACK) + speechlike(0.8, TRACK, seed=2)
    ws = await http.ws_connect(ws_url(worker, "/v1/signalwire"))
    await ws.send_str(signalwire_messages.start(params={"interaction_id": "sw-call-1"}))
    for i, (a, b) in enumerate(zip(frames(inbound, TRACK), frames(outbound, TRACK), strict=True)):
        await ws.send_str(signalwire_messages.media("inbound", i + 1, 20 * i, a))
        await ws.send_str(signalwire_messages.media("outbound", i + 1, 20 * i, b))
    await ws.send_str(fixture_text("signalwire", "stop"))
    await watcher.rest()
    assert (
        watcher.of("session_ended")[0]["reason"] == "end"
        and watcher.of("session_started")[0]["channels"] == 2
    )
    assert bytes(mock_provider.streams[0].received) == interleave(inbound, outbound)


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (fixture_text("signalwire", "media"), "`media` before `start`"),
        (signalwire_messages.start(sample_rate=16000), "G.711 comes at 8000 Hz"),
        (signalwire_messages.start(encoding="audio/opus"), "is not audio/x-mulaw or audio/x-L16"),
        (json.dumps({"eventType": "start", "rawEvent": {"start": {}}}), "must have a string `event`"),
    ],
)
async def test_bad_input_before_the_call_is_closed_with_the_reason_and_a_log_line(
    worker: Worker, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, first: str, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.telephony")
    ws = await http.ws_connect(ws_url(worker, "/v1/signalwire"))
    await ws.send_str(first)
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008 and reason in str(msg.extra), msg
    assert [r for r in caplog.records if r.getMessage() == "telephony stream refused"]


async def test_an_unknown_event_mid_call_is_an_error_event_and_the_call_goes_on(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    watcher = await open_sse(http, worker, "/v1/calls/sw-bad/events")
    ws = await http.ws_connect(ws_url(worker, "/v1/signalwire?interaction_id=sw-bad"))
    await ws.send_str(signalwire_messages.start(tracks=("inbound",)))
    await ws.send_str(signalwire_messages.media("inbound", 1, 0, speechlike(0.1, TRACK)))
    await ws.send_str(json.dumps({"event": "transcription"}))
    await ws.send_str(signalwire_messages.media("inbound", 2, 100, speechlike(0.1, TRACK, seed=2)))
    await ws.send_str(fixture_text("signalwire", "stop"))
    await watcher.rest()
    assert [e["code"] for e in watcher.of("error")] == ["unknown_message"]
    assert watcher.of("session_ended")[0]["reason"] == "end"
