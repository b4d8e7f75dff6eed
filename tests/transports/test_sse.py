"""Server-Sent Events: a call's events with resume, every call's events, keep-alives, shutdown."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from asr_worker.core.events import EventsDropped, Refusal, Transcript
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockProvider
from asr_worker.transports import sse
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.audio import frames, speechlike
from tests.support.client import connect
from tests.support.telephony import open_sse


async def run_call(
    http: aiohttp.ClientSession, worker: Worker, interaction_id: str, seconds: float = 1.0
) -> None:
    call = await connect(http, worker, interaction_id)
    await call.send_frames(frames(speechlike(seconds)))
    await call.end()
    await call.collect()


async def test_a_call_stream_has_ids_types_and_json_and_ends_after_session_ended(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    watcher = await open_sse(http, worker, "/v1/calls/sse-1/events")
    assert watcher.response.status == 200
    assert watcher.response.headers["Content-Type"].startswith("text/event-stream")
    assert watcher.response.headers["Cache-Control"] == "no-cache"
    call = await connect(http, worker, "sse-1")
    await call.send_frames(frames(speechlike(1.0)))
    await call.end()
    socket_events = await call.collect()
    events = await watcher.rest()
    assert [e.data for e in events] == socket_events  # the same events as the ingest socket
    assert [e.id for e in events] == [str(e["seq"]) for e in socket_events]
    assert [e.event for e in events] == [e["type"] for e in socket_events]
    assert events[-1].event == "session_ended"


async def test_last_event_id_resumes_after_that_seq_and_a_finished_call_answers_204(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    await run_call(http, worker, "sse-2")
    everything = await (await open_sse(http, worker, "/v1/calls/sse-2/events")).rest()
    assert everything[0].event == "session_started" and everything[-1].event == "session_ended"
    last = int(str(everything[-1].id))
    resumed = await (await open_sse(http, worker, "/v1/calls/sse-2/events", {"Last-Event-ID": "3"})).rest()
    assert [e.id for e in resumed] == [str(seq) for seq in range(4, last + 1)]
    by_query = await (await open_sse(http, worker, "/v1/calls/sse-2/events?last_event_id=5")).rest()
    assert [e.id for e in by_query] == [str(seq) for seq in range(6, last + 1)]
    async with http.get(
        f"{base_url(worker)}/v1/calls/sse-2/events", headers={"Last-Event-ID": str(last)}
    ) as response:
        assert response.status == 204  # EventSource stops reconnecting


async def test_resume_in_the_middle_of_a_live_call_misses_nothing(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    call = await connect(http, worker, "sse-live")
    await call.send_frames(frames(speechlike(1.0)))
    await call.next_event("transcript")
    first = await open_sse(http, worker, "/v1/calls/sse-live/events")
    seen = await first.until("transcript")
    first.response.close()  # the browser lost its connection
    resumed = await open_sse(http, worker, "/v1/calls/sse-live/events", {"Last-Event-ID": str(seen.id)})
    await call.send_frames(frames(speechlike(1.0, seed=2)))
    await call.end()
    socket_events = await call.collect()
    rest = await resumed.rest()
    seen_seqs = [int(str(e.id)) for e in first.events] + [int(str(e.id)) for e in rest]
    assert seen_seqs == [e["seq"] for e in socket_events]


@pytest.mark.parametrize(
    ("path", "headers", "reason"),
    [
        ("/v1/calls/bad%20id/events", {}, "interaction_id must be"),
        ("/v1/calls/ok/events", {"Last-Event-ID": "seven"}, "Last-Event-ID must be an event seq"),
        ("/v1/calls/ok/events?last_event_id=-1", {}, "Last-Event-ID must be"),
        ("/v1/events?replay=100000", {}, "replay must be a whole number"),
    ],
)
async def test_bad_requests_get_400_with_a_reason(
    worker: Worker, http: aiohttp.ClientSession, path: str, headers: dict[str, str], reason: str
) -> None:
    async with http.get(f"{base_url(worker)}{path}", headers=headers) as response:
        assert response.status == 400
        body = await response.json()
        assert body["error"] == "bad_request" and reason in body["message"]


async def test_the_all_calls_stream_replays_active_calls_then_follows_every_call(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    ongoing = await connect(http, worker, "ongoing")
    await ongoing.send_frames(frames(speechlike(0.6)))
    await ongoing.next_event("transcript")
    await run_call(http, worker, "finished")  # over before the stream opens: not replayed
    stream = await open_sse(http, worker, "/v1/events")
    await run_call(http, worker, "later")
    await ongoing.end()
    await ongoing.collect()
    async with asyncio.timeout(10):
        async for event in stream:
            if event.event == "session_ended" and event.data["interaction_id"] == "ongoing":
                break
    calls = {str(e.data["interaction_id"]) for e in stream.events}
    assert calls == {"ongoing", "later"}
    ongoing_seqs = [e.data["seq"] for e in stream.events if e.data["interaction_id"] == "ongoing"]
    assert ongoing_seqs == [e["seq"] for e in ongoing.events]  # replayed from its start, no gap
    assert all(e.id is None for e in stream.events)  # seqs are per call: no ids on the shared stream
    stream.response.close()


async def test_idle_streams_get_keep_alive_comments(
    worker: Worker, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream with nothing to say sends a keep-alive comment, and stays open for what follows."""
    monkeypatch.setattr(sse, "KEEPALIVE_S", 0.05)
    stream = await open_sse(http, worker, "/v1/calls/quiet/events")
    lines: list[bytes] = []
    async with asyncio.timeout(5):  # a stream that sends no keep-alive fails here
        while b": keep-alive\n" not in lines:
            line = await stream.response.content.readline()
            assert line, f"the stream ended after {lines} without a keep-alive"
            lines.append(line)
    assert lines == [b"retry: 2000\n", b"\n", b": keep-alive\n"]  # nothing else was due
    worker.hub.publish(_transcript("quiet", 1, "still here"))
    event = await stream.until("transcript", timeout_s=5)
    assert event.id == "1" and event.data["text"] == "still here"
    stream.response.close()


