"""Failover in the session core, on a fake clock: each trigger moves a call to the fallback
once, the audio no final covered is replayed there with no word lost or repeated, a moved
call stays, and a full fallback leaves the call waiting on its primary and says so once."""

from __future__ import annotations

import pytest

from asr_worker.core.actions import OpenStream
from asr_worker.core.clock import FakeClock
from asr_worker.core.failover import Failover, FailoverConfig
from asr_worker.core.provider_events import TranscriptResult, Word
from asr_worker.core.session import Link
from asr_worker.errors import ProviderError
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.sim import Recorder, make_core

OUTAGE = ProviderError("service_unavailable", "HTTP 503", retryable=True, status=503, outage=True)
REFUSED = ProviderError("service_unavailable", "HTTP 503", retryable=True, status=503)
NETWORK = ProviderError("connect_failed", "connection refused", retryable=True)
DROP = ProviderError("connection_lost", "dropped", retryable=True)


class Slots:
    def __init__(self, room: int) -> None:
        self.room = room
        self.claims = 0

    def claim(self) -> bool:
        self.claims += 1
        if self.room <= 0:
            return False
        self.room -= 1
        return True


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def session(clock: FakeClock, room: int = 1, after_s: float = 10.0) -> tuple[Recorder, Slots]:
    slots = Slots(room)
    failover = Failover(FailoverConfig("local", after_s=after_s, refusals=3, retry_s=2.0), slots.claim)
    rec = Recorder(
        make_core(clock, provider="deepgram", failover=failover, backoff_initial_s=0.5, backoff_max_s=1.0),
        clock,
    )
    rec.core.attach_source("a", clock.monotonic())
    return rec, slots


def feed(rec: Recorder, audio: bytes) -> None:
    for frame in frames(audio):
        rec.core.on_audio(frame, rec.clock.monotonic())
        rec.run_until(rec.clock.monotonic() + 0.02)
    rec.run_until(rec.clock.monotonic() + 0.2)  # what waits goes out (ASR_MAX_BUFFER_MS)


def result(
    start: float, end: float, words: list[tuple[str, float, float]], final: bool = True
) -> TranscriptResult:
    ws = tuple(Word(w, s, e, 0.9) for w, s, e in words)
    return TranscriptResult(0, final, final, " ".join(w for w, _, _ in words), 0.9, start, end - start, ws)


def fallback_opens(rec: Recorder) -> list[OpenStream]:
    return [o for o in rec.opens() if o.fallback]


def moved_once(rec: Recorder, reason: str) -> dict[str, object]:
    (changed,) = rec.events("provider_changed")
    assert changed["from"] == "deepgram" and changed["to"] == "local" and changed["reason"] == reason
    assert rec.core.provider == "local"
    return changed


def test_an_outage_moves_the_call_at_once_and_the_fallback_hears_what_no_final_covered(
    clock: FakeClock,
) -> None:
    rec, slots = session(clock)
    audio = speechlike(3.0)
    feed(rec, audio[: PCM8K.bytes_for(2.0)])
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    # The primary finalizes the first second ("one two"), then drops with a word pending.
    rec.core.on_stream_event(1, result(0.0, 1.0, [("one", 0.1, 0.4), ("two", 0.5, 0.9)]), clock.monotonic())
    rec.core.on_stream_event(1, result(1.0, 1.6, [("three", 1.1, 1.5)], final=False), clock.monotonic())
    rec.core.on_stream_closed(1, DROP, clock.monotonic())
    rec.poll()
    assert not rec.events("provider_changed")  # one drop is a reconnect, not an outage
    rec.run_until(clock.monotonic() + 1.0)
    rec.core.on_stream_failed(2, OUTAGE, clock.monotonic())  # the breaker opened meanwhile
    rec.poll()
    changed = moved_once(rec, "circuit_open")
    assert changed["at"] == 1.0  # the fallback transcribes from where the last final ended
    (opened,) = fallback_opens(rec)
    assert opened.reconnect and slots.claims == 1
    rec.core.on_stream_opened(opened.conn_id, clock.monotonic())
    feed(rec, audio[PCM8K.bytes_for(2.0) :])
    # Replay: the fallback gets every byte from the covered point on, once, in order.
    assert rec.sent_bytes(opened.conn_id) == audio[PCM8K.bytes_for(1.0) :]
    # It hears "three", which the primary only had as an interim, at its own 0.1 s (call 1.1 s).
    fallback_final = result(0.0, 2.0, [("three", 0.1, 0.5), ("four", 1.2, 1.6)])
    rec.core.on_stream_event(opened.conn_id, fallback_final, clock.monotonic())
    rec.poll()
    finals = [e for e in rec.events("transcript") if e["is_final"]]
    assert [e["text"] for e in finals] == ["one two", "three four"]
    assert [e["provider"] for e in finals] == ["deepgram", "local"]
    assert [(w["word"], w["start"]) for w in finals[1]["words"]] == [("three", 1.1), ("four", 2.2)]
    assert finals[1]["start"] == 1.0 and finals[1]["end"] == 3.0  # call time, not stream time
    rec.core.end("end", clock.monotonic())
    rec.poll()
    rec.core.on_stream_closed(opened.conn_id, None, clock.monotonic())
    rec.poll()
    (ended,) = rec.events("session_ended")
    assert ended["provider"] == "local" and ended["reason"] == "end"
    assert [e["type"] for e in rec.events()].count("provider_changed") == 1


