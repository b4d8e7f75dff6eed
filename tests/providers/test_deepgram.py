"""The Deepgram provider end to end: a real worker (ASR_PROVIDER=deepgram) streaming calls over
real sockets into the Deepgram-protocol test server (dg-server over the mock engine), which
records what it received and injects the faults a real Deepgram connection shows."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable

import aiohttp
import pytest

from asr_worker.credentials import Secret
from asr_worker.deepgram import protocol
from asr_worker.dgserver import ConnectionRecord, Faults
from asr_worker.errors import ProviderError
from asr_worker.providers.base import StreamRequest
from asr_worker.providers.deepgram import DeepgramOptions, DeepgramProvider
from asr_worker.providers.mock import expected_words
from asr_worker.worker import Worker
from tests.conftest import base_url, free_port
from tests.support.audio import PCM8K, frames, silence, speechlike
from tests.support.client import CallClient, connect
from tests.support.dg_server import deepgram_provider, deepgram_worker, running_dg_server

KEY = "dg-test-key-0123456789"


async def _metric(http: aiohttp.ClientSession, worker: Worker, name: str) -> float:
    async with http.get(f"{base_url(worker)}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll a condition, bounded: the tests' way to wait without racing."""
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


def _words(event: dict[str, object]) -> list[dict[str, float]]:
    words = event["words"]
    assert isinstance(words, list)
    return words


def _covered_bytes(conn: ConnectionRecord) -> int:
    """How much of this connection's audio its finals covered (finals tile the timeline)."""
    finals = [m for m in conn.sent_of("Results") if m["is_final"]]
    if not finals:
        return 0
    last = finals[-1]
    assert isinstance(last["start"], float | int) and isinstance(last["duration"], float | int)
    return PCM8K.bytes_for(float(last["start"]) + float(last["duration"]))


async def test_a_call_is_one_connection_with_the_right_query_header_audio_and_end(
    http: aiohttp.ClientSession,
) -> None:
    audio = speechlike(2.0) + silence(1.2) + speechlike(1.4, seed=2)
    chunks = frames(audio)
    async with running_dg_server(api_key=KEY) as server, deepgram_worker(server, KEY) as worker:
        call = await connect(http, worker, "call-1")
        await call.send_frames(chunks, pace_s=0.002)
        await call.end()
        await call.collect()
        reused = await _metric(http, worker, "asr_provider_connections_reused_total")
        created = await _metric(http, worker, "asr_provider_connections_created_total")
        handshakes_ok = await _metric(http, worker, 'asr_deepgram_handshakes_total{status="101"}')
    assert len(server.handshakes) == 1 and len(server.connections) == 1
    conn = server.connections[0]
    assert dict(conn.query) == {
        "encoding": "linear16",
        "sample_rate": "8000",
        "channels": "1",
        "model": "nova-3",
        "language": "en-US",
        "interim_results": "true",
        "punctuate": "true",
        "smart_format": "false",
        "endpointing": "300",
        "utterance_end_ms": "1000",
        "vad_events": "true",
    }
    assert conn.headers["Authorization"] == f"Token {KEY}"
    assert bytes(conn.audio) == audio  # byte for byte, once, on one connection
    # Reuse: many 20 ms frames, one connection, sent in fewer, larger messages.
    audio_messages = [n for kind, n in conn.messages if kind == "audio"]
    assert 0 not in audio_messages, "never an empty binary frame"
    assert len(audio_messages) < len(chunks)
    assert created == 1 and reused == len(chunks) - 1 and handshakes_ok == 1
    # End of call: Finalize, then CloseStream, after the last audio; Metadata, then close 1000.
    assert conn.control_types() == ["Finalize", "CloseStream"]
    assert conn.messages[-2:] == [("text", protocol.FINALIZE), ("text", protocol.CLOSE_STREAM)]
    assert json.loads(conn.sent[-1])["type"] == "Metadata" and conn.close_code == 1000
    assert call.final_words() == expected_words(audio, PCM8K)
    finals = [e for e in call.of("transcript") if e["is_final"]]
    assert finals[-1]["from_finalize"] is True
    ended = call.of("session_ended")[0]
    assert ended["reason"] == "end" and ended["reconnects"] == 0 and ended["audio_s"] == 4.6
    assert call.of("speech_started") and call.of("utterance_end")  # SpeechStarted/UtteranceEnd mapped
    assert [e["type"] for e in call.events][-1] == "session_ended" and not call.of("error")