async def test_open_streams_end_when_the_worker_shuts_down(http: aiohttp.ClientSession) -> None:
    async with running_worker(MockProvider()) as worker:
        waiting = await open_sse(http, worker, "/v1/calls/never/events")
        everything = await open_sse(http, worker, "/v1/events")
        await asyncio.sleep(0)  # both handlers are now parked on their subscriptions
        assert worker.hub.subscribers == 2
        loop = asyncio.get_running_loop()
        started = loop.time()
    assert loop.time() - started < 1.5  # not the server's 2 s forced shutdown
    assert await waiting.rest() == [] and await everything.rest() == []


async def test_resume_is_bounded_by_the_kept_history_and_drop_markers_are_sse_events(worker: Worker) -> None:
    for seq in range(1, 1201):
        worker.hub.publish(_transcript("flood", seq, "x"))
    # replays the kept history (500) into its queue
    sub = worker.hub.subscribe(CallKey("default", "flood"), after_seq=0)
    first = await sub.get()
    assert isinstance(first, Transcript) and first.seq == 701
    sub.close()
    assert sse.format_event(EventsDropped("x", 3)) == (
        b'event: events_dropped\ndata: {"type":"events_dropped","interaction_id":"x","count":3}\n\n'
    )


def test_event_text_can_never_break_the_sse_framing() -> None:
    block = sse.format_event(_transcript("c", 4, "line one\nline two\r\n\ndata: forged"))
    lines = block.decode().split("\n")
    assert lines[:2] == ["id: 4", "event: transcript"]
    assert lines[2].startswith("data: {") and lines[3:] == ["", ""]
    refusal = sse.format_event(Refusal("bad\nevent: x", "line\nbreak"))
    assert refusal.decode().count("\n") == 3 and refusal.startswith(b"event: error\ndata: ")


def _transcript(call: str, seq: int, text: str) -> Transcript:
    return Transcript(call, None, seq, 0, True, True, False, text, 0.9, 0.0, 1.0, (), "mock", 0, 0)