def test_refused_handshakes_beyond_the_reconnect_budget_move_the_call(clock: FakeClock) -> None:
    rec, _ = session(clock)
    feed(rec, speechlike(0.2))
    for attempt in (1, 2):
        rec.core.on_stream_failed(attempt, REFUSED, clock.monotonic())
        rec.run_until(clock.monotonic() + 1.0)
        assert not rec.events("provider_changed") and rec.opens()[-1] == OpenStream(attempt + 1, False)
    rec.core.on_stream_failed(3, REFUSED, clock.monotonic())
    rec.poll()
    moved_once(rec, "handshake_refused")
    assert rec.opens()[-1] == OpenStream(4, False, fallback=True)


def test_no_working_connection_for_failover_after_s_moves_the_call_then(clock: FakeClock) -> None:
    rec, _ = session(clock, after_s=5.0)
    started = clock.monotonic()
    feed(rec, speechlike(0.2))
    # Network errors (no HTTP status) and connections that open and drop before any result.
    while not rec.events("provider_changed"):
        conn = rec.opens()[-1].conn_id
        if conn % 2:
            rec.core.on_stream_failed(conn, NETWORK, clock.monotonic())
        else:
            rec.core.on_stream_opened(conn, clock.monotonic())
            rec.core.on_stream_closed(conn, DROP, clock.monotonic())
        deadline = rec.core.next_deadline()
        assert deadline is not None
        rec.run_until(deadline)
    moved_once(rec, "no_connection")
    moved_at = [t for t, a in rec.log if isinstance(a, OpenStream) and a.fallback]
    assert moved_at == [pytest.approx(started + 5.0)]


def test_a_connection_that_delivers_results_resets_the_clock(clock: FakeClock) -> None:
    rec, _ = session(clock, after_s=5.0)
    feed(rec, speechlike(0.2))
    rec.core.on_stream_failed(1, NETWORK, clock.monotonic())
    rec.run_until(clock.monotonic() + 4.0)
    conn = rec.opens()[-1].conn_id
    rec.core.on_stream_opened(conn, clock.monotonic())
    rec.core.on_stream_event(conn, result(0.0, 0.2, []), clock.monotonic())
    rec.core.on_stream_closed(conn, DROP, clock.monotonic())
    rec.run_until(clock.monotonic() + 4.0)  # 8 s since the first failure, 4 since the last result
    assert not rec.events("provider_changed")


def test_a_moved_call_stays_on_the_fallback_whatever_happens(clock: FakeClock) -> None:
    rec, slots = session(clock, room=5)
    feed(rec, speechlike(0.2))
    rec.core.on_stream_failed(1, OUTAGE, clock.monotonic())
    rec.poll()
    for _ in range(4):  # the fallback drops too, even with an outage: it reconnects there
        conn = rec.opens()[-1].conn_id
        rec.core.on_stream_opened(conn, clock.monotonic())
        rec.core.on_stream_closed(conn, OUTAGE, clock.monotonic())
        rec.run_until(clock.monotonic() + 20.0)
    assert len(rec.events("provider_changed")) == 1 and slots.claims == 1
    assert all(o.fallback for o in rec.opens()[1:])


