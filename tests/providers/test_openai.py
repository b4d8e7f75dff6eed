"""The `openai` provider end to end: a real worker (ASR_PROVIDER=openai) streaming calls over
real sockets into the worker's own `/v1/realtime` server (over the mock provider) behind a
recording proxy that injects faults: drops, refused handshakes, a server that stops
answering. Nothing may be lost or repeated."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from asr_worker.config import load_settings, make_provider
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.credentials import Secret
from asr_worker.errors import ConfigError
from asr_worker.openai_realtime import protocol
from asr_worker.openai_realtime.protocol import SessionConfig
from asr_worker.providers.mock import MockOptions, MockProvider, expected_words
from asr_worker.providers.openai import OpenAIOptions, OpenAIProvider, realtime_url
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.audio import frames, silence, speechlike
from tests.support.client import connect
from tests.support.http_server import serving
from tests.support.rt_server import Faults, RealtimeTestServer, running_rt_server

KEY = "sk-openai-test-key-0123456789"
ULAW = AudioFormat(Encoding.MULAW, 8000, 1)
PCM24K = AudioFormat(Encoding.LINEAR16, 24000, 1)
ULAW_QUERY = "encoding=mulaw&sample_rate=8000&channels=1"


def provider(server: RealtimeTestServer, **options: Any) -> OpenAIProvider:
    return OpenAIProvider(OpenAIOptions(base_url=server.base_url, api_key=Secret(KEY), **options))


@asynccontextmanager
async def openai_worker(server: RealtimeTestServer, **options: Any) -> AsyncIterator[Worker]:
    async with running_worker(provider(server, **options)) as worker:
        yield worker


async def metric(http: aiohttp.ClientSession, worker: Worker, name: str) -> float:
    async with http.get(f"{base_url(worker)}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name)] in " {"
    )


def test_the_realtime_url_is_built_from_the_base_url() -> None:
    assert (
        realtime_url("https://api.openai.com/v1") == "wss://api.openai.com/v1/realtime?intent=transcription"
    )
    assert realtime_url("http://127.0.0.1:9/v1/") == "ws://127.0.0.1:9/v1/realtime?intent=transcription"
    with pytest.raises(ValueError, match="http"):
        realtime_url("ftp://example.com")


async def test_a_call_is_one_connection_with_its_format_model_key_and_every_word(
    http: aiohttp.ClientSession,
) -> None:
    audio = speechlike(1.4, ULAW) + silence(0.6, ULAW) + speechlike(2.2, ULAW, seed=3) + silence(0.4, ULAW)
    async with running_rt_server() as server, openai_worker(server, model="whisper-test") as worker:
        call = await connect(http, worker, "oa-1", ULAW_QUERY)
        await call.send_frames(frames(audio, ULAW), pace_s=0.002)
        await call.end()
        await call.collect()
        handshakes = await metric(http, worker, 'asr_openai_handshakes_total{status="101"}')
    assert call.final_words() == expected_words(audio, ULAW)
    assert not call.of("error") and call.of("session_ended")[0]["reason"] == "end"
    [conn] = server.connections
    assert conn.headers["Authorization"] == f"Bearer {KEY}" and handshakes == 1
    [update] = conn.sent("session.update")
    session = update["session"]
    assert isinstance(session, dict) and session["type"] == "transcription"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["input"]["transcription"]["model"] == "whisper-test"
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert bytes(conn.audio) == audio  # continuous, byte for byte
    assert len(conn.sent("input_audio_buffer.commit")) == 1  # the end is a commit
    assert conn.ended_by == "client"


async def test_pcm16_at_24k_goes_as_it_is_and_other_rates_are_resampled(http: aiohttp.ClientSession) -> None:
    audio = speechlike(1.0, PCM24K) + silence(0.4, PCM24K)
    async with running_rt_server() as server, openai_worker(server) as worker:
        call = await connect(http, worker, "oa-24k", "encoding=linear16&sample_rate=24000&channels=1")
        await call.send_frames(frames(audio, PCM24K), pace_s=0.001)
        await call.end()
        await call.collect()
        pcm8 = speechlike(1.0) + silence(0.4)
        call8 = await connect(http, worker, "oa-8k")
        await call8.send_frames(frames(pcm8), pace_s=0.001)
        await call8.end()
        await call8.collect()
    assert call.final_words() == expected_words(audio, PCM24K)
    first, second = server.connections
    assert first.sent("session.update")[0]["session"]["audio"]["input"]["format"] == {  # type: ignore[index]
        "type": "audio/pcm",
        "rate": 24000,
    }
    assert bytes(first.audio) == audio
    # 1.4 s at 8 kHz went out as 24 kHz pcm16 (the resampler may hold back a few ms until the end).
    assert abs(len(second.audio) - PCM24K.bytes_for(1.4)) <= PCM24K.bytes_for(0.05)
    assert call8.final_words() and not call8.of("error")


async def test_a_dropped_connection_loses_no_audio_and_repeats_no_word(http: aiohttp.ClientSession) -> None:
    audio = speechlike(1.4, ULAW) + silence(0.6, ULAW) + speechlike(2.2, ULAW, seed=3) + silence(0.4, ULAW)
    faults = Faults(drop_after_bytes=ULAW.bytes_for(2.6))
    async with running_rt_server(faults) as server, openai_worker(server) as worker:
        call = await connect(http, worker, "oa-drop", ULAW_QUERY)
        await call.send_frames(frames(audio, ULAW), pace_s=0.004)
        await call.end()
        await call.collect()
        failed = await metric(
            http, worker, 'asr_provider_connections_failed_total{provider="openai",reason="connection_lost"}'
        )
    assert call.final_words() == expected_words(audio, ULAW)
    assert call.of("session_ended")[0]["reconnects"] == 1 and failed == 1
    first, second = server.connections
    assert first.ended_by == "abort"
    # The second connection replays from the end of the last completed item, without a gap.
    assert audio.endswith(bytes(second.audio))
    assert len(first.audio) + len(second.audio) >= len(audio)
    assert bytes(first.audio) == audio[: len(first.audio)]


@pytest.mark.parametrize("status", [429, 503])
async def test_a_refused_handshake_that_may_pass_later_is_retried(
    http: aiohttp.ClientSession, status: int
) -> None:
    audio = speechlike(1.0, ULAW) + silence(0.4, ULAW)
    faults = Faults(refuse_status=status, refuse_connections=2)
    async with running_rt_server(faults) as server, openai_worker(server) as worker:
        call = await connect(http, worker, "oa-retry", ULAW_QUERY)
        await call.send_frames(frames(audio, ULAW), pace_s=0.002)
        await call.end()
        await call.collect()
    assert server.refused == 2 and len(server.connections) == 1
    assert call.final_words() == expected_words(audio, ULAW)


async def test_a_bad_key_fails_the_call_once_and_never_shows_the_key(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    faults = Faults(refuse_status=401)
    async with running_rt_server(faults) as server, openai_worker(server) as worker:
        call = await connect(http, worker, "oa-401", ULAW_QUERY)
        await call.send_frames(frames(speechlike(0.4, ULAW), ULAW))
        await call.collect()
        async with http.get(f"{base_url(worker)}/health") as response:
            health = await response.text()
        async with http.get(f"{base_url(worker)}/metrics") as response:
            metrics_text = await response.text()
    assert server.refused == 1
    [error] = call.of("error")
    assert "401" in str(error["message"])
    assert call.of("session_ended")[0]["reason"] != "end"
    for text in (health, metrics_text, caplog.text, str(call.events)):
        assert KEY not in text


@pytest.mark.parametrize("fault", ["stall_after_bytes", "drop_completed_after_bytes"])
async def test_a_server_that_never_completes_is_given_up_and_the_call_replayed(
    http: aiohttp.ClientSession, fault: str
) -> None:
    """After 1.9 s of audio the server reads on but sends nothing (or everything but
    `completed`): the end's commit is not completed, and within `finalize_timeout_s` the
    worker replaces the connection, replays what no `completed` covered, commits again, and
    every word arrives once."""
    audio = speechlike(1.0, ULAW) + silence(0.6, ULAW) + speechlike(1.2, ULAW, seed=8) + silence(0.4, ULAW)
    faults = Faults(**{fault: ULAW.bytes_for(1.9)})
    async with running_rt_server(faults) as server, openai_worker(server, finalize_timeout_s=0.5) as worker:
        call = await connect(http, worker, "oa-stall", ULAW_QUERY)
        await call.send_frames(frames(audio, ULAW), pace_s=0.002)
        await call.end()
        await call.collect()
        stalls = await metric(http, worker, "asr_openai_stalls_total")
    assert call.final_words() == expected_words(audio, ULAW)
    assert call.of("session_ended")[0]["reason"] == "end" and stalls == 1
    first, second = server.connections
    assert (
        len(first.sent("input_audio_buffer.commit")) == 1
        and len(second.sent("input_audio_buffer.commit")) == 1
    )
    assert audio.endswith(bytes(second.audio)) and len(second.audio) < len(audio)


async def test_a_refused_session_fails_the_call_without_retrying(http: aiohttp.ClientSession) -> None:
    """An endpoint that answers the session update with an error (a format or model it does not
    take): the same session again would be refused again, so the call fails at once."""
    opened = 0

    async def realtime(request: web.Request) -> web.StreamResponse:
        nonlocal opened
        opened += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        update = json.loads(await ws.receive_str())
        error = {"type": "invalid_request_error", "code": "unsupported", "message": "no such model"}
        await ws.send_str(json.dumps({"type": "error", "error": {**error, "event_id": update["event_id"]}}))
        async for _ in ws:
            pass
        return ws

    async with serving("/v1/realtime", realtime) as port:
        options = OpenAIOptions(base_url=f"http://127.0.0.1:{port}/v1", api_key=Secret(KEY))
        async with running_worker(OpenAIProvider(options)) as worker:
            call = await connect(http, worker, "oa-refused", ULAW_QUERY)
            await call.send_frames(frames(speechlike(0.6, ULAW), ULAW), pace_s=0.002)
            await call.collect()
    assert opened == 1
    [error] = call.of("error")
    assert error["code"] == "provider_rejected" and "no such model" in str(error["message"])


def test_settings_make_the_provider_and_want_a_key_for_openai_itself() -> None:
    with pytest.raises(ConfigError, match=r"^OPENAI_API_KEY is required"):
        load_settings({"ASR_PROVIDER": "openai"})
    settings = load_settings(
        {
            "ASR_PROVIDER": "openai",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "OPENAI_TRANSCRIBE_MODEL": "whisper-1",
        }
    )
    made = make_provider(settings)
    assert isinstance(made, OpenAIProvider) and made.name == "openai"
    assert made.url == "ws://127.0.0.1:9/v1/realtime?intent=transcription"
    assert made.options.model == "whisper-1" and made.options.api_key is None


async def test_a_sloppy_server_gives_each_item_one_final(http: aiohttp.ClientSession) -> None:
    """A scripted endpoint that sends garbage, an unknown event, a second `completed` for one
    item and a delta after it: each item still makes one final, garbage is counted and skipped,
    and the call ends normally once the end's commit is completed."""

    async def realtime(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        script: list[object] = [
            protocol.session_event("created", "ga", SessionConfig(), "sess_1", "e0"),
            protocol.speech_started_event("item_1", 0, "e1"),
            protocol.delta_event("item_1", "hello", "e2"),
            "not json at all",
            {"type": "something.new"},
            protocol.speech_stopped_event("item_1", 400, "e3"),
            protocol.committed_event("item_1", None, "e4"),
            protocol.completed_event("item_1", "hello there", 0.4, "e5"),
            protocol.completed_event("item_1", "hello there", 0.4, "e6"),
            protocol.delta_event("item_1", " again", "e7"),
        ]
        appended = 0
        async for msg in ws:
            event = json.loads(msg.data)
            if event["type"] == "input_audio_buffer.append":
                appended += 1
                if appended == 1:
                    for item in script:
                        await ws.send_str(item if isinstance(item, str) else json.dumps(item))
            elif event["type"] == "input_audio_buffer.commit":
                await ws.send_str(json.dumps(protocol.committed_event("item_2", "item_1", "e8")))
                await ws.send_str(json.dumps(protocol.completed_event("item_2", "bye", 0.2, "e9")))
        return ws

    async with serving("/v1/realtime", realtime) as port:
        options = OpenAIOptions(base_url=f"http://127.0.0.1:{port}/v1", api_key=Secret(KEY))
        async with running_worker(OpenAIProvider(options)) as worker:
            call = await connect(http, worker, "oa-sloppy", ULAW_QUERY)
            await call.send_frames(frames(speechlike(0.6, ULAW), ULAW), pace_s=0.002)
            await call.end()
            await call.collect()
            garbage = await metric(http, worker, "asr_openai_garbage_messages_total")
    finals = [e for e in call.of("transcript") if e["is_final"]]
    assert [e["text"] for e in finals] == ["hello there", "bye"]
    assert finals[0]["end"] == pytest.approx(0.4) and finals[1]["from_finalize"]
    assert [e["text"] for e in call.of("transcript") if not e["is_final"]] == ["hello"]
    assert garbage == 2 and call.of("session_ended")[0]["reason"] == "end"


async def test_the_circuit_breaker_fails_new_calls_fast_while_the_endpoint_is_down(
    http: aiohttp.ClientSession,
) -> None:
    faults = Faults(refuse_status=503)
    async with running_rt_server(faults) as server:
        oa = provider(server, breaker_threshold=3, breaker_cooldown_s=60.0)
        async with running_worker(oa, max_retained_s=30.0) as worker:
            live = await connect(http, worker, "live", ULAW_QUERY)
            first = speechlike(0.4, ULAW)
            await live.send_frames(frames(first, ULAW))
            async with asyncio.timeout(10):
                while True:  # polled, bounded: until 3 refusals in a row open the circuit
                    if oa.breaker.opened_at is not None:
                        break
                    await asyncio.sleep(0.01)
            async with http.get(f"{base_url(worker)}/health") as response:
                down = await response.json()
            new = await connect(http, worker, "new", ULAW_QUERY)
            await new.send_frames(frames(speechlike(0.2, ULAW), ULAW))
            await new.collect()
            # The endpoint comes back: the live call's next reconnect is the probe that closes it.
            faults.refuse_status = 0
            second = speechlike(0.4, ULAW, seed=2) + silence(0.4, ULAW)
            await live.send_frames(frames(second, ULAW))
            await live.end()
            await live.collect(timeout_s=30)
            async with http.get(f"{base_url(worker)}/health") as response:
                up = await response.json()
            failed_fast = await metric(http, worker, "asr_openai_calls_failed_fast_total")
    assert down["status"] == "degraded" and "circuit open" in down["checks"]["provider"]["detail"]
    assert [e["code"] for e in new.of("error")] == ["provider_unavailable"] and failed_fast == 1
    assert live.final_words() == expected_words(first + second, ULAW)
    assert up["status"] == "ok"


async def test_an_outage_of_the_openai_endpoint_moves_calls_to_the_fallback(
    http: aiohttp.ClientSession,
) -> None:
    """With a fallback, an endpoint refusing every handshake is an outage like Deepgram's: the
    call that opened the circuit moves, and a new call starts on the fallback without trying
    the endpoint (its circuit-open refusal is an outage, not the call's own failure)."""
    faults = Faults(refuse_status=503)
    fallback = MockProvider(MockOptions(), name="mock")
    audio = speechlike(0.6, ULAW, seed=8)
    async with running_rt_server(faults) as server:
        oa = provider(server, breaker_threshold=1, breaker_cooldown_s=60.0)
        async with running_worker(oa, fallback=fallback, fallback_provider="mock") as worker:
            first = await connect(http, worker, "first", ULAW_QUERY)
            await first.send_frames(frames(speechlike(0.2, ULAW), ULAW))
            await first.next_event("provider_changed")
            assert not oa.taking_new_calls()
            tried = server.refused
            new = await connect(http, worker, "new", ULAW_QUERY)
            await new.send_frames(frames(audio, ULAW))
            for call in (first, new):
                await call.end()
            await asyncio.gather(first.collect(), new.collect())
    assert server.refused == tried and not server.connections, "the new call never tried the endpoint"
    assert new.of("session_started")[0]["provider"] == "mock" and not new.of("provider_changed")
    assert new.final_words() == expected_words(audio, ULAW) and not new.of("error")
    assert (first.of("provider_changed")[0]["from"], first.of("provider_changed")[0]["to"]) == (
        "openai",
        "mock",
    )
