"""`/v1/jambonz/transcribe`: the worker as a jambonz custom speech vendor, driven with the
messages jambonz's transcription module sends (its `start` and `stop`, byte for byte, with the
options jambonz's feature server adds), into a real worker on the mock provider."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.credentials import Secret
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, silence, speechlike
from tests.support.telephony import fixture, fixture_text, ws_url

MONO8 = AudioFormat(Encoding.LINEAR16, 8000, 1)
KEY = "jb-vendor-key-51c0aa9e"
CALL_SID = "9fb35c28-9688-4531-943c-e280b04f3adf"  # the fixture's


async def recognize(
    ws: aiohttp.ClientWebSocketResponse, start: str, audio: bytes, stop: bool = True
) -> list[dict[str, object]]:
    """jambonz's side: start, 20 ms frames, stop; every message until the vendor closes."""
    await ws.send_str(start)
    for frame in frames(audio, MONO8):
        await ws.send_bytes(frame)
    if stop:
        await ws.send_str(fixture_text("jambonz", "stt_stop"))
    received: list[dict[str, object]] = []
    async with asyncio.timeout(10):
        async for msg in ws:
            received.append(json.loads(msg.data))
    return received


def transcript(message: dict[str, object]) -> str:
    """The first alternative's text of a `transcription` message."""
    alternatives = message["alternatives"]
    assert isinstance(alternatives, list) and isinstance(alternatives[0], dict)
    return str(alternatives[0]["transcript"])


@pytest.mark.parametrize("interim", [True, False])
async def test_a_recognition_returns_interims_and_finals_in_jambonzs_shape_then_closes(
    http: aiohttp.ClientSession, interim: bool
) -> None:
    provider = MockProvider()
    async with running_worker(provider, worker_token=Secret(KEY)) as worker:
        start = fixture("jambonz", "stt_start")
        audio = speechlike(1.2, MONO8, seed=21) + silence(0.6, MONO8) + speechlike(0.8, MONO8, seed=22)
        ws = await http.ws_connect(
            ws_url(worker, "/v1/jambonz/transcribe"), headers={"Authorization": f"Bearer {KEY}"}
        )
        received = await recognize(ws, json.dumps({**start, "interimResults": interim}), audio)
        assert ws.close_code == 1000
        assert {m["type"] for m in received} == {"transcription"}
        finals = [m for m in received if m["is_final"]]
        words = [w for m in finals for w in transcript(m).split()]
        assert words == expected_words(audio, MONO8)
        assert {(m["channel"], m["language"]) for m in received} == {(1, "en-US")}
        assert any(not m["is_final"] for m in received) is interim
        (stream,) = provider.streams
        assert stream.request.interaction_id == CALL_SID  # jambonz's callSid names the call
        assert stream.request.options.keyterms == ("Zorblax", "order status")  # the recognizer's hints
        assert bytes(stream.received) == audio


async def test_the_vendor_key_is_required_as_jambonz_sends_it(http: aiohttp.ClientSession) -> None:
    async with running_worker(MockProvider(), worker_token=Secret(KEY)) as worker:
        url = ws_url(worker, "/v1/jambonz/transcribe")
        for headers in ({}, {"Authorization": "Bearer not-the-key"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url, headers=headers)
            assert refused.value.status == 401


async def test_a_recognition_without_a_call_sid_gets_an_id_of_its_own(
    http: aiohttp.ClientSession, worker: Worker, mock_provider: MockProvider
) -> None:
    start = {**fixture("jambonz", "stt_start"), "options": {}}
    ws = await http.ws_connect(ws_url(worker, "/v1/jambonz/transcribe"))
    await recognize(ws, json.dumps(start), speechlike(0.5, MONO8))
    assert mock_provider.streams[0].request.interaction_id.startswith("jambonz-")


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (b"\x00\x00" * 160, "the first message must be jambonz's start"),
        (json.dumps({"type": "stop"}), "must be jambonz's start, not 'stop'"),
        (json.dumps({"type": "start", "encoding": "MULAW", "sampleRateHz": 8000}), "not raw LINEAR16"),
        (json.dumps({"type": "start", "sampleRateHz": 11025}), "sample rate 11025"),
    ],
)
async def test_a_bad_start_gets_jambonzs_error_message_a_close_and_a_log_line(
    http: aiohttp.ClientSession,
    worker: Worker,
    caplog: pytest.LogCaptureFixture,
    first: str | bytes,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.forks")
    ws = await http.ws_connect(ws_url(worker, "/v1/jambonz/transcribe"))
    await (ws.send_bytes(first) if isinstance(first, bytes) else ws.send_str(first))
    error = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
    assert error["type"] == "error" and reason in error["error"]
    closing = await asyncio.wait_for(ws.receive(), 10)
    assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1008
    assert [r for r in caplog.records if r.getMessage() == "fork refused"]


async def test_an_unknown_message_mid_call_is_jambonzs_error_and_the_recognition_goes_on(
    http: aiohttp.ClientSession, worker: Worker
) -> None:
    ws = await http.ws_connect(ws_url(worker, "/v1/jambonz/transcribe"))
    await ws.send_str(fixture_text("jambonz", "stt_start"))
    await ws.send_bytes(speechlike(0.5, MONO8, seed=3))
    await ws.send_str(json.dumps({"type": "pause"}))
    received = await recognize(ws, json.dumps({"type": "start"}), speechlike(0.5, MONO8, seed=4))
    errors = [m["error"] for m in received if m["type"] == "error"]
    assert errors[0] == "unknown_message: unknown message type 'pause'; jambonz sends start and stop"
    assert errors[1] == "bad_message: a second start on one socket; ignored"
    assert [m for m in received if m["type"] == "transcription" and m["is_final"]]
    assert ws.close_code == 1000