def test_a_full_fallback_keeps_the_call_on_its_primary_says_so_once_then_moves_when_room_frees(
    clock: FakeClock,
) -> None:
    rec, slots = session(clock, room=0)
    feed(rec, speechlike(0.2))
    for _ in range(6):  # the breaker stays open: each attempt fails as an outage
        rec.core.on_stream_failed(rec.opens()[-1].conn_id, OUTAGE, clock.monotonic())
        rec.run_until(clock.monotonic() + 1.0)
    assert not rec.events("provider_changed") and not fallback_opens(rec)
    assert [e["code"] for e in rec.events("error")] == ["fallback_full"]
    assert rec.link() is not Link.IDLE and not rec.core.ended  # still waiting on its primary
    assert slots.claims == 3  # asked again every retry_s (2 s), not on every attempt
    slots.room = 1
    rec.core.on_stream_failed(rec.opens()[-1].conn_id, OUTAGE, clock.monotonic())
    rec.run_until(clock.monotonic() + 2.0)
    assert len(rec.events("provider_changed")) == 1 and len(fallback_opens(rec)) == 1
    assert [e["code"] for e in rec.events("error")] == ["fallback_full"]


def test_a_call_started_on_the_fallback_opens_there_and_says_so(clock: FakeClock) -> None:
    failover = Failover(FailoverConfig("local"))
    failover.started_moved("circuit_open", "deepgram", clock.monotonic())
    rec = Recorder(make_core(clock, provider="local", failover=failover), clock)
    feed(rec, speechlike(0.1))
    (started,) = rec.events("session_started")
    assert started["provider"] == "local" and rec.opens() == [OpenStream(1, False, fallback=True)]
    assert not rec.events("provider_changed")


def test_a_fatal_refusal_still_fails_the_call_and_without_a_fallback_nothing_changes(
    clock: FakeClock,
) -> None:
    rec, slots = session(clock)
    feed(rec, speechlike(0.1))
    rec.core.on_stream_failed(1, ProviderError("unauthorized", "bad key", retryable=False, status=401), 0.2)
    rec.poll()
    assert rec.core.ended and slots.claims == 0 and not rec.events("provider_changed")
    plain = Recorder(make_core(clock), clock)
    plain.core.on_audio(speechlike(0.1), clock.monotonic())
    plain.poll()
    plain.core.on_stream_failed(1, OUTAGE, clock.monotonic())
    plain.run_until(clock.monotonic() + 30.0)
    assert plain.opens()[-1].fallback is False and not plain.events("provider_changed")


def test_a_call_ending_while_its_primary_is_down_finishes_on_the_fallback(clock: FakeClock) -> None:
    """The end waits 5 s (ASR_FINALIZE_TIMEOUT_S) for the last finals: a call down on its
    primary moves after half that, well before ASR_FAILOVER_AFTER_S, and its tail is heard."""
    rec, _ = session(clock, after_s=10.0)
    audio = speechlike(1.0)
    feed(rec, audio)
    rec.core.on_stream_failed(1, NETWORK, clock.monotonic())
    ended_at = clock.monotonic()
    rec.core.end("end", ended_at)
    rec.run_until(ended_at + 2.5)
    moved_once(rec, "no_connection")
    assert [t for t, a in rec.log if isinstance(a, OpenStream) and a.fallback] == [
        pytest.approx(ended_at + 2.5)
    ]
    (opened,) = fallback_opens(rec)
    rec.core.on_stream_opened(opened.conn_id, clock.monotonic())
    rec.poll()
    assert rec.sent_bytes(opened.conn_id) == audio and rec.ends()[-1].conn_id == opened.conn_id
    rec.core.on_stream_event(opened.conn_id, result(0.0, 1.0, [("hello", 0.2, 0.6)]), clock.monotonic())
    rec.core.on_stream_closed(opened.conn_id, None, clock.monotonic())
    rec.poll()
    assert [e["text"] for e in rec.events("transcript")] == ["hello"]
    assert rec.events("session_ended")[0]["reason"] == "end"


# --- failback (ASR_FAILBACK_AFTER_S) -------------------------------------------------------


