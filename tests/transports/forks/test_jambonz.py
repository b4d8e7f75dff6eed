"""`/v1/jambonz`: jambonz's `listen` verb played by Node's `ws` client with its subprotocol
`audio.jambonz.org`, into a real worker on the mock provider, watched over SSE."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import silence, speechlike
from tests.support.forks import node_fork, stereo
from tests.support.telephony import fixture, fixture_text, open_sse, ws_url

STEREO16 = AudioFormat(Encoding.LINEAR16, 16000, 2)
MONO8 = AudioFormat(Encoding.LINEAR16, 8000, 1)
CALL_SID = "ee6d8fde-d6ed-4fd7-8b7e-53ec5b41b3d9"  # the fixture's


@pytest.fixture
async def long_grace_worker(mock_provider: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(mock_provider, session_grace_s=120) as worker:
        yield worker


async def test_listen_in_stereo_is_one_two_channel_call_named_by_its_call_sid(
    long_grace_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    worker = long_grace_worker
    mono = AudioFormat(Encoding.LINEAR16, 16000, 1)
    audio = stereo(
        speechlike(0.8, mono, seed=1) + silence(0.4, mono), silence(0.4, mono) + speechlike(0.8, mono)
    )
    watcher = await open_sse(http, worker, f"/v1/calls/{CALL_SID}/events")
    run = await node_fork(
        ws_url(worker, "/v1/jambonz"),
        protocols=["audio.jambonz.org"],
        metadata=fixture_text("jambonz", "listen_metadata"),  # sampleRate 16000, mixType stereo
        audio=audio,
        frame_bytes=STEREO16.bytes_for(0.02),
        texts=[fixture_text("jambonz", "dtmf")],
    )
    assert run.protocol == "audio.jambonz.org" and run.close_code == 1000, run.events
    await watcher.rest()  # the verb's end closed the socket: the call ended then, not after grace
    started = watcher.of("session_started")[0]
    assert (started["sample_rate"], started["channels"]) == (16000, 2)
    assert watcher.of("session_ended")[0]["reason"] == "end" and not watcher.of("error")
    assert [(d["digit"], d["channel"]) for d in watcher.of("dtmf")] == [("5", 0)]
    (stream,) = mock_provider.streams
    assert bytes(stream.received) == audio
    finals = [w for e in watcher.of("transcript") if e["is_final"] for w in str(e["text"]).split()]
    assert finals == expected_words(audio, STEREO16)


async def test_the_verbs_metadata_or_the_url_may_name_the_call_instead(
    worker: Worker, mock_provider: MockProvider
) -> None:
    metadata = fixture("jambonz", "listen_metadata")
    named = {**metadata, "mixType": "mono", "sampleRate": 8000, "interaction_id": "from-metadata"}
    for path, meta, expected in (
        ("/v1/jambonz?interaction_id=from-url", {**metadata, "mixType": "mixed"}, "from-url"),
        ("/v1/jambonz?interaction_id=from-url", named, "from-metadata"),
    ):
        run = await node_fork(
            ws_url(worker, path),
            protocols=["audio.jambonz.org"],
            metadata=json.dumps(meta),
            audio=speechlike(0.2, MONO8),
            frame_bytes=320,
        )
        assert run.close_code == 1000, run.events
        assert mock_provider.streams[-1].request.interaction_id == expected
        assert mock_provider.streams[-1].request.fmt.channels == 1


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (b"\x00\x00" * 160, "the first message must be jambonz's metadata"),
        ("callSid=abc", "the metadata frame must be a JSON object"),
        (json.dumps({"callSid": "c-1", "sampleRate": 64000}), "sample rate 64000"),
        (json.dumps({"sampleRate": 8000}), "has no callSid"),
    ],
)
async def test_bad_metadata_is_closed_with_the_reason_and_a_log_line(
    worker: Worker,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    first: str | bytes,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.forks")
    ws = await http.ws_connect(ws_url(worker, "/v1/jambonz"), protocols=["audio.jambonz.org"])
    await (ws.send_bytes(first) if isinstance(first, bytes) else ws.send_str(first))
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008 and reason in str(msg.extra)
    assert [r for r in caplog.records if r.getMessage() == "fork refused"]


async def test_an_unknown_message_after_the_metadata_is_an_error_event_and_the_call_goes_on(
    long_grace_worker: Worker, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.forks")
    worker = long_grace_worker
    watcher = await open_sse(http, worker, "/v1/calls/jb-unknown/events")
    meta = json.dumps({"callSid": "jb-unknown", "sampleRate": 8000, "mixType": "mono"})
    run = await node_fork(
        ws_url(worker, "/v1/jambonz"),
        protocols=["audio.jambonz.org"],
        metadata=meta,
        audio=speechlike(0.4, MONO8),
        frame_bytes=320,
        texts=[json.dumps({"event": "hold"}), json.dumps({"event": "hold"}), "{not json"],
    )
    assert run.close_code == 1000, run.events
    await watcher.rest()
    assert [e["code"] for e in watcher.of("error")] == ["unknown_message", "unknown_message", "bad_message"]
    assert watcher.of("session_ended")[0]["reason"] == "end"
    logged = [r for r in caplog.records if r.getMessage().startswith("fork sent bad input")]
    assert len(logged) == 1  # the first is logged, the rest counted
