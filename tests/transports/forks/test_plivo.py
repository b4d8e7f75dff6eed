"""`/v1/plivo`: Plivo Audio Streaming, its messages as Plivo documents them
(tests/transports/fixtures/plivo/), into a real worker on the mock provider, watched over SSE."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.providers.mock import MockProvider
from asr_worker.transports import telephony_messages as tm
from asr_worker.transports.forks import plivo_messages
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, silence, speechlike
from tests.support.forks import interleave
from tests.support.telephony import fixture_text, open_sse, wait_until, ws_url

TRACK = AudioFormat(Encoding.MULAW, 8000, 1)
L16 = AudioFormat(Encoding.LINEAR16, 16000, 1)
EPOCH_MS = 1_705_312_200_000


@pytest.fixture
async def long_grace_worker(mock_provider: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(mock_provider, session_grace_s=120) as worker:
        yield worker


def test_the_documented_messages_parse() -> None:
    start = plivo_messages.parse(fixture_text("plivo", "start"))
    assert isinstance(start, tm.Start)
    assert (start.call_sid, start.tracks, start.fmt) == (
        "12345678-1234-1234-1234-123456789abc",
        ("inbound",),
        TRACK,
    )
    assert start.custom_parameters == {"userId": "12345", "sessionId": "abc-xyz"}
    media = plivo_messages.parse(fixture_text("plivo", "media"))
    assert isinstance(media, tm.Media) and (media.chunk, media.timestamp_ms) == (41, EPOCH_MS)
    assert plivo_messages.extra_headers("interactionId=call1,tenantId=acme") == {
        "interaction_id": "call1",
        "tenant_id": "acme",
    }


async def test_both_tracks_are_one_two_channel_call_that_the_sockets_close_ends(
    long_grace_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    worker = long_grace_worker
    watcher = await open_sse(http, worker, "/v1/calls/pl-call-1/events")
    inbound = speechlike(1.0, TRACK, seed=1) + silence(0.4, TRACK)
    outbound = silence(0.4, TRACK) + speechlike(1.0, TRACK, seed=2)
    ws = await http.ws_connect(ws_url(worker, "/v1/plivo"))
    await ws.send_str(plivo_messages.start(extra_headers="interactionId=pl-call-1"))
    for i, (a, b) in enumerate(zip(frames(inbound, TRACK), frames(outbound, TRACK), strict=True)):
        await ws.send_str(plivo_messages.media("inbound", i + 1, EPOCH_MS + 20 * i, a))
        await ws.send_str(plivo_messages.media("outbound", i + 1, EPOCH_MS + 20 * i, b))
    await ws.send_str(
        json.dumps({"event": "dtmf", "streamId": "s", "dtmf": {"digit": "9", "track": "inbound"}})
    )
    await ws.send_str(json.dumps({"event": "playedStream", "streamId": "s", "name": "greeting"}))
    await ws.close()  # the call's hangup: Plivo sends no stop
    await watcher.rest()  # the close ended it, not the 120 s grace
    assert watcher.of("session_ended")[0]["reason"] == "end" and not watcher.of("error")
    assert watcher.of("session_started")[0]["channels"] == 2
    assert [d["digit"] for d in watcher.of("dtmf")] == ["9"]
    (stream,) = mock_provider.streams
    assert stream.request.interaction_id == "pl-call-1"
    assert bytes(stream.received) == interleave(inbound, outbound)  # wall-clock timestamps, no gap invented


async def test_the_documented_start_names_the_call_by_its_call_id_and_l16_comes_through(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    ws = await http.ws_connect(ws_url(worker, "/v1/plivo"))
    await ws.send_str(fixture_text("plivo", "start"))
    await ws.send_str(fixture_text("plivo", "media"))
    await ws.close()
    audio = speechlike(0.4, L16)
    ws = await http.ws_connect(ws_url(worker, "/v1/plivo?interaction_id=pl-l16"))
    await ws.send_str(plivo_messages.start(tracks=("inbound",), encoding="audio/x-l16", sample_rate=16000))
    for i, frame in enumerate(frames(audio, L16)):
        await ws.send_str(plivo_messages.media("inbound", i + 1, EPOCH_MS + 20 * i, frame))
    await ws.close()
    await wait_until(lambda: not worker.manager.sessions)  # both calls ended, all their audio sent
    first, second = mock_provider.streams
    assert first.request.interaction_id == "12345678-1234-1234-1234-123456789abc"
    assert (second.request.interaction_id, second.request.fmt) == ("pl-l16", L16)
    assert bytes(second.received) == audio


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (fixture_text("plivo", "media"), "`media` before `start`"),
        (plivo_messages.start(encoding="audio/x-l16", sample_rate=24000), "is not one of Plivo's formats"),
        (plivo_messages.start(encoding="audio/ogg"), "is not audio/x-mulaw or audio/x-l16"),
    ],
)
async def test_bad_input_before_the_call_is_closed_with_the_reason_and_a_log_line(
    worker: Worker, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, first: str, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.telephony")
    ws = await http.ws_connect(ws_url(worker, "/v1/plivo"))
    await ws.send_str(first)
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008 and reason in str(msg.extra), msg
    assert [r for r in caplog.records if r.getMessage() == "telephony stream refused"]


async def test_an_unknown_event_mid_call_is_an_error_event_and_the_call_goes_on(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    watcher = await open_sse(http, worker, "/v1/calls/pl-bad/events")
    ws = await http.ws_connect(ws_url(worker, "/v1/plivo?interaction_id=pl-bad"))
    await ws.send_str(plivo_messages.start(tracks=("inbound",)))
    await ws.send_str(plivo_messages.media("inbound", 1, EPOCH_MS, speechlike(0.1, TRACK)))
    await ws.send_str(json.dumps({"event": "hold"}))
    await ws.send_str(plivo_messages.media("inbound", 2, EPOCH_MS + 100, speechlike(0.1, TRACK, seed=2)))
    await ws.close()
    await watcher.rest()
    assert [e["code"] for e in watcher.of("error")] == ["unknown_message"]
    assert watcher.of("session_ended")[0]["reason"] == "end"