class Primary:
    """The primary's health as the registry reports it: since when it carries new connections."""

    def __init__(self) -> None:
        self.up_since: float | None = None


class CountedSlots(Slots):
    def __init__(self, room: int) -> None:
        super().__init__(room)
        self.released = 0

    def release(self) -> None:
        self.released += 1
        self.room += 1


def failback_session(
    clock: FakeClock, failback_after_s: float = 5.0
) -> tuple[Recorder, CountedSlots, Primary]:
    slots, primary = CountedSlots(2), Primary()
    config = FailoverConfig("local", after_s=10.0, failback_after_s=failback_after_s)
    failover = Failover(config, slots.claim, slots.release, lambda: primary.up_since)
    rec = Recorder(make_core(clock, provider="deepgram", failover=failover), clock)
    rec.core.attach_source("a", clock.monotonic())
    return rec, slots, primary


def move_to_fallback(rec: Recorder, audio: bytes) -> int:
    """Feed `audio`, let the primary fail with an outage, and open the fallback's stream."""
    feed(rec, audio)
    rec.core.on_stream_failed(1, OUTAGE, rec.clock.monotonic())
    rec.poll()
    (opened,) = fallback_opens(rec)
    rec.core.on_stream_opened(opened.conn_id, rec.clock.monotonic())
    rec.poll()
    return opened.conn_id


def test_a_moved_call_returns_to_its_primary_at_a_boundary_once_it_has_worked_for_failback_after_s(
    clock: FakeClock,
) -> None:
    rec, slots, primary = failback_session(clock)
    audio = speechlike(4.0)
    fallback = move_to_fallback(rec, audio[: PCM8K.bytes_for(1.0)])
    moved_at = clock.monotonic()
    rec.core.on_stream_event(fallback, result(0.0, 0.5, [("one", 0.1, 0.4)]), clock.monotonic())
    primary.up_since = moved_at + 1.0  # the primary carries other calls again
    feed(rec, audio[PCM8K.bytes_for(1.0) : PCM8K.bytes_for(2.0)])
    clock.advance(moved_at + 5.5 - clock.monotonic())  # 4.5 s of the primary working: not yet
    rec.core.on_stream_event(fallback, result(0.5, 1.0, [("two", 0.6, 0.9)]), clock.monotonic())
    rec.poll()
    assert len(rec.events("provider_changed")) == 1 and slots.released == 0
    clock.advance(1.0)  # 5.5 s of it now, but a final in mid-utterance is no boundary
    mid = TranscriptResult(0, True, False, "three", 0.9, 1.0, 0.5, (Word("three", 1.1, 1.4, 0.9),))
    rec.core.on_stream_event(fallback, mid, clock.monotonic())
    rec.poll()
    assert len(rec.events("provider_changed")) == 1 and rec.core.provider == "local"
    # The utterance ends (speech_final): the call goes back, from where the finals reached.
    rec.core.on_stream_event(fallback, result(1.5, 1.8, [("four", 1.5, 1.7)]), clock.monotonic())
    rec.poll()
    first, back = rec.events("provider_changed")
    assert (back["from"], back["to"], back["reason"], back["at"]) == (
        "local",
        "deepgram",
        "primary_recovered",
        1.8,
    )
    assert first["reason"] == "circuit_open" and rec.core.provider == "deepgram"
    assert slots.released == 1 and slots.claims == 1
    assert rec.aborts()[-1].conn_id == fallback
    reopened = rec.opens()[-1]
    assert reopened == OpenStream(reopened.conn_id, True, fallback=False)
    rec.core.on_stream_opened(reopened.conn_id, clock.monotonic())
    feed(rec, audio[PCM8K.bytes_for(2.0) :])
    # The primary hears every byte from the covered point on, once; its words are in call time.
    assert rec.sent_bytes(reopened.conn_id) == audio[PCM8K.bytes_for(1.8) :]
    # It re-hears the last 0.2 s the fallback had sent; nothing there was final yet.
    rec.core.on_stream_event(reopened.conn_id, result(0.0, 1.0, [("five", 0.3, 0.7)]), clock.monotonic())
    rec.poll()
    finals = [e for e in rec.events("transcript") if e["is_final"]]
    assert [(e["text"], e["provider"]) for e in finals] == [
        ("one", "local"),
        ("two", "local"),
        ("three", "local"),
        ("four", "local"),
        ("five", "deepgram"),
    ]
    assert finals[-1]["words"][0]["start"] == 2.1 and finals[-1]["end"] == 2.8
    rec.core.end("end", clock.monotonic())
    rec.poll()
    rec.core.on_stream_closed(reopened.conn_id, None, clock.monotonic())
    rec.poll()
    assert rec.events("session_ended")[0]["provider"] == "deepgram"


