"""The ingest WebSocket end to end: a real worker, real sockets, the mock provider."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from asr_worker.core.events import SessionEnded
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockOptions, MockProvider, expected_words
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.audio import PCM8K, frames, silence, speechlike
from tests.support.client import audio_url, connect


async def test_a_call_streams_transcripts_and_ends_with_session_ended(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    audio = speechlike(2.0) + silence(0.6) + speechlike(1.4, seed=2)
    call = await connect(http, worker, "call-1")
    await call.send_frames(frames(audio))
    await call.end()
    events = await call.collect()
    kinds = [e["type"] for e in events]
    assert kinds[0] == "session_started" and kinds[-1] == "session_ended"
    assert call.close_code == 1000
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    transcripts = call.of("transcript")
    first_final = next(i for i, e in enumerate(transcripts) if e["is_final"])
    assert not transcripts[0]["is_final"] and first_final > 0  # interims come before finals
    assert call.final_words() == expected_words(audio, PCM8K)
    for event in transcripts:
        assert {
            "channel",
            "seq",
            "is_final",
            "speech_final",
            "text",
            "confidence",
            "start",
            "end",
            "words",
            "provider",
            "latency_ms",
            "timestamp_ms",
            "tenant_id",
        } <= set(event)
    ended = call.of("session_ended")[0]
    assert ended["reason"] == "end" and ended["audio_s"] == 4.0 and ended["reconnects"] == 0
    assert mock_provider.opens == 1
    assert bytes(mock_provider.streams[0].received) == audio  # byte for byte
    assert mock_provider.streams[0].controls[-2:] == ["Finalize", "CloseStream"]


@pytest.mark.parametrize("name", ["finalize", "Finalize"])  # ours, and Deepgram's spelling
async def test_finalize_returns_the_pending_final_now_and_the_call_goes_on(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider, name: str
) -> None:
    # whole 200 ms word windows, fewer than the mock puts in one final by itself (5)
    first, then = speechlike(0.6), speechlike(0.8, seed=4)
    call = await connect(http, worker, f"turns-{name}")
    await call.send_frames(frames(first))
    await call.ws.send_str(json.dumps({"type": name}))
    while not (flushed := await call.next_event("transcript")).get("from_finalize"):
        pass
    assert flushed["is_final"] and str(flushed["text"]).split() == expected_words(first, PCM8K)
    assert mock_provider.streams[0].controls == ["Finalize"], "flushed, not closed"
    await call.send_frames(frames(then))  # the call goes on, on the same connection
    await call.end()
    await call.collect()
    assert not call.of("error") and call.of("session_ended")[0]["reason"] == "end"
    assert call.final_words() == expected_words(first + then, PCM8K)
    assert mock_provider.opens == 1 and mock_provider.streams[0].controls == [
        "Finalize",
        "Finalize",
        "CloseStream",
    ]


async def test_a_second_socket_feeds_the_same_session(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    first = await connect(http, worker, "shared")
    await first.next_event("session_started")
    second = await connect(http, worker, "shared")
    part1, part2 = speechlike(1.0, seed=3), speechlike(1.0, seed=4)
    await first.send_frames(frames(part1))
    await first.next_event("transcript")
    await second.send_frames(frames(part2))
    await second.end()
    events_1, events_2 = await asyncio.gather(first.collect(), second.collect())
    assert mock_provider.opens == 1
    assert bytes(mock_provider.streams[0].received) == part1 + part2
    assert events_1[-1]["type"] == events_2[-1]["type"] == "session_ended"
    assert first.final_words() == expected_words(part1 + part2, PCM8K)
    assert second.of("session_ended")[0]["seq"] == first.of("session_ended")[0]["seq"]


async def test_200_concurrent_first_frames_for_one_call_create_one_provider_stream(
    http: aiohttp.ClientSession,
) -> None:
    provider = MockProvider(MockOptions(open_delay_ms=300))
    async with running_worker(provider, max_sources_per_call=200) as worker:
        clients = await asyncio.gather(*(connect(http, worker, "busy-call") for _ in range(200)))
        frame = speechlike(0.02)
        await asyncio.gather(*(c.ws.send_bytes(frame) for c in clients))
        await asyncio.sleep(0.5)
        await clients[0].end()
        await asyncio.gather(*(c.collect() for c in clients))
    assert provider.open_attempts == 1 and provider.opens == 1
    assert len(provider.streams[0].received) == 200 * len(frame)
    assert all(c.of("session_ended") for c in clients)


async def test_50_calls_started_at_once_create_50_streams(http: aiohttp.ClientSession) -> None:
    provider = MockProvider(MockOptions(open_delay_ms=100))
    async with running_worker(provider) as worker:
        clients = await asyncio.gather(*(connect(http, worker, f"call-{i}") for i in range(50)))
        audio = speechlike(0.5)
        await asyncio.gather(*(c.send_frames(frames(audio)) for c in clients))
        await asyncio.gather(*(c.end() for c in clients))
        await asyncio.gather(*(c.collect() for c in clients))
    assert provider.opens == 50
    assert sorted(s.request.interaction_id for s in provider.streams) == sorted(
        f"call-{i}" for i in range(50)
    )


async def test_a_refused_provider_reaches_every_source_once_and_the_next_call_tries_again(
    http: aiohttp.ClientSession,
) -> None:
    provider = MockProvider(MockOptions(fail_opens=1, fail_fatal=True, open_delay_ms=100))
    async with running_worker(provider, max_sources_per_call=20) as worker:
        clients = await asyncio.gather(*(connect(http, worker, "doomed") for _ in range(20)))
        await asyncio.gather(*(c.ws.send_bytes(speechlike(0.02)) for c in clients))
        await asyncio.gather(*(c.collect() for c in clients))
        for c in clients:
            (error,) = c.of("error")
            assert error["code"] == "unauthorized" and "credentials" in str(error["message"])
            assert c.of("session_ended")[0]["reason"] == "provider_error"
        assert worker.manager.sessions == []  # nothing half-made left behind
        retry = await connect(http, worker, "doomed")
        await retry.send_frames(frames(speechlike(0.5)))
        await retry.end()
        await retry.collect()
        assert retry.of("session_ended")[0]["reason"] == "end" and not retry.of("error")
    assert provider.open_attempts == 2 and provider.opens == 1


async def test_a_dropped_provider_stream_is_replaced_without_losing_or_repeating_words(
    http: aiohttp.ClientSession,
) -> None:
    provider = MockProvider(MockOptions(drop_after_ms=1100, drop_streams=2))
    async with running_worker(provider) as worker:
        call = await connect(http, worker, "flaky")
        audio = speechlike(4.0, seed=9)
        await call.send_frames(frames(audio), pace_s=0.002)
        await call.end()
        await call.collect()
    assert call.final_words() == expected_words(audio, PCM8K)
    ended = call.of("session_ended")[0]
    assert ended["reconnects"] == 2 and provider.opens == 3
    finals = [e for e in call.of("transcript") if e["is_final"] and e["text"]]
    starts = [float(e["start"]) for e in finals]  # type: ignore[arg-type]
    assert starts == sorted(starts) and float(finals[-1]["end"]) <= 4.0  # type: ignore[arg-type]


@pytest.mark.parametrize("await_every", [0, 1, 3])
async def test_audio_sent_inline_or_by_the_session_loop_arrives_once_in_order(
    http: aiohttp.ClientSession, await_every: int
) -> None:
    """A stream that takes audio at once gets it from the socket's reader; one that declines
    (every send, or every third) gets it from the session's loop, after what came before."""
    provider = MockProvider(MockOptions(await_every=await_every))
    async with running_worker(provider) as worker:
        call = await connect(http, worker, "inline")
        audio = speechlike(3.0, seed=11)
        await call.send_frames(frames(audio), pace_s=0.002)
        await call.end()
        await call.collect()
    assert bytes(provider.streams[0].received) == audio
    assert call.final_words() == expected_words(audio, PCM8K)
    assert call.of("session_ended")[0]["reason"] == "end" and not call.of("error")


