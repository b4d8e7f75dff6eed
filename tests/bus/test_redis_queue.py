"""The bus's outgoing queue on its own (no Redis needed: it is what happens while Redis is
away): bounded, interims go first, and a call's end is never the one dropped."""

from __future__ import annotations

import json

import pytest

from asr_worker.bus import redis_streams
from asr_worker.bus.redis_streams import RedisStreamsBus
from asr_worker.bus.redis_wire import Frame, next_id, parse_announcement, parse_frame
from asr_worker.config import Settings
from asr_worker.core.events import CallEvent, SessionEnded, Transcript
from tests.support.audio import PCM8K


def event(seq: int, kind: str = "transcript", *, final: bool = True, call: str = "q-1") -> CallEvent:
    if kind == "session_ended":
        return SessionEnded(call, None, seq, "end", 1.0, 0, 1, 0)
    return Transcript(call, None, seq, 0, final, final, False, "x", 0.9, 0.0, 1.0, (), "mock", 0, 0)


def queued(bus: RedisStreamsBus) -> list[tuple[str, int]]:
    return [(json.loads(item.data)["type"], item.seq) for item in bus._outbox]


def test_the_queue_is_bounded_dropping_interims_first_then_the_oldest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_streams, "MAX_QUEUED_EVENTS", 4)
    bus = RedisStreamsBus(Settings(pubsub_adapter="redis_streams"))
    for seq in range(1, 5):
        bus.publish(event(seq))
    bus.publish(event(5, final=False))  # full: the incoming interim goes
    assert [seq for _, seq in queued(bus)] == [1, 2, 3, 4]
    bus.publish(event(6))  # full: a final makes room by dropping the oldest
    assert [seq for _, seq in queued(bus)] == [2, 3, 4, 6]
    assert bus.counters.events_dropped == 2
    assert bus.status()["eventsDropped"] == 2 and bus.status()["eventsQueued"] == 4


def test_a_call_end_is_never_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_streams, "MAX_QUEUED_EVENTS", 2)
    bus = RedisStreamsBus(Settings(pubsub_adapter="redis_streams"))
    bus.publish(event(9, "session_ended", call="a"))
    bus.publish(event(9, "session_ended", call="b"))
    bus.publish(event(3, call="c"))  # nothing droppable: kept, beyond the bound by one
    assert queued(bus) == [("session_ended", 9), ("session_ended", 9), ("transcript", 3)]
    bus.publish(event(4, call="c"))
    assert queued(bus) == [("session_ended", 9), ("session_ended", 9), ("transcript", 4)]


def test_announcements_and_frames_are_checked() -> None:
    good = json.dumps({"interaction_id": "c-1", "tenant_id": "t", "encoding": "pcm16", "sample_rate": 8000})
    announcement, iid, problem = parse_announcement(good.encode())
    assert announcement is not None and announcement.fmt == PCM8K and iid == "c-1" and not problem
    for raw, wanted in [
        (b"nope", "not a JSON object"),
        (json.dumps({"interaction_id": "bad id"}).encode(), "interaction_id must be"),
        (json.dumps({"interaction_id": "c-2", "encoding": "opus"}).encode(), "unknown encoding"),
        (json.dumps({"interaction_id": "c-3", "sample_rate": 4000}).encode(), "outside 8000-48000"),
    ]:
        announcement, _, problem = parse_announcement(raw)
        assert announcement is None and wanted in problem
    assert parse_frame(json.dumps({"end": True}).encode(), PCM8K) == Frame(end=True)
    assert parse_frame(json.dumps({"audio": "AAA="}).encode(), PCM8K) == Frame(audio=b"\x00\x00")
    assert "base64" in str(parse_frame(json.dumps({"audio": "#"}).encode(), PCM8K))
    assert "mulaw" in str(parse_frame(json.dumps({"audio": "", "encoding": "mulaw"}).encode(), PCM8K))
    assert next_id("1700000000000-7") == "1700000000000-8"


def test_the_redis_password_is_never_shown() -> None:
    from asr_worker import logs

    bus = RedisStreamsBus(
        Settings(pubsub_adapter="redis_streams", redis_url="redis://user:s3cret-pw@10.0.0.5:6390/2")
    )
    assert "s3cret-pw" not in json.dumps(bus.status())
    assert bus.status()["redis"] == "10.0.0.5:6390/2"
    assert logs.redact("Error connecting with s3cret-pw") == "Error connecting with ********"
