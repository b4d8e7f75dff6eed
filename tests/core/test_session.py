"""The session core on a fake clock: single flight, continuous forwarding, replay, finalize."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest

from asr_worker.core.actions import Emit, FlushStream, OpenStream, SendAudio, SendKeepAlive
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.clock import FakeClock
from asr_worker.core.events import SessionEnded
from asr_worker.core.provider_events import TranscriptResult, Word
from asr_worker.core.session import FINALIZE_WAITS_MAX, Link, Phase
from asr_worker.core.session_types import Resume
from asr_worker.errors import ProviderError
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.sim import Recorder, make_core

FRAME_BYTES_20MS = 320  # 20 ms of 8 kHz linear16 mono


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def connected(clock: FakeClock, **config: Any) -> Recorder:
    """A session that has received one frame and whose first stream is open."""
    rec = Recorder(make_core(clock, **config), clock)
    rec.core.attach_source("a", clock.monotonic())
    rec.core.on_audio(b"\x01\x00" * 160, clock.monotonic())
    rec.poll()
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    return rec


def final(
    start: float, end: float, words: list[tuple[str, float, float]], channel: int = 0
) -> TranscriptResult:
    ws = tuple(Word(w, s, e, 0.9) for w, s, e in words)
    return TranscriptResult(
        channel=channel,
        is_final=True,
        speech_final=True,
        text=" ".join(w for w, _, _ in words),
        confidence=0.9,
        start=start,
        duration=end - start,
        words=ws,
    )


# --- single flight ----------------------------------------------------------------------------


def test_many_first_frames_open_exactly_one_stream(clock: FakeClock) -> None:
    rec = Recorder(make_core(clock), clock)
    for i in range(200):
        rec.core.attach_source(f"s{i}", clock.monotonic())
        assert rec.core.on_audio(b"\x00\x01" * 160, clock.monotonic())
    rec.poll()
    clock.advance(0.5)  # the provider is slow to answer; more frames keep arriving
    for _ in range(50):
        rec.core.on_audio(b"\x00\x01" * 160, clock.monotonic())
    rec.run_until(clock.monotonic() + 2)
    assert rec.opens() == [OpenStream(1, reconnect=False)]
    assert rec.link() is Link.CONNECTING
    assert rec.core.stats.frames_reused == 249


def test_audio_waiting_for_the_first_stream_is_sent_in_order_when_it_opens(clock: FakeClock) -> None:
    rec = Recorder(make_core(clock), clock)
    audio = speechlike(1.0)
    for frame in frames(audio):
        rec.core.on_audio(frame, clock.monotonic())
        clock.advance(0.02)
    rec.poll()
    assert rec.sends() == []
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    assert rec.sent_bytes(1) == audio
    assert all(len(s.data) <= PCM8K.bytes_for(0.25) for s in rec.sends())


def test_fatal_open_failure_reaches_everyone_once_and_leaves_nothing_half_made(clock: FakeClock) -> None:
    rec = Recorder(make_core(clock), clock)
    for i in range(20):
        rec.core.attach_source(f"s{i}", clock.monotonic())
        rec.core.on_audio(b"\x00\x01" * 160, clock.monotonic())
    rec.poll()
    rec.core.on_stream_failed(1, ProviderError("unauthorized", "bad key", retryable=False), clock.monotonic())
    rec.poll()
    errors = rec.events("error")
    assert [(e["code"], e["message"]) for e in errors] == [("unauthorized", "bad key")]
    (ended,) = rec.events("session_ended")
    assert ended["reason"] == "provider_error"
    assert rec.core.ended and rec.link() is Link.IDLE
    assert rec.core.next_deadline() is None  # no retry timer: no retry storm
    assert len(rec.opens()) == 1


def test_transient_open_failures_back_off_then_connect_with_nothing_lost(clock: FakeClock) -> None:
    rec = Recorder(make_core(clock, backoff_initial_s=0.5, backoff_max_s=4.0), clock)
    audio = speechlike(3.0)
    chunks = frames(audio)
    rec.core.on_audio(chunks[0], clock.monotonic())
    rec.poll()
    retry_times = []
    fed = 1
    for attempt in range(1, 5):
        rec.core.on_stream_failed(
            attempt, ProviderError("unavailable", "503", retryable=True), clock.monotonic()
        )
        before = clock.monotonic()
        while len(rec.opens()) == attempt:
            clock.advance(0.02)
            if fed < len(chunks):
                rec.core.on_audio(chunks[fed], clock.monotonic())
                fed += 1
            rec.poll()
        retry_times.append(clock.monotonic() - before)
    # exponential with jitter in [0.5, 1] x 0.5, 1, 2, 4
    for delay, base in zip(retry_times, (0.5, 1.0, 2.0, 4.0), strict=True):
        assert base * 0.5 - 0.03 <= delay <= base + 0.03
    rec.core.on_stream_opened(5, clock.monotonic())
    for chunk in chunks[fed:]:
        rec.core.on_audio(chunk, clock.monotonic())
    rec.run_until(clock.monotonic() + 0.2)
    assert rec.sent_bytes(5) == audio


# --- continuous forwarding -----------------------------------------------------------------


def _forwarding_waits(rec: Recorder, arrivals: list[tuple[float, bytes]]) -> list[float]:
    """Feed audio at the given times; return for every byte how long it waited before a send."""
    clock = rec.clock
    arrived_at: list[float] = []
    for t, data in arrivals:
        rec.run_until(t)
        rec.core.on_audio(data, clock.monotonic())
        arrived_at.extend([clock.monotonic()] * len(data))
    rec.run_until(clock.monotonic() + 1.0)
    waits: list[float] = []
    offset = 0
    for when, action in rec.log:
        if isinstance(action, SendAudio):
            for _ in range(len(action.data)):
                if offset < len(arrived_at):
                    waits.append(when - arrived_at[offset])
                offset += 1
    assert offset >= len(arrived_at), "every byte was sent"
    return waits


@pytest.mark.parametrize("max_buffer_ms", [20, 100, 250])
def test_no_audio_waits_longer_than_max_buffer_ms_with_steady_frames(
    clock: FakeClock, max_buffer_ms: int
) -> None:
    rec = connected(clock, max_buffer_ms=max_buffer_ms, send_chunk_ms=min(50, max_buffer_ms))
    start = clock.monotonic()
    arrivals = [(start + i * 0.02, b"\x05\x00" * 160) for i in range(500)]
    waits = _forwarding_waits(rec, arrivals)
    assert max(waits) <= max_buffer_ms / 1000 + 1e-9


def test_no_audio_waits_longer_than_max_buffer_ms_with_sparse_and_bursty_sources(clock: FakeClock) -> None:
    # The old worker's bug: after a buffer flush, new audio sat until the next big chunk.
    rec = connected(clock, max_buffer_ms=100, send_chunk_ms=50)
    start = clock.monotonic()
    arrivals: list[tuple[float, bytes]] = []
    t = start
    for i in range(300):
        t += (0.003, 0.2, 0.041, 0.0, 0.5)[i % 5]
        arrivals.append((t, b"\x05\x00" * (40 * (1 + i % 7))))
    waits = _forwarding_waits(rec, arrivals)
    assert max(waits) <= 0.1 + 1e-9


def test_after_a_replay_flush_new_audio_keeps_flowing(clock: FakeClock) -> None:
    rec = connected(clock, max_buffer_ms=100)
    t0 = clock.monotonic()
    for i in range(100):  # 2 s of audio on stream 1
        rec.run_until(t0 + i * 0.02)
        rec.core.on_audio(b"\x05\x00" * 160, clock.monotonic())
    rec.core.on_stream_closed(1, ProviderError("abnormal", "1006", retryable=True), clock.monotonic())
    rec.poll()
    t1 = clock.monotonic()
    arrivals = [(t1 + i * 0.02, b"\x06\x00" * 160) for i in range(200)]
    # the stream comes back 0.3 s later; everything after that must flow within the bound
    for t, data in arrivals[:15]:
        rec.run_until(t)
        rec.core.on_audio(data, clock.monotonic())
    assert rec.opens()[-1].conn_id == 2
    rec.core.on_stream_opened(2, clock.monotonic())
    mark = len(rec.log)
    waits_after = _forwarding_waits(rec, arrivals[15:])
    assert max(waits_after[-160 * 2 * 180 :]) <= 0.1 + 1e-9
    assert any(isinstance(a, SendAudio) and a.conn_id == 2 for _, a in rec.log[mark:])


def test_keepalive_when_no_audio_was_sent_for_keepalive_s(clock: FakeClock) -> None:
    rec = connected(clock, keepalive_s=3.0)
    rec.run_until(clock.monotonic() + 15.0)  # 15 s of caller silence: no frames at all
    times = [t for t, _ in rec.keepalives()]
    assert len(times) == 5
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(abs(g - 3.0) < 1e-9 for g in gaps)
    assert all(isinstance(a, SendKeepAlive) and a.conn_id == 1 for _, a in rec.keepalives())
    # audio resets the clock
    rec.core.on_audio(b"\x01\x00" * 160, clock.monotonic())
    rec.run_until(clock.monotonic() + 2.9)
    assert len(rec.keepalives()) == 5


# --- replay, timestamps, dedupe ------------------------------------------------------------


def test_drop_replays_uncovered_audio_and_keeps_call_relative_times(clock: FakeClock) -> None:
    rec = connected(clock)
    audio = speechlike(4.0)
    t0 = clock.monotonic()
    first_frame = rec.sent_bytes(1)
    for i, frame in enumerate(frames(audio)):
        rec.run_until(t0 + i * 0.02)
        rec.core.on_audio(frame, clock.monotonic())
    rec.run_until(clock.monotonic() + 0.2)
    call = first_frame + audio  # everything the call has sent so far
    # the provider finalized the first 1.5 s of the stream, then the connection dropped
    rec.core.on_stream_event(
        1, final(0.0, 1.5, [("hello", 0.2, 0.6), ("there", 0.7, 1.4)]), clock.monotonic()
    )
    rec.core.on_stream_closed(1, ProviderError("abnormal", "1011", retryable=True), clock.monotonic())
    rec.run_until(clock.monotonic() + 10)
    assert rec.opens()[-1] == OpenStream(2, reconnect=True)
    rec.core.on_stream_opened(2, clock.monotonic())
    rec.poll()
    covered = PCM8K.bytes_for(1.5)
    assert rec.sent_bytes(2) == call[covered:]
    # stream 2's time 0 is call time 1.5
    rec.core.on_stream_event(2, final(0.0, 1.0, [("again", 0.1, 0.5)]), clock.monotonic())
    rec.poll()
    last = rec.events("transcript")[-1]
    assert last["start"] == 1.5 and last["end"] == 2.5
    assert last["words"] == [{"word": "again", "start": 1.6, "end": 2.0, "confidence": 0.9}]
    assert rec.core.stats.reconnects == 1
    assert rec.core.stats.bytes_replayed == len(call) - covered


def test_words_already_final_are_not_repeated_by_a_replayed_stream(clock: FakeClock) -> None:
    stereo = AudioFormat(Encoding.LINEAR16, 8000, 2)
    rec = Recorder(make_core(clock, fmt=stereo), clock)
    rec.core.attach_source("a", clock.monotonic())
    for _ in range(150):  # 3 s
        rec.core.on_audio(b"\x05\x00" * 320, clock.monotonic())
    rec.poll()
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    # channel 0 finalized to 2.0 s, the other channel only to 1.0 s: a new stream replays from 1.0 s
    first = final(0.0, 2.0, [("one", 0.1, 0.5), ("two", 1.2, 1.8)])
    rec.core.on_stream_event(1, replace(first, channels=2), clock.monotonic())
    rec.core.on_stream_event(1, replace(final(0.0, 1.0, [], channel=1), channels=2), clock.monotonic())
    assert rec.core.covered_offset == stereo.bytes_for(1.0)
    rec.core.on_stream_closed(1, ProviderError("abnormal", "x", retryable=True), clock.monotonic())
    rec.run_until(clock.monotonic() + 5)
    assert rec.core.on_stream_opened(2, clock.monotonic())
    rec.poll()
    assert len(rec.sent_bytes(2)) == stereo.bytes_for(2.0)  # the replay: from 1.0 s to 3.0 s
    # the replay's channel 0 re-hears "two" (1.2-1.8 s), which that channel already finalized
    again = final(0.0, 2.0, [("two", 0.2, 0.8), ("three", 1.1, 1.5)])
    rec.core.on_stream_event(2, replace(again, channels=2), clock.monotonic())
    rec.poll()
    last = rec.events("transcript")[-1]
    assert last["text"] == "three"
    assert last["words"] == [{"word": "three", "start": 2.1, "end": 2.5, "confidence": 0.9}]
    assert rec.core.stats.words_deduplicated == 1


def test_finals_free_the_retained_buffer(clock: FakeClock) -> None:
    rec = connected(clock)
    for _ in range(100):
        rec.core.on_audio(b"\x05\x00" * 160, clock.monotonic())
    rec.poll()
    before = rec.core.retained_bytes
    rec.core.on_stream_event(1, final(0.0, 1.0, []), clock.monotonic())
    assert rec.core.retained_bytes == before - PCM8K.bytes_for(1.0)


def test_retained_audio_is_bounded_and_loss_is_reported_once(clock: FakeClock) -> None:
    rec = Recorder(make_core(clock, max_retained_s=2.0), clock)
    rec.core.on_audio(b"\x05\x00" * 160, clock.monotonic())
    rec.poll()  # connecting forever
    for _ in range(300):  # 6 s
        rec.core.on_audio(b"\x05\x00" * 160, clock.monotonic())
    assert rec.core.retained_bytes <= PCM8K.bytes_for(2.0)
    assert rec.core.stats.bytes_dropped == PCM8K.bytes_for(6.02) - PCM8K.bytes_for(2.0)
    rec.poll()
    assert [e["code"] for e in rec.events("error")] == ["audio_dropped"]


# --- input checks ----------------------------------------------------------------------------


def test_partial_sample_message_is_refused_with_an_error_and_nothing_else_changes(clock: FakeClock) -> None:
    rec = connected(clock)
    before = rec.core.audio_s
    assert not rec.core.on_audio(b"\x01\x02\x03", clock.monotonic())
    assert rec.core.on_audio(b"\x01\x02" * 80, clock.monotonic())
    rec.poll()
    (err,) = rec.events("error")
    assert err["code"] == "bad_audio" and "3 bytes" in str(err["message"])
    assert rec.core.audio_s == pytest.approx(before + 0.01)
    assert rec.phase() is Phase.ACTIVE and rec.link() is Link.CONNECTED


def test_two_channel_mulaw_frames_must_be_whole_frames(clock: FakeClock) -> None:
    fmt = AudioFormat(Encoding.MULAW, 8000, 2)
    rec = Recorder(make_core(clock, fmt=fmt), clock)
    assert not rec.core.on_audio(b"\xff" * 161, clock.monotonic())
    assert rec.core.on_audio(b"\xff" * 160, clock.monotonic())


def test_a_flooding_source_gets_one_second_of_messages_then_the_rate(clock: FakeClock) -> None:
    rec = connected(clock, max_frames_per_s=50)  # the first frame took one token
    frame = b"\x01\x00" * 160
    burst = [rec.core.on_audio(frame, clock.monotonic()) for _ in range(100)]
    assert sum(map(bool, burst)) == 49  # what was left of one second's worth
    assert rec.core.stats.frames_rate_limited == 51
    clock.advance(0.5)
    later = [rec.core.on_audio(frame, clock.monotonic()) for _ in range(100)]
    assert sum(map(bool, later)) == 25  # half a second earned half the rate
    clock.advance(10.0)  # a long pause does not bank more than one second
    after_pause = [rec.core.on_audio(frame, clock.monotonic()) for _ in range(100)]
    assert 50 <= sum(map(bool, after_pause)) <= 51
    rec.poll()
    # one `error` a second says so, not one per dropped message
    assert [e["code"] for e in rec.events("error")] == ["rate_limited", "rate_limited"]


def test_a_source_at_its_rate_loses_nothing(clock: FakeClock) -> None:
    rec = connected(clock, max_frames_per_s=50)
    for _ in range(500):  # 10 s at exactly 50 messages a second
        clock.advance(0.02)
        assert rec.core.on_audio(b"\x01\x00" * 160, clock.monotonic())
    assert rec.core.stats.frames_rate_limited == 0


# --- grace, end, finalize --------------------------------------------------------------------


def test_grace_period_finalizes_after_the_last_source_leaves(clock: FakeClock) -> None:
    rec = connected(clock, grace_s=10.0)
    rec.core.detach_source("a", clock.monotonic())
    rec.run_until(clock.monotonic() + 9.9)
    assert rec.phase() is Phase.ACTIVE
    rec.core.attach_source("b", clock.monotonic())  # a source came back: no end
    rec.core.detach_source("b", clock.monotonic())
    rec.run_until(clock.monotonic() + 9.9)
    assert rec.phase() is Phase.ACTIVE
    rec.run_until(clock.monotonic() + 0.2)
    assert rec.phase() is Phase.ENDING and rec.core.end_reason == "grace_timeout"
    assert [e.conn_id for e in rec.ends()] == [1]


def test_a_session_no_source_ever_fed_ends_after_the_grace_period(clock: FakeClock) -> None:
    rec = Recorder(make_core(clock, grace_s=2.0), clock)
    rec.run_until(clock.monotonic() + 2.5)
    assert rec.core.ended
    assert [e["reason"] for e in rec.events("session_ended")] == ["grace_timeout"]


def test_end_flushes_then_ends_the_stream_and_waits_for_the_last_finals(clock: FakeClock) -> None:
    rec = connected(clock, send_chunk_ms=100, max_buffer_ms=100)
    rec.core.on_audio(b"\x05\x00" * 80, clock.monotonic())  # 10 ms, below the chunk size
    rec.core.end("end", clock.monotonic())
    rec.poll()
    kinds = [type(a).__name__ for _, a in rec.log[-2:]]
    assert kinds == ["SendAudio", "EndStream"]  # flushed first, then Finalize/CloseStream
    assert rec.phase() is Phase.ENDING and not rec.events("session_ended")
    last = TranscriptResult(
        0, True, True, "bye", 0.9, 0.0, 0.03, (Word("bye", 0.0, 0.03, 0.9),), from_finalize=True
    )
    rec.core.on_stream_event(1, last, clock.monotonic())
    rec.core.on_stream_closed(1, None, clock.monotonic())
    rec.poll()
    kinds_seen = [e["type"] for e in rec.events()]
    assert kinds_seen[-2:] == ["transcript", "session_ended"]
    ended = rec.events("session_ended")[0]
    assert ended["reason"] == "end" and ended["finals"] == 1
    assert rec.core.ended


def test_finalize_flushes_what_waits_then_asks_for_the_final_and_the_call_goes_on(clock: FakeClock) -> None:
    rec = connected(clock, send_chunk_ms=100, max_buffer_ms=100)
    rec.core.on_audio(b"\x05\x00" * 80, clock.monotonic())  # 10 ms, below the chunk size
    rec.core.finalize(clock.monotonic())
    rec.poll()
    kinds = [type(a).__name__ for _, a in rec.log[-2:]]
    assert kinds == ["SendAudio", "FlushStream"]  # the audio it covers first, then Finalize
    assert rec.of(FlushStream) == [FlushStream(1)] and not rec.ends()
    flushed = TranscriptResult(
        0, True, True, "yes", 0.9, 0.0, 0.03, (Word("yes", 0.0, 0.03, 0.9),), from_finalize=True
    )
    rec.core.on_stream_event(1, flushed, clock.monotonic())
    rec.poll()
    (event,) = rec.events("transcript")
    assert event["from_finalize"] is True and event["text"] == "yes"
    assert rec.phase() is Phase.ACTIVE and rec.link() is Link.CONNECTED
    assert rec.core.on_audio(b"\x05\x00" * 160, clock.monotonic()), "the call takes audio as before"
    rec.run_until(clock.monotonic() + 0.2)
    assert len(rec.sends()) >= 3 and not rec.events("session_ended")


def test_finalize_while_reconnecting_comes_right_after_the_replay(clock: FakeClock) -> None:
    rec = connected(clock)
    rec.core.on_stream_closed(1, ProviderError("dropped", "gone", retryable=True), clock.monotonic())
    rec.core.on_audio(b"\x05\x00" * 160, clock.monotonic())
    rec.core.finalize(clock.monotonic())
    rec.run_until(clock.monotonic() + 5)
    assert not rec.of(FlushStream), "nothing to flush on a stream that is not there"
    (reopen,) = [o for o in rec.opens() if o.reconnect]
    rec.core.on_stream_opened(reopen.conn_id, clock.monotonic())
    rec.poll()
    after_open = [a for _, a in rec.log if getattr(a, "conn_id", None) == reopen.conn_id]
    assert [type(a).__name__ for a in after_open][-2:] == ["SendAudio", "FlushStream"]
    rec.core.finalize(clock.monotonic())  # connected again: at once
    rec.poll()
    assert rec.of(FlushStream) == [FlushStream(reopen.conn_id)] * 2


def test_finalize_after_the_end_does_nothing(clock: FakeClock) -> None:
    rec = connected(clock)
    rec.core.end("end", clock.monotonic())
    rec.core.finalize(clock.monotonic())
    rec.poll()
    assert not rec.of(FlushStream) and len(rec.ends()) == 1


def test_end_while_connecting_sends_everything_once_the_stream_opens(clock: FakeClock) -> None:
    rec = Recorder(make_core(clock), clock)
    audio = speechlike(0.5)
    rec.core.on_audio(audio, clock.monotonic())
    rec.core.end("end", clock.monotonic())
    rec.poll()
    assert not rec.sends()
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    assert rec.sent_bytes(1) == audio and [e.conn_id for e in rec.ends()] == [1]


def test_a_drop_while_finalizing_reconnects_and_finalizes_again(clock: FakeClock) -> None:
    rec = connected(clock)
    rec.core.end("end", clock.monotonic())
    rec.poll()
    rec.core.on_stream_closed(1, ProviderError("abnormal", "1006", retryable=True), clock.monotonic())
    rec.run_until(clock.monotonic() + 1)
    rec.core.on_stream_opened(2, clock.monotonic())
    rec.poll()
    assert [e.conn_id for e in rec.ends()] == [1, 2]
    assert rec.sent_bytes(2) == rec.sent_bytes(1)  # nothing was covered: all of it again


def test_finalize_timeout_is_bounded_and_says_what_may_be_lost(clock: FakeClock) -> None:
    rec = connected(clock, finalize_timeout_s=5.0)
    rec.core.end("end", clock.monotonic())
    rec.run_until(clock.monotonic() + 4.9)
    assert rec.phase() is Phase.ENDING
    rec.run_until(clock.monotonic() + 0.2)
    assert rec.phase() is Phase.ENDED
    assert [e["code"] for e in rec.events("error")] == ["finalize_timeout"]
    assert rec.aborts()[-1].conn_id == 1


def test_a_connection_that_replaces_a_failed_one_at_the_end_gets_a_fresh_wait(clock: FakeClock) -> None:
    """The fault drill's one loss: a drop 4 s into the end, a reconnect, and the last final
    1 s later than the first wait allowed. The replacement gets its own 5 s."""
    rec = connected(clock, finalize_timeout_s=5.0)
    ended_at = clock.monotonic()
    rec.core.end("end", ended_at)
    rec.run_until(ended_at + 4.0)
    rec.core.on_stream_closed(1, ProviderError("stalled", "no answer", retryable=True), clock.monotonic())
    rec.run_until(ended_at + 4.5)
    replacement = rec.opens()[-1].conn_id
    assert replacement == 2
    rec.core.on_stream_opened(replacement, clock.monotonic())
    rec.run_until(ended_at + 6.0)
    assert rec.phase() is Phase.ENDING and not rec.events("error")
    last = final(0.0, 0.02, [("bye", 0.0, 0.02)])
    rec.core.on_stream_event(replacement, last, clock.monotonic())
    rec.core.on_stream_closed(replacement, None, clock.monotonic())
    rec.poll()
    assert rec.events("session_ended")[0]["reason"] == "end" and not rec.events("error")
    assert [e["text"] for e in rec.events("transcript")] == ["bye"]


def test_finals_that_cover_more_at_the_end_restart_its_wait(clock: FakeClock) -> None:
    """A provider working through a backlog (a busy local engine, its finals seconds behind)
    keeps the end open while each final covers more of the call; a final that covers nothing
    new does not, and the end stays bounded by FINALIZE_WAITS_MAX waits."""
    rec = connected(clock, finalize_timeout_s=5.0)
    for _ in range(99):  # two seconds of audio in all
        rec.core.on_audio(b"\x01\x00" * 160, clock.monotonic())
    ended_at = clock.monotonic()
    rec.core.end("end", ended_at)
    rec.run_until(ended_at + 4.0)
    rec.core.on_stream_event(1, final(0.0, 1.0, [("one", 0.2, 0.6)]), clock.monotonic())
    rec.run_until(ended_at + 8.5)
    assert rec.phase() is Phase.ENDING and not rec.events("error"), "the wait began again at 4 s"
    rec.core.on_stream_event(1, final(0.0, 1.0, [("one", 0.2, 0.6)]), clock.monotonic())
    rec.run_until(ended_at + 9.1)
    assert rec.phase() is Phase.ENDED, "a final covering nothing new is no progress"
    assert [e["code"] for e in rec.events("error")] == ["finalize_timeout"]


def test_progress_at_the_end_never_waits_past_the_bound(clock: FakeClock) -> None:
    rec = connected(clock, finalize_timeout_s=5.0)
    for _ in range(499):  # ten seconds of audio
        rec.core.on_audio(b"\x01\x00" * 160, clock.monotonic())
    ended_at = clock.monotonic()
    rec.core.end("end", ended_at)
    for second in range(1, 10):
        rec.run_until(ended_at + second)
        if rec.phase() is Phase.ENDING:
            rec.core.on_stream_event(
                1, final(second - 1.0, float(second), [("w", second - 0.5, second - 0.1)]), clock.monotonic()
            )
    rec.run_until(ended_at + FINALIZE_WAITS_MAX * 5.0 + 0.01)
    assert rec.phase() is Phase.ENDED
    assert [e["code"] for e in rec.events("error")] == ["finalize_timeout"]
    assert len(rec.events("transcript")) == 9


def test_a_call_end_is_bounded_however_many_connections_fail(clock: FakeClock) -> None:
    rec = connected(clock, finalize_timeout_s=5.0, backoff_initial_s=0.1, backoff_max_s=0.1)
    ended_at = clock.monotonic()
    rec.core.end("end", ended_at)
    for _ in range(20):  # every connection fails 3 s into its wait
        rec.run_until(clock.monotonic() + 3.0)
        if rec.phase() is Phase.ENDED:
            break
        error = ProviderError("stalled", "no answer", retryable=True)
        rec.core.on_stream_closed(rec.opens()[-1].conn_id, error, clock.monotonic())
        rec.run_until(clock.monotonic() + 0.2)
        rec.core.on_stream_opened(rec.opens()[-1].conn_id, clock.monotonic())
    assert rec.phase() is Phase.ENDED
    (ended_in,) = [t for t, a in rec.log if isinstance(a, Emit) and isinstance(a.event, SessionEnded)]
    assert ended_in - ended_at <= FINALIZE_WAITS_MAX * 5.0 + 0.01
    assert len(rec.opens()) >= 4  # connections kept failing: the cap, not luck, ended the call
    assert [e["code"] for e in rec.events("error")] == ["finalize_timeout"]
    assert "within 10 s of the call's end" in str(rec.events("error")[0]["message"])


def test_events_are_numbered_and_stamped(clock: FakeClock) -> None:
    rec = connected(clock)
    clock.advance(1.5)
    rec.core.end("end", clock.monotonic())
    rec.poll()
    rec.core.on_stream_closed(1, None, clock.monotonic())
    rec.poll()
    events = rec.events()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "session_started" and events[0]["timestamp_ms"] == 1_764_300_000_000
    assert events[-1]["timestamp_ms"] == 1_764_300_001_500
    assert all(e["interaction_id"] == "call-1" and e["tenant_id"] == "acme" for e in events)


def test_stale_stream_reports_are_ignored(clock: FakeClock) -> None:
    rec = connected(clock)
    rec.core.on_stream_closed(1, ProviderError("abnormal", "x", retryable=True), clock.monotonic())
    rec.run_until(clock.monotonic() + 1)
    rec.core.on_stream_opened(2, clock.monotonic())
    # late news from stream 1 changes nothing
    rec.core.on_stream_event(1, final(0.0, 1.0, [("late", 0.0, 0.5)]), clock.monotonic())
    rec.core.on_stream_closed(1, None, clock.monotonic())
    assert not rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    assert rec.link() is Link.CONNECTED and rec.core.conn_id == 2
    assert not rec.events("transcript")


def test_audio_after_end_is_refused_with_one_error_not_one_per_frame(clock: FakeClock) -> None:
    rec = connected(clock)
    rec.core.end("end", clock.monotonic())
    for _ in range(50):
        assert not rec.core.on_audio(b"\x01\x00" * 160, clock.monotonic())
    rec.poll()
    assert [e["code"] for e in rec.events("error")] == ["session_ending"]
    assert (
        rec.events("error")[0]["message"]
        == "the call is ending: its `end` came; audio after that is not taken"
    )
    assert rec.core.stats.frames_rejected == 50


@pytest.mark.parametrize(
    ("reason", "says"),
    [
        ("shutdown", "the worker is shutting down; the call was finalized"),
        ("stop", "the call is ending: the platform's `stop` came"),
        ("grace_timeout", "the call ended: no source fed it for ASR_SESSION_GRACE_S"),
    ],
)
def test_audio_after_the_end_is_told_whose_move_ended_the_call(
    clock: FakeClock, reason: str, says: str
) -> None:
    """A worker draining on SIGTERM does not blame a client that never sent `end`."""
    rec = connected(clock)
    rec.core.end(reason, clock.monotonic())
    assert not rec.core.on_audio(b"\x01\x00" * 160, clock.monotonic())
    rec.poll()
    assert rec.events("error")[0]["message"] == f"{says}; audio after that is not taken"


def test_nothing_is_emitted_after_session_ended(clock: FakeClock) -> None:
    # Found by the state machine (tests/fuzz/test_session_machine.py): a source's late error,
    # or audio after the end, was emitted after `session_ended`.
    rec = Recorder(make_core(clock), clock)
    rec.core.end("end", clock.monotonic())
    rec.poll()
    assert rec.core.ended
    rec.core.on_audio(b"\x01\x00" * 160, clock.monotonic())
    rec.core.emit_error("bad_message", "a late text message", clock.monotonic())
    rec.poll()
    assert [e["type"] for e in rec.events()] == ["session_started", "session_ended"]


# --- resuming a call another worker began (the Redis bus) ---------------------------------------


def resumed(clock: FakeClock, resume: Resume, **config: Any) -> Recorder:
    return Recorder(make_core(clock, resume=resume, **config), clock)


def test_a_resumed_session_continues_the_call_timeline_and_numbering(clock: FakeClock) -> None:
    rec = resumed(clock, Resume(offset=PCM8K.bytes_for(2.0), seq=41))
    rec.poll()
    (started,) = rec.events("session_started")
    assert started["seq"] == 42 and started["resumed"] is True and started["offset_s"] == 2.0
    assert rec.core.covered_offset == PCM8K.bytes_for(2.0) and rec.core.last_seq == 42
    audio = speechlike(1.0)
    rec.core.on_audio(audio, clock.monotonic())
    rec.poll()
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    assert rec.sent_bytes(1) == audio  # the stream starts at the first byte this session got
    rec.core.on_stream_event(1, final(0.0, 0.6, [("resumed", 0.1, 0.5)]), clock.monotonic())
    rec.poll()
    (result,) = rec.events("transcript")
    assert result["seq"] == 43 and result["start"] == 2.0 and result["end"] == 2.6
    assert result["words"] == [{"word": "resumed", "start": 2.1, "end": 2.5, "confidence": 0.9}]
    assert rec.core.covered_offset == PCM8K.bytes_for(2.6)
    rec.core.end("end", clock.monotonic())
    rec.poll()
    rec.core.on_stream_closed(1, None, clock.monotonic())
    rec.poll()
    (ended,) = rec.events("session_ended")
    assert ended["audio_s"] == 3.0  # call time: the audio before the resume point counts
    assert [e["seq"] for e in rec.events()] == [42, 43, 44]


def test_a_resumed_session_does_not_repeat_words_already_published_as_final(clock: FakeClock) -> None:
    # Resumed at 1.0 s, but the previous owner had published finals up to 1.6 s.
    rec = resumed(clock, Resume(offset=PCM8K.bytes_for(1.0), seq=9, finalized_s=(1.6,)))
    rec.core.on_audio(speechlike(2.0), clock.monotonic())
    rec.poll()
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.poll()
    rec.core.on_stream_event(1, final(0.0, 1.2, [("old", 0.1, 0.5), ("new", 0.7, 1.1)]), clock.monotonic())
    rec.poll()
    (result,) = rec.events("transcript")
    assert result["text"] == "new" and result["start"] == 1.6 and result["end"] == 2.2
    assert rec.core.stats.words_deduplicated == 1
    # a replayed final wholly inside the published part says nothing
    rec.core.on_stream_event(1, final(0.0, 0.5, [("old", 0.1, 0.5)]), clock.monotonic())
    rec.poll()
    assert len(rec.events("transcript")) == 1


def test_a_resumed_session_replays_from_its_resume_point_after_a_drop(clock: FakeClock) -> None:
    rec = resumed(clock, Resume(offset=PCM8K.bytes_for(5.0), seq=3))
    audio = speechlike(2.0)
    rec.core.on_audio(audio, clock.monotonic())
    rec.poll()
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.core.on_stream_event(1, final(0.0, 0.5, []), clock.monotonic())
    rec.core.on_stream_closed(1, ProviderError("abnormal", "1006", retryable=True), clock.monotonic())
    rec.run_until(clock.monotonic() + 5)
    rec.core.on_stream_opened(2, clock.monotonic())
    rec.poll()
    assert rec.sent_bytes(2) == audio[PCM8K.bytes_for(0.5) :]
    assert rec.core.covered_offset == PCM8K.bytes_for(5.5)


def test_a_resume_point_that_is_not_whole_samples_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="not whole samples"):
        resumed(clock, Resume(offset=3, seq=1))


def test_a_fresh_session_covers_nothing_and_numbers_from_one(clock: FakeClock) -> None:
    rec = connected(clock)
    assert rec.core.covered_offset == 0 and rec.core.last_seq == 1
    assert "resumed" not in rec.events("session_started")[0]