async def test_a_stream_that_drops_while_taking_audio_inline_loses_nothing(
    http: aiohttp.ClientSession,
) -> None:
    provider = MockProvider(MockOptions(await_every=2, drop_after_ms=900, drop_streams=2))
    async with running_worker(provider) as worker:
        call = await connect(http, worker, "inline-drop")
        audio = speechlike(3.0, seed=12)
        await call.send_frames(frames(audio), pace_s=0.002)
        await call.end()
        await call.collect()
    assert call.final_words() == expected_words(audio, PCM8K)
    assert call.of("session_ended")[0]["reconnects"] == 2 and provider.opens == 3


# --- bad input: a clear error, and nothing else disturbed --------------------------------------


async def test_bad_messages_get_errors_and_the_call_goes_on(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    call = await connect(http, worker, "messy")
    bystander = await connect(http, worker, "bystander")
    audio = speechlike(1.0)
    await call.send_frames(frames(audio)[:25])
    await call.ws.send_str("{not json")
    await call.ws.send_bytes(b"\x01\x02\x03")  # a sample and a half
    await call.ws.send_str(json.dumps({"type": "dance"}))
    await call.ws.send_str(json.dumps(["end"]))
    await call.ws.send_str(json.dumps({"type": "KeepAlive"}))
    await call.send_frames(frames(audio)[25:])
    await call.end()
    await bystander.send_frames(frames(speechlike(0.4)))
    await bystander.end()
    await asyncio.gather(call.collect(), bystander.collect())
    codes = [e["code"] for e in call.of("error")]
    assert codes == ["bad_message", "bad_audio", "unknown_message", "bad_message"]
    assert call.final_words() == expected_words(audio, PCM8K)
    assert call.of("session_ended")[0]["reason"] == "end"
    assert bytes(mock_provider.streams_for("messy")[0].received) == audio
    assert not bystander.of("error") and bystander.of("session_ended")


@pytest.mark.parametrize(
    ("path_id", "query", "message"),
    [
        ("bad%20id", "encoding=linear16", "interaction_id must be 1-128 characters"),
        ("x" * 129, "encoding=linear16", "interaction_id must be 1-128 characters"),
        ("semi%3Bcolon", "encoding=linear16", "interaction_id must be"),
        ("ok-id", "encoding=opus", "unknown encoding 'opus'"),
        ("ok-id", "encoding=linear16&sample_rate=4000", "sample_rate 4000"),
        ("ok-id", "encoding=linear16&channels=3", "channels must be 1 or 2"),
        ("ok-id", "encoding=linear16&tenant_id=a%20b", "tenant_id must be"),
    ],
)
async def test_bad_ids_and_formats_are_refused_with_a_reason(
    worker: Worker, http: aiohttp.ClientSession, path_id: str, query: str, message: str
) -> None:
    ws = await http.ws_connect(f"ws://127.0.0.1:{worker.port}/v1/audio/{path_id}?{query}")
    msg = await ws.receive()
    error = json.loads(msg.data)
    assert error["type"] == "error" and error["code"] == "bad_request" and message in error["message"]
    await ws.receive()
    assert ws.close_code == 1008
    assert worker.manager.sessions == []


async def test_a_source_with_another_format_is_refused_without_disturbing_the_call(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    call = await connect(http, worker, "pinned")
    await call.next_event("session_started")
    other = await http.ws_connect(audio_url(worker, "pinned", "encoding=mulaw&sample_rate=8000"))
    error = json.loads((await other.receive()).data)
    assert error["code"] == "format_mismatch"
    await call.send_frames(frames(speechlike(0.4)))
    await call.end()
    await call.collect()
    assert not call.of("error") and call.of("session_ended")


async def test_plain_http_on_the_socket_path_says_upgrade_required(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{base_url(worker)}/v1/audio/call-1") as response:
        assert response.status == 426
        assert (await response.json())["error"] == "websocket_required"


async def test_a_call_whose_socket_drops_finalizes_after_the_grace_period(
    http: aiohttp.ClientSession,
) -> None:
    provider = MockProvider()
    async with running_worker(provider, session_grace_s=0.3) as worker:
        watcher = worker.hub.subscribe(CallKey("default", "dropped"))
        call = await connect(http, worker, "dropped")
        await call.send_frames(frames(speechlike(1.0)))
        await call.ws.close()
        async with asyncio.timeout(5):
            async for event in watcher:
                if isinstance(event, SessionEnded):
                    assert event.reason == "grace_timeout"
                    break
    assert provider.streams[0].controls[-2:] == ["Finalize", "CloseStream"]


async def test_a_refusal_quoting_non_ascii_input_closes_with_a_valid_reason(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(audio_url(worker, "ok-id", "encoding=linear16&tenant_id=" + "%C3%A9" * 50))
    error = json.loads((await ws.receive()).data)
    assert error["code"] == "bad_request" and "tenant_id must be" in error["message"]
    msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 1008
