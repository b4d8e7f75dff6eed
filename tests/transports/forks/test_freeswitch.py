"""`/v1/freeswitch` end to end: FreeSWITCH's mod_audio_fork and mod_audio_stream played by Node's
`ws` client (which refuses a server that selects none of the subprotocols it offers), into a
real worker on the mock provider, watched over SSE."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from websockets.asyncio.client import connect

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.credentials import Secret
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import silence, speechlike
from tests.support.forks import node_fork, stereo
from tests.support.telephony import open_sse, wait_until, ws_url

MONO16 = AudioFormat(Encoding.LINEAR16, 16000, 1)
STEREO16 = AudioFormat(Encoding.LINEAR16, 16000, 2)
MONO8 = AudioFormat(Encoding.LINEAR16, 8000, 1)
TOKEN = "fs-key-3f9a1c77"


@pytest.fixture
async def long_grace_worker(mock_provider: MockProvider) -> AsyncIterator[Worker]:
    """A worker whose grace period outlasts every test: a call that ends here ended by itself."""
    async with running_worker(mock_provider, session_grace_s=120) as worker:
        yield worker


async def test_mod_audio_fork_stereo_with_metadata_ends_on_close_promptly(
    long_grace_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    worker = long_grace_worker
    caller = speechlike(1.0, MONO16, seed=3) + silence(1.0, MONO16)
    callee = silence(1.0, MONO16) + speechlike(1.0, MONO16, seed=4)
    audio = stereo(caller, callee)
    watcher = await open_sse(http, worker, "/v1/calls/fs-uuid-1/events")
    metadata = json.dumps({"uuid": "fs-uuid-1", "from": "+15551230000", "keyterms": ["Zorblax"]})
    run = await node_fork(
        ws_url(worker, "/v1/freeswitch?sample_rate=16k&mix=stereo"),
        protocols=["audio.drachtio.org"],
        metadata=metadata,
        audio=audio,
        frame_bytes=STEREO16.bytes_for(0.02),
    )
    assert run.returncode == 0, run.events
    assert run.protocol == "audio.drachtio.org"
    assert run.close_code == 1000 and not run.of("message")  # the worker sends nothing on the fork
    await watcher.rest()  # within 10 s: the close ended it, not the 120 s grace

    started = watcher.of("session_started")[0]
    assert (started["encoding"], started["sample_rate"], started["channels"]) == ("linear16", 16000, 2)
    assert watcher.of("session_ended")[0]["reason"] == "end" and not watcher.of("error")
    (stream,) = mock_provider.streams
    assert bytes(stream.received) == audio  # byte for byte
    assert stream.request.options.keyterms == ("Zorblax",)
    finals = [w for e in watcher.of("transcript") if e["is_final"] for w in str(e["text"]).split()]
    assert finals == expected_words(audio, STEREO16)


@pytest.mark.parametrize("protocol", ["audiostream.drachtio.org", "audio.jambonz.org"])
async def test_a_fork_without_metadata_is_named_by_its_url_and_ends_on_its_last_empty_frame(
    long_grace_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider, protocol: str
) -> None:
    """`uuid_audio_fork ... start URL mono 8k` with no metadata sends no text frame at all;
    `graceful-shutdown` sends a zero-length binary frame."""
    worker = long_grace_worker
    call = f"fs-plain-{protocol.split('.', maxsplit=1)[0]}"
    watcher = await open_sse(http, worker, f"/v1/calls/{call}/events")
    audio = speechlike(0.8, MONO8, seed=5)
    run = await node_fork(
        ws_url(worker, f"/v1/freeswitch?interaction_id={call}"),
        protocols=[protocol],
        metadata=None,
        audio=audio,
        frame_bytes=320,
        end="empty-frame",
    )
    assert run.protocol == protocol and run.close_code == 1000, run.events
    await watcher.rest()
    assert watcher.of("session_ended")[0]["reason"] == "end"
    assert bytes(mock_provider.streams[0].received) == audio


async def test_mod_audio_stream_sends_its_key_as_a_header_and_any_text_as_metadata(
    http: aiohttp.ClientSession,
) -> None:
    """mod_audio_stream offers no subprotocol, sends its `STREAM_EXTRA_HEADERS` (a bearer key
    here) and its metadata as plain text, which names nothing: the URL names the call."""
    provider = MockProvider()
    async with running_worker(provider, worker_token=Secret(TOKEN)) as worker:
        audio = speechlike(0.5, MONO16, seed=6)
        path = "/v1/freeswitch?interaction_id=stream-1&sample_rate=16000&tenant_id=acme"
        refused = await node_fork(ws_url(worker, path), protocols=[], metadata="agent 42", audio=audio)
        assert refused.returncode == 1 and "401" in str(refused.of("error"))
        run = await node_fork(
            ws_url(worker, path),
            protocols=[],
            metadata="agent 42",
            audio=audio,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert run.returncode == 0 and run.protocol == "" and run.close_code == 1000, run.events
        await wait_until(lambda: not worker.manager.sessions)  # ended, all its audio sent
        (stream,) = provider.streams
        assert (stream.request.tenant_id, stream.request.interaction_id) == ("acme", "stream-1")
        assert bytes(stream.received) == audio


async def test_dtmf_sent_as_text_is_a_dtmf_event_and_other_text_is_the_applications_own(
    long_grace_worker: Worker, http: aiohttp.ClientSession
) -> None:
    worker = long_grace_worker
    watcher = await open_sse(http, worker, "/v1/calls/fs-dtmf/events")
    run = await node_fork(
        ws_url(worker, "/v1/freeswitch?interaction_id=fs-dtmf"),
        protocols=["audio.drachtio.org"],
        metadata=json.dumps({"note": "no id here"}),
        audio=speechlike(0.4, MONO8, seed=7),
        frame_bytes=320,
        texts=[json.dumps({"event": "dtmf", "dtmf": "7", "duration": 1600}), "call transferred"],
    )
    assert run.close_code == 1000, run.events
    await watcher.rest()
    (dtmf,) = watcher.of("dtmf")
    assert (dtmf["digit"], dtmf["channel"]) == ("7", 0)
    assert not watcher.of("error")


@pytest.mark.parametrize(
    ("path", "first", "reason"),
    [
        ("/v1/freeswitch", b"\x00\x00" * 160, "no metadata frame came first"),
        ("/v1/freeswitch", json.dumps({"from": "+1555"}), "the metadata frame names no call"),
        ("/v1/freeswitch?interaction_id=x&sample_rate=44100", b"\x00\x00" * 160, "sample rate 44100"),
        ("/v1/freeswitch?interaction_id=x&mix=quad", json.dumps({}), "mix type 'quad'"),
        ("/v1/freeswitch?interaction_id=bad%20id", b"\x00\x00" * 160, "interaction_id must be"),
    ],
)
async def test_bad_input_before_the_call_is_closed_with_the_reason_and_a_log_line(
    worker: Worker,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    path: str,
    first: str | bytes,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.forks")
    other = await http.ws_connect(ws_url(worker, "/v1/freeswitch?interaction_id=fs-other"))
    await other.send_bytes(speechlike(0.2, MONO8))
    ws = await http.ws_connect(ws_url(worker, path), protocols=["audio.drachtio.org"])
    assert ws.protocol == "audio.drachtio.org"
    await (ws.send_bytes(first) if isinstance(first, bytes) else ws.send_str(first))
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008, msg
    assert reason in str(msg.extra)
    refusals = [r for r in caplog.records if r.getMessage() == "fork refused"]
    assert len(refusals) == 1 and reason in str(refusals[0].__dict__["reason"])
    # the other call goes on
    await other.send_bytes(speechlike(0.2, MONO8, seed=2))
    await other.close()
    assert worker.manager.sessions and not other.exception()


async def test_a_frame_of_half_a_sample_is_an_error_event_and_the_call_goes_on(
    long_grace_worker: Worker, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.forks")
    worker = long_grace_worker
    watcher = await open_sse(http, worker, "/v1/calls/fs-odd/events")
    ws = await http.ws_connect(ws_url(worker, "/v1/freeswitch?interaction_id=fs-odd"))
    await ws.send_bytes(speechlike(0.2, MONO8))
    await ws.send_bytes(b"\x01\x02\x03")
    await ws.send_bytes(speechlike(0.2, MONO8, seed=9))
    await ws.close()
    await watcher.rest()
    assert [e["code"] for e in watcher.of("error")] == ["bad_audio"]
    assert watcher.of("session_ended")[0]["reason"] == "end"


async def test_a_lost_connection_only_leaves_and_the_call_continues_on_a_new_fork() -> None:
    """A close frame ends the call; a connection lost without one (a network fault) only leaves
    it, and a new fork for the same call continues it on the same provider connection."""
    provider = MockProvider()
    async with running_worker(provider, session_grace_s=30) as worker:
        url = ws_url(worker, "/v1/freeswitch?interaction_id=fs-resume")
        lost = await connect(url)
        await lost.send(speechlike(0.4, MONO8, seed=1))
        await wait_until(lambda: bool(worker.manager.sessions))
        runner = worker.manager.sessions[0]
        lost.transport.abort()

        def reason() -> str | None:
            return runner.status.end_reason

        await wait_until(lambda: runner.core.source_count == 0)
        assert reason() is None  # it only left
        async with connect(url) as again:
            await again.send(speechlike(0.4, MONO8, seed=2))
        await wait_until(lambda: reason() is not None)
        assert reason() == "end" and provider.opens == 1