async def test_racing_sources_of_one_call_open_one_connection(http: aiohttp.ClientSession) -> None:
    faults = Faults(handshake_delay_ms=300)
    async with (
        running_dg_server(faults=faults) as server,
        deepgram_worker(server, max_sources_per_call=20) as worker,
    ):
        sources = [await connect(http, worker, "race") for _ in range(20)]
        first = speechlike(0.02)
        await asyncio.gather(*(s.ws.send_bytes(first) for s in sources))
        await _wait_for(lambda: server.accepted >= 1)
        await sources[0].end()
        await asyncio.gather(*(s.collect() for s in sources))
    assert len(server.handshakes) == 1 and server.accepted == 1
    assert bytes(server.connections[0].audio) == first * 20


@pytest.mark.parametrize("fault", ["drop_after_ms", "close_1011_after_ms"])
async def test_a_dropped_connection_loses_no_audio_and_repeats_no_word(
    http: aiohttp.ClientSession, fault: str
) -> None:
    """Abort without a close frame (1006) or close 1011 after 1.5 s of audio: the worker
    reconnects, replays exactly the audio no final covered, and the transcript is whole."""
    audio = speechlike(1.3) + silence(0.5) + speechlike(2.2, seed=3)
    faults = Faults(**{fault: 1500}, fault_connections=1)
    async with running_dg_server(faults=faults) as server, deepgram_worker(server) as worker:
        call = await connect(http, worker, "drop-1")
        await call.send_frames(frames(audio), pace_s=0.004)
        await call.end()
        await call.collect()
        reconnected = await _metric(http, worker, "asr_provider_connections_reconnected_total")
        reason = "connection_lost" if fault == "drop_after_ms" else "provider_closed"
        failed = await _metric(
            http, worker, f'asr_provider_connections_failed_total{{provider="deepgram",reason="{reason}"}}'
        )
        replayed = await _metric(http, worker, "asr_audio_replayed_seconds_total")
    first, second = server.connections[0], server.connections[1]
    assert len(server.connections) == 2 and reconnected == 1 and failed == 1
    assert first.closed_by in ("abort", "server") and first.close_code in (1006, 1011)
    covered = _covered_bytes(first)
    assert 0 < covered < len(first.audio), "the drop left audio no final had covered"
    # Every byte of the call reached the server's transcription exactly once: what the first
    # connection's finals covered, then the second connection from exactly that byte on.
    assert bytes(first.audio[:covered]) + bytes(second.audio) == audio
    assert bytes(first.audio) == audio[: len(first.audio)]
    assert replayed == pytest.approx(PCM8K.seconds(len(first.audio) - covered))
    # ... and the call's final words are complete and unrepeated, with call-relative times.
    assert call.final_words() == expected_words(audio, PCM8K)
    finals = [e for e in call.of("transcript") if e["is_final"] and e["words"]]
    starts = [float(w["start"]) for e in finals for w in _words(e)]
    assert starts == sorted(starts) and len(starts) == len(set(starts))
    assert float(str(finals[-1]["end"])) <= 4.0 + 1e-6
    ended = call.of("session_ended")[0]
    assert ended["reconnects"] == 1 and ended["reason"] == "end"


@pytest.mark.parametrize(("keepalive_s", "expect_idle_close"), [(0.3, False), (5.0, True)])
async def test_a_silent_caller_is_kept_alive_with_keepalives(
    http: aiohttp.ClientSession, keepalive_s: float, expect_idle_close: bool
) -> None:
    """15 s of caller silence against Deepgram's 10 s idle close, with every time scaled by
    1/10: the server's idle timeout is 1 s, the worker's keep-alive 0.3 s (its default 3 s
    against 10 s, scaled), the silence 1.5 s. The control case (keep-alive 5 s, longer than
    the idle timeout) shows the test server really does close idle streams with NET-0001."""
    speech_1, speech_2 = speechlike(0.6), speechlike(0.6, seed=9)
    async with (
        running_dg_server(idle_timeout_s=1.0) as server,
        deepgram_worker(server, keepalive_s=keepalive_s, session_grace_s=30.0) as worker,
    ):
        call = await connect(http, worker, "quiet")
        await call.send_frames(frames(speech_1))
        await call.next_event("transcript")
        await asyncio.sleep(1.5)  # the caller says nothing: no audio at all reaches the worker
        await call.send_frames(frames(speech_2))
        await call.end()
        await call.collect()
    first = server.connections[0]
    if not expect_idle_close:
        assert len(server.connections) == 1 and first.close_code == 1000
        assert first.control_types().count("KeepAlive") >= 3
        assert call.of("session_ended")[0]["reconnects"] == 0
    else:
        assert first.close_code == 1011 and first.close_reason == protocol.NET0001_REASON
        assert len(server.connections) >= 2  # the worker reconnected; nothing was lost either
    assert call.final_words() == expected_words(speech_1 + speech_2, PCM8K)