def test_without_failback_after_s_a_moved_call_stays_however_long_the_primary_works(
    clock: FakeClock,
) -> None:
    rec, slots, primary = failback_session(clock, failback_after_s=0.0)
    fallback = move_to_fallback(rec, speechlike(0.5))
    primary.up_since = clock.monotonic()
    for i in range(20):
        clock.advance(30.0)
        rec.core.on_stream_event(fallback, result(i * 0.1, i * 0.1 + 0.1, []), clock.monotonic())
        rec.poll()
    assert len(rec.events("provider_changed")) == 1 and rec.core.provider == "local"
    assert slots.released == 0 and all(o.fallback for o in rec.opens()[1:])


def test_a_primary_that_is_not_up_or_not_up_long_enough_since_the_move_keeps_the_call(
    clock: FakeClock,
) -> None:
    rec, slots, primary = failback_session(clock)
    primary.up_since = clock.monotonic() - 100.0  # up long before the move counts from the move
    fallback = move_to_fallback(rec, speechlike(0.5))
    moved_at = clock.monotonic()
    clock.advance(4.0)
    rec.core.on_stream_event(fallback, result(0.0, 0.1, []), clock.monotonic())
    rec.poll()
    assert len(rec.events("provider_changed")) == 1
    primary.up_since = None  # down again
    clock.advance(10.0)
    rec.core.on_stream_event(fallback, result(0.1, 0.2, []), clock.monotonic())
    rec.poll()
    assert len(rec.events("provider_changed")) == 1
    primary.up_since = clock.monotonic()
    clock.advance(5.0)
    rec.core.on_stream_event(fallback, result(0.2, 0.3, []), clock.monotonic())  # silence: a boundary
    rec.poll()
    assert [e["reason"] for e in rec.events("provider_changed")] == ["circuit_open", "primary_recovered"]
    assert clock.monotonic() - moved_at == pytest.approx(19.0) and slots.released == 1


def test_a_call_returns_at_most_once_and_an_ending_call_does_not_return(clock: FakeClock) -> None:
    rec, slots, primary = failback_session(clock, failback_after_s=1.0)
    fallback = move_to_fallback(rec, speechlike(0.5))
    primary.up_since = clock.monotonic()
    clock.advance(2.0)
    rec.core.on_stream_event(fallback, result(0.0, 0.1, []), clock.monotonic())
    rec.poll()
    back = rec.opens()[-1]
    assert not back.fallback and slots.released == 1
    # The primary fails again for this call: it moves again (a slot again) and stays.
    rec.core.on_stream_failed(back.conn_id, OUTAGE, clock.monotonic())
    rec.poll()
    again = rec.opens()[-1]
    assert again.fallback and slots.claims == 2
    rec.core.on_stream_opened(again.conn_id, clock.monotonic())
    for i in range(5):
        clock.advance(10.0)
        rec.core.on_stream_event(again.conn_id, result(0.1 * i, 0.1 * i + 0.1, []), clock.monotonic())
        rec.poll()
    assert [e["reason"] for e in rec.events("provider_changed")] == [
        "circuit_open",
        "primary_recovered",
        "circuit_open",
    ]
    assert rec.core.provider == "local" and slots.released == 1
    # A second call that is ending when the boundary comes finishes where it is.
    other, other_slots, other_primary = failback_session(clock, failback_after_s=1.0)
    conn = move_to_fallback(other, speechlike(0.5))
    other_primary.up_since = clock.monotonic()
    clock.advance(2.0)
    other.core.end("end", clock.monotonic())
    other.core.on_stream_event(conn, result(0.0, 0.5, []), clock.monotonic())
    other.poll()
    assert len(other.events("provider_changed")) == 1 and other_slots.released == 0
