"""The bus's outgoing queue on its own (no Redis needed: it is what happens while Redis is
away): bounded, interims go first, and a call's end is never the one dropped."""

from __future__ import annotations

import json

from asr_worker.bus.redis import RedisOptions
from asr_worker.bus.redis.bus import RedisStreamsBus
from asr_worker.bus.redis.outbox import Finish, Outbox, Outgoing
from asr_worker.bus.redis.wire import Frame, next_id, parse_announcement, parse_frame
from asr_worker.core.events import CallEvent, SessionEnded, Transcript
from asr_worker.jsonwire import dumps_event_text
from tests.support.audio import PCM8K


def event(seq: int, kind: str = "transcript", *, final: bool = True, call: str = "q-1") -> CallEvent:
    if kind == "session_ended":
        return SessionEnded(call, None, seq, "end", 1.0, 0, 1, "mock", 0)
    return Transcript(call, None, seq, 0, final, final, False, "x", 0.9, 0.0, 1.0, (), "mock", 0, 0)


def outgoing(seq: int, kind: str = "transcript", *, final: bool = True, call: str = "q-1") -> Outgoing:
    finish = Finish.EXPIRE if kind == "session_ended" else Finish.NONE
    data = dumps_event_text(event(seq, kind, final=final, call=call))
    return Outgoing(call, seq, False, data, None, finish, interim=not final)


def test_the_queue_is_bounded_dropping_interims_first_then_the_oldest() -> None:
    outbox = Outbox(max_events=4)
    for seq in range(1, 5):
        assert outbox.put(outgoing(seq)) is None
    dropped = outbox.put(outgoing(5, final=False))  # full: the incoming interim goes
    assert dropped is not None and dropped.seq == 5
    assert outbox.queued() == [("q-1", 1), ("q-1", 2), ("q-1", 3), ("q-1", 4)]
    dropped = outbox.put(outgoing(6))  # full: a final makes room by dropping the oldest
    assert dropped is not None and dropped.seq == 1
    assert outbox.queued() == [("q-1", 2), ("q-1", 3), ("q-1", 4), ("q-1", 6)]


def test_a_call_end_is_never_dropped() -> None:
    outbox = Outbox(max_events=2)
    outbox.put(outgoing(9, "session_ended", call="a"))
    outbox.put(outgoing(9, "session_ended", call="b"))
    assert outbox.put(outgoing(3, call="c")) is None  # nothing droppable: kept, beyond the bound by one
    assert outbox.queued() == [("a", 9), ("b", 9), ("c", 3)]
    dropped = outbox.put(outgoing(4, call="c"))
    assert dropped is not None and (dropped.tag, dropped.seq) == ("c", 3)
    assert outbox.queued() == [("a", 9), ("b", 9), ("c", 4)]


def test_the_bus_counts_and_shows_what_its_full_queue_dropped() -> None:
    """Redis never connected: every event waits, and past the bound the bus drops and says so."""
    bus = RedisStreamsBus(RedisOptions(), max_queued_events=4)
    for seq in range(1, 5):
        bus.publish(event(seq))
    assert bus.status()["eventsQueued"] == 4 and bus.status()["eventsDropped"] == 0
    bus.publish(event(5, final=False))
    bus.publish(event(6))
    assert bus.counters.events_dropped == 2
    assert bus.status()["eventsDropped"] == 2 and bus.status()["eventsQueued"] == 4


def test_announcements_and_frames_are_checked() -> None:
    good = json.dumps({"interaction_id": "c-1", "tenant_id": "t", "encoding": "pcm16", "sample_rate": 8000})
    announcement, iid, problem = parse_announcement(good.encode())
    assert announcement is not None and announcement.fmt == PCM8K and iid == "t/c-1" and not problem
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

    bus = RedisStreamsBus(RedisOptions(url="redis://user:s3cret-pw@10.0.0.5:6390/2"))
    assert "s3cret-pw" not in json.dumps(bus.status())
    assert bus.status()["redis"] == "10.0.0.5:6390/2"
    assert logs.redact("Error connecting with s3cret-pw") == "Error connecting with ********"