async def test_a_bad_key_fails_the_call_with_one_clear_error_and_no_retry(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        running_dg_server(api_key=KEY) as server,
        deepgram_worker(server, "wrong-key-987654") as worker,
    ):
        call = await connect(http, worker, "bad-key")
        await call.send_frames(frames(speechlike(1.0)))
        await call.collect()
        async with http.get(f"{base_url(worker)}/health") as response:
            health = await response.json()
        await asyncio.sleep(0.3)  # would a retry storm start? (none may)
        handshakes = len(server.handshakes)
    errors = call.of("error")
    assert len(errors) == 1 and errors[0]["code"] == "unauthorized"
    message = str(errors[0]["message"])
    assert "401" in message and "INVALID_AUTH" in message and "Invalid credentials." in message
    assert call.of("session_ended")[0]["reason"] == "provider_error"
    assert handshakes == 1
    assert health["status"] == "degraded" and "INVALID_AUTH" in health["checks"]["provider"]["detail"]
    everything = caplog.text + json.dumps(call.events) + json.dumps(health)
    assert "wrong-key-987654" not in everything and KEY not in everything


async def test_a_handshake_429_is_retried_after_retry_after_then_succeeds(
    http: aiohttp.ClientSession,
) -> None:
    audio = speechlike(2.0, seed=4)
    faults = Faults(reject_status=429, reject_count=2, retry_after_s=1)
    async with running_dg_server(faults=faults) as server, deepgram_worker(server) as worker:
        call = await connect(http, worker, "busy")
        await call.send_frames(frames(audio))
        await call.end()
        await call.collect(timeout_s=30)
        rate_limited = await _metric(http, worker, 'asr_deepgram_handshakes_total{status="429"}')
    statuses = [h.status for h in server.handshakes]
    assert statuses == [429, 429, 101] and rate_limited == 2
    gaps = [b.at - a.at for a, b in itertools.pairwise(server.handshakes)]
    assert all(gap >= 0.95 for gap in gaps), f"Retry-After: 1 was not honoured: {gaps}"
    assert bytes(server.connections[0].audio) == audio
    assert call.final_words() == expected_words(audio, PCM8K) and not call.of("error")


async def test_garbage_and_slow_replies_from_the_server_are_survived(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    audio = speechlike(2.4, seed=6) + silence(1.2)
    faults = Faults(garbage_every=2, reply_delay_ms=20)
    async with running_dg_server(faults=faults) as server, deepgram_worker(server) as worker:
        call = await connect(http, worker, "garbage")
        await call.send_frames(frames(audio))
        await call.end()
        await call.collect()
        garbage = await _metric(http, worker, "asr_deepgram_garbage_messages_total")
    assert call.final_words() == expected_words(audio, PCM8K)
    assert len(server.connections) == 1 and not call.of("error")
    assert garbage >= 5  # every kind of garbage was sent at least once and counted
    warnings = [r for r in caplog.records if "not valid protocol" in r.getMessage()]
    assert len(warnings) == 1, "one log line per stream, not one per message"


async def test_undecodable_audio_1008_fails_the_call_without_retrying(http: aiohttp.ClientSession) -> None:
    faults = Faults(close_1008_after_ms=400, fault_connections=0)
    async with running_dg_server(faults=faults) as server, deepgram_worker(server) as worker:
        call = await connect(http, worker, "bad-audio")
        with contextlib.suppress(ConnectionError):  # the worker ends the failed call's socket
            await call.send_frames(frames(speechlike(1.5)), pace_s=0.004)
        await call.collect()
    errors = call.of("error")
    assert [e["code"] for e in errors] == ["provider_rejected"]
    assert "1008" in str(errors[0]["message"]) and len(server.connections) == 1


async def test_the_circuit_breaker_fails_new_calls_fast_while_deepgram_is_down(
    http: aiohttp.ClientSession,
) -> None:
    faults = Faults(reject_status=503)
    async with running_dg_server(faults=faults) as server:
        provider = deepgram_provider(server, breaker_threshold=3, breaker_cooldown_s=60.0)
        async with deepgram_worker(server, provider=provider, max_retained_s=30.0) as worker:
            live = await connect(http, worker, "live")
            await live.send_frames(frames(speechlike(0.4)))
            await _wait_for(lambda: provider.breaker.opened_at is not None)  # 3 refusals in a row
            async with http.get(f"{base_url(worker)}/health") as response:
                down = await response.json()
            started = asyncio.get_running_loop().time()
            new = await connect(http, worker, "new")
            await new.send_frames(frames(speechlike(0.2)))
            await new.collect()
            failed_in_s = asyncio.get_running_loop().time() - started
            tried = len(server.handshakes)
            # Deepgram comes back: the live call's next reconnect is the probe that closes it.
            faults.reject_status = 0
            await live.send_frames(frames(speechlike(0.4, seed=2)))
            await live.end()
            await live.collect(timeout_s=30)
            async with http.get(f"{base_url(worker)}/health") as response:
                up = await response.json()
            failed_fast = await _metric(http, worker, "asr_deepgram_calls_failed_fast_total")
    assert down["status"] == "degraded" and "circuit open" in down["checks"]["provider"]["detail"]
    assert [e["code"] for e in new.of("error")] == ["provider_unavailable"]
    assert failed_in_s < 2.0 and failed_fast == 1
    assert all(h.status == 503 for h in list(server.handshakes)[:tried])
    assert live.final_words() == expected_words(speechlike(0.4) + speechlike(0.4, seed=2), PCM8K)
    assert up["status"] == "ok"


async def test_shutdown_finalizes_every_deepgram_call(http: aiohttp.ClientSession) -> None:
    async with running_dg_server() as server:
        calls: list[CallClient] = []
        async with deepgram_worker(server) as worker:
            for i in range(3):
                call = await connect(http, worker, f"shut-{i}")
                await call.send_frames(frames(speechlike(1.0, seed=i)))
                await call.next_event("transcript")
                calls.append(call)
        for call in calls:
            await call.collect()
    assert len(server.connections) == 3
    for conn in server.connections:
        assert conn.control_types()[-2:] == ["Finalize", "CloseStream"] and conn.close_code == 1000
    for i, call in enumerate(calls):
        assert call.of("session_ended")[0]["reason"] == "shutdown"
        assert call.final_words() == expected_words(speechlike(1.0, seed=i), PCM8K)


async def test_two_channel_calls_ask_for_multichannel(http: aiohttp.ClientSession) -> None:
    async with running_dg_server() as server, deepgram_worker(server) as worker:
        call = await connect(http, worker, "stereo", "encoding=linear16&sample_rate=8000&channels=2")
        await call.send_frames([silence(0.1) * 2])
        await _wait_for(lambda: server.accepted == 1)
        await call.end()
        await call.collect()
    query = dict(server.connections[0].query)
    assert query["channels"] == "2" and query["multichannel"] == "true"


async def test_a_silent_server_times_out_and_a_closed_port_fails_both_retryably() -> None:
    request = StreamRequest("call-1", None, PCM8K)
    async with running_dg_server(faults=Faults(handshake_delay_ms=800)) as server:
        provider = deepgram_provider(server, open_timeout_s=0.3)
        with pytest.raises(ProviderError) as timed_out:
            await provider.open(request)
    assert timed_out.value.code == "connect_timeout" and timed_out.value.retryable
    nobody = DeepgramProvider(
        DeepgramOptions(url=f"ws://127.0.0.1:{free_port()}/v1/listen", api_key=Secret("k"))
    )
    with pytest.raises(ProviderError) as refused:
        await nobody.open(request)
    assert refused.value.code == "connect_failed" and refused.value.retryable
    assert "k" not in refused.value.message.split()


@pytest.mark.parametrize(
    ("status", "code", "err_code"),
    [
        (400, "bad_request", "Bad Request"),
        (402, "payment_required", "ASR_PAYMENT_REQUIRED"),
        (403, "forbidden", "FORBIDDEN"),
    ],
)
async def test_every_fatal_refusal_fails_the_call_once_with_deepgrams_words(
    http: aiohttp.ClientSession, status: int, code: str, err_code: str
) -> None:
    async with (
        running_dg_server(faults=Faults(reject_status=status)) as server,
        deepgram_worker(server) as worker,
    ):
        call = await connect(http, worker, f"refused-{status}")
        with contextlib.suppress(ConnectionError):
            await call.send_frames(frames(speechlike(0.5)))
        await call.collect()
    errors = call.of("error")
    assert [e["code"] for e in errors] == [code] and err_code in str(errors[0]["message"])
    assert len(server.handshakes) == 1


@pytest.mark.parametrize("stall_after_ms", [1000, 0])
async def test_a_connection_that_stops_answering_is_given_up_and_its_audio_replayed(
    http: aiohttp.ClientSession, stall_after_ms: int
) -> None:
    """After 1 s of audio the server goes on reading (and answering pings) but sends nothing
    more, as a stalled Deepgram does: pings alone would keep that connection, and every word
    said into it, forever. With audio outstanding and no answer for `stall_timeout_s` (0.5 s
    here, 10 s by default) the worker gives it up mid-call, reconnects and replays what no
    final covered, and the transcript is whole. The Finalize watchdog is set far beyond the
    call, so only the mid-call one can save it. The control case (no stall) shows that a
    connection that answers is not taken for stalled at the same tight timeout."""
    audio = speechlike(1.4) + silence(0.4) + speechlike(1.6, seed=5)
    async with running_dg_server(faults=Faults(stall_after_ms=stall_after_ms)) as server:
        provider = deepgram_provider(server, stall_timeout_s=0.5, finalize_stall_timeout_s=30.0)
        async with deepgram_worker(server, provider=provider) as worker:
            call = await connect(http, worker, "stall")
            await call.send_frames(frames(audio), pace_s=0.01)
            await call.end()
            await call.collect()
            stalls = await _metric(http, worker, "asr_deepgram_stalls_total")
            failed = await _metric(
                http, worker, 'asr_provider_connections_failed_total{provider="deepgram",reason="stalled"}'
            )
    assert call.final_words() == expected_words(audio, PCM8K) and not call.of("error")
    if stall_after_ms:
        assert server.injected["stall"] == 1 and stalls == 1 and failed == 1
        assert len(server.connections) == 2 and call.of("session_ended")[0]["reconnects"] == 1
        assert server.connections[0].control_types() == []  # given up before the call's end
    else:
        assert stalls == 0 and len(server.connections) == 1


async def test_a_finalize_that_goes_unanswered_is_retried_on_a_new_connection_in_time(
    http: aiohttp.ClientSession,
) -> None:
    """The server stops answering just before the call ends, so the Finalize and CloseStream
    get nothing back. Within `finalize_stall_timeout_s` (0.5 s here, 2 s by default; the
    mid-call watchdog is out of reach) the worker replaces the connection, replays, finalizes
    again, and the call ends with every word, well before `ASR_FINALIZE_TIMEOUT_S` (5 s) would
    have given the last words up."""
    audio = speechlike(1.0) + silence(0.3) + speechlike(0.9, seed=8)
    async with running_dg_server(faults=Faults(stall_after_ms=2000)) as server:
        provider = deepgram_provider(server, stall_timeout_s=30.0, finalize_stall_timeout_s=0.5)
        async with deepgram_worker(server, provider=provider) as worker:
            call = await connect(http, worker, "stall-at-end")
            await call.send_frames(frames(audio), pace_s=0.002)
            loop = asyncio.get_running_loop()
            ended_at = loop.time()
            await call.end()
            await call.collect()
            took_s = loop.time() - ended_at
    assert call.final_words() == expected_words(audio, PCM8K) and not call.of("error")
    assert call.of("session_ended")[0]["reason"] == "end" and took_s < 3.0
    first, second = server.connections[0], server.connections[1]
    assert first.control_types()[-2:] == ["Finalize", "CloseStream"] and not first.sent_of("Metadata")
    assert second.control_types()[-2:] == ["Finalize", "CloseStream"] and second.close_code == 1000
