"""The session core driven by hypothesis' stateful testing on a fake clock: random interleavings
of audio (whole samples or not), stream opens that succeed or fail, drops (retryable or not,
or a close nobody asked for), results from a model provider (finals that tile the stream,
interims, Finalize's answer), utterance ends, end, sources coming and going, stale news from
streams that are gone, a forced stop, and time passing. After every step the invariants of
the session invariants (docs/ingest-and-events.md) hold:

* at most one provider stream is open or opening;
* `seq` rises by one per event, and `session_ended` is emitted once, last (checked at the end
  of every run, after driving the call to its end);
* audio sent on a stream is the call's audio from the stream's start, byte for byte (a new
  stream replays from where finals reached), never after the stream was ended;
* audio that arrives while a stream is open waits at most `max_buffer_ms` before it is sent;
* event times are call-relative; finals of a channel never go back in time, and no word is
  emitted by two finals (nor one a resumed call's previous owner already published);
* the retained buffer stays within `max_retained_s`;
* after `poll(now)` no deadline is already due (the runner would spin);
* with a fallback provider (failover), the call moves at most once, says so once
  (`provider_changed`), opens every later stream on the fallback, and every event after the
  move names the fallback; every invariant above holds across the move. With failback
  (`failback_after_s`, the primary's health toggled at random), the call may return to its
  primary once, only while active, at a final that ends an utterance or covers silence,
  giving its fallback slot back; after a return it may fail over once more, and stays.

The model provider hears words at fixed call times (every 0.25 s, 0.1 s long, on each
channel), so a stream that replays audio re-hears the same words, as a real one does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from asr_worker.core.actions import (
    AbortStream,
    Action,
    AudioTaken,
    Emit,
    EndStream,
    FlushStream,
    OpenStream,
    SendAudio,
    SendKeepAlive,
)
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.clock import FakeClock
from asr_worker.core.failover import Failover, FailoverConfig
from asr_worker.core.provider_events import SpeechStarted, TranscriptResult, UtteranceEnd, Word
from asr_worker.core.session import FINALIZE_WAITS_MAX, Link, Phase, SessionCore
from asr_worker.core.session_types import Resume, SessionConfig
from asr_worker.errors import ProviderError
from tests.support.fuzz import examples
from tests.support.sim import WireEvent, wire

WORD_EVERY_S = 0.25
WORD_S = 0.1
ROUNDING = 0.0011  # events carry times rounded to the millisecond
FORMATS = [
    AudioFormat(Encoding.LINEAR16, 8000, 1),
    AudioFormat(Encoding.MULAW, 8000, 2),
    AudioFormat(Encoding.LINEAR16, 16000, 2),
]


@dataclass
class StreamModel:
    """What the model provider knows of one stream."""

    conn_id: int
    base: int  # call byte offset of the stream's first byte
    received: bytearray = field(default_factory=bytearray)
    final_end: dict[int, float] = field(default_factory=dict)  # per channel, stream seconds
    ended: bool = False  # EndStream (Finalize + CloseStream) arrived


@dataclass
class Arrival:
    end: int  # call byte offset just after this message
    at: float
    conn: int | None  # the stream open when it arrived


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.events: list[WireEvent] = []
        self.live: set[int] = set()  # streams opened and neither failed, closed nor aborted
        self.opening: int | None = None
        self.connected: int | None = None
        self.streams: dict[int, StreamModel] = {}
        self.last_conn = 0
        self.ever_opened = False
        self.call_audio = bytearray()  # accepted audio, from call offset `origin` on
        self.arrivals: list[Arrival] = []
        self.sent_upto = 0  # call offset up to which audio was ever sent
        self.final_end_s: dict[int, float] = {}  # per channel, end of the last final event
        self.final_words: set[tuple[int, str]] = set()
        self.fallback_room = 0
        self.fallback_slots = 0  # slots this call holds
        self.moved = False  # the call is on the fallback now
        self.changes: list[str] = []  # the reasons of its provider_changed events
        self.primary_up_since: float | None = None

    def _claim_fallback(self) -> bool:
        if self.fallback_room <= 0:
            return False
        self.fallback_room -= 1
        self.fallback_slots += 1
        return True

    def _release_fallback(self) -> None:
        self.fallback_room += 1
        self.fallback_slots -= 1

    # --- set-up ---------------------------------------------------------------------------

    @initialize(
        fmt=st.sampled_from(FORMATS),
        retained_s=st.sampled_from([1.0, 2.0, 60.0]),
        grace_s=st.sampled_from([2.0, 30.0, 30.0]),
        resumed=st.booleans(),
        fallback_room=st.sampled_from([None, 0, 1, 1]),
        data=st.data(),
    )
    def start(
        self,
        fmt: AudioFormat,
        retained_s: float,
        grace_s: float,
        resumed: bool,
        fallback_room: int | None,
        data: st.DataObject,
    ) -> None:
        self.fmt = fmt
        self.config = SessionConfig(
            max_buffer_ms=100,
            send_chunk_ms=50,
            keepalive_s=3.0,
            grace_s=grace_s,
            finalize_timeout_s=2.0,
            max_retained_s=retained_s,
            backoff_initial_s=0.25,
            backoff_max_s=2.0,
        )
        resume = None
        if resumed:
            offset = data.draw(st.integers(0, 5 * fmt.sample_rate)) * fmt.frame_bytes
            published = data.draw(st.lists(st.floats(0, 2), min_size=fmt.channels, max_size=fmt.channels))
            at = fmt.seconds(offset)
            resume = Resume(offset, data.draw(st.integers(0, 10**6)), tuple(at + p for p in published))
        self.origin = 0 if resume is None else resume.offset
        self.published_s = () if resume is None else resume.finalized_s
        self.last_seq = 0 if resume is None else resume.seq
        failover = None
        if fallback_room is not None:
            self.fallback_room = fallback_room
            config = FailoverConfig(
                "fallback",
                after_s=data.draw(st.sampled_from([1.0, 5.0])),
                refusals=2,
                failback_after_s=data.draw(st.sampled_from([0.0, 0.01, 1.0])),
            )
            failover = Failover(config, self._claim_fallback, self._release_fallback, self._up_since)
            self.primary_up_since = data.draw(st.sampled_from([None, self.clock.monotonic()]))
        self.core = SessionCore(
            interaction_id="call-1",
            tenant_id="acme",
            fmt=fmt,
            provider="model",
            config=self.config,
            created_at=self.clock.monotonic(),
            wall_ms_at_create=self.clock.wall_ms(),
            rng=random.Random(7),
            resume=resume,
            failover=failover,
        )
        self.max_retained = fmt.bytes_for(retained_s)
        self._poll()

    def _up_since(self) -> float | None:
        return self.primary_up_since

    @property
    def now(self) -> float:
        return self.clock.monotonic()

    # --- the driver: carry out the core's actions, checking each -------------------------------

    def _poll(self) -> None:
        now = self.now
        self._take(self.core.poll(now))
        deadline = self.core.next_deadline()
        assert deadline is None or deadline > now, f"deadline {deadline} already due at {now}: a spin"

    def _run_until(self, until: float) -> None:
        for _ in range(10_000):
            self._poll()
            deadline = self.core.next_deadline()
            if deadline is None or deadline > until:
                break
            self.clock.advance(max(0.0, deadline - self.now))
        else:
            raise AssertionError("the core's deadlines never let time reach the target")
        self.clock.advance(max(0.0, until - self.now))
        self._poll()

    def _take(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, OpenStream):
                assert not self.live, f"stream {action.conn_id} opened while {self.live} is open or opening"
                assert action.conn_id == self.last_conn + 1
                assert action.reconnect == self.ever_opened
                assert action.fallback == self.moved, "a stream on the wrong provider"
                assert self.core.phase is not Phase.ENDED
                self.last_conn = action.conn_id
                self.live.add(action.conn_id)
                self.opening = action.conn_id
            elif isinstance(action, SendAudio):
                self._sent(action)
            elif isinstance(action, SendKeepAlive):
                assert action.conn_id == self.connected
            elif isinstance(action, EndStream):
                assert action.conn_id == self.connected
                self.streams[action.conn_id].ended = True
            elif isinstance(action, FlushStream):  # a finalize: only on the live stream, mid-call
                assert action.conn_id == self.connected and not self.streams[action.conn_id].ended
                assert self.core.phase is Phase.ACTIVE
            elif isinstance(action, AbortStream):
                self.live.discard(action.conn_id)
                if self.connected == action.conn_id:
                    self.connected = None
                if self.opening == action.conn_id:
                    self.opening = None
            elif isinstance(action, Emit):
                self._emitted(wire(action.event))

    def _sent(self, action: SendAudio) -> None:
        assert action.conn_id == self.connected, "audio for a stream that is not open"
        stream = self.streams[action.conn_id]
        assert not stream.ended, "audio after the stream was ended"
        assert action.data, "an empty audio message (Deepgram's legacy end of stream)"
        start = stream.base + len(stream.received)
        end = start + len(action.data)
        # byte for byte the call's audio, continuing where this stream began
        assert bytes(self.call_audio[start - self.origin : end - self.origin]) == action.data
        stream.received += action.data
        fresh_from = max(start, self.sent_upto)
        for arrival in self.arrivals:
            if arrival.end > fresh_from and arrival.conn == action.conn_id:
                waited = self.now - arrival.at
                assert waited <= self.config.max_buffer_ms / 1000 + 1e-6, f"audio waited {waited:.3f} s"
            if arrival.end >= end:
                break
        self.sent_upto = max(self.sent_upto, end)

    def _emitted(self, event: WireEvent) -> None:
        assert not self.events or self.events[-1]["type"] != "session_ended", f"{event['type']} after the end"
        seq = event["seq"]
        assert seq == self.last_seq + 1, f"seq {seq} after {self.last_seq}"
        self.last_seq = seq
        assert event["interaction_id"] == "call-1" and event["tenant_id"] == "acme"
        self.events.append(event)
        origin_s = self.fmt.seconds(self.origin)
        total_s = self.fmt.seconds(self.origin + len(self.call_audio))
        kind = event["type"]
        if kind == "provider_changed":
            self._provider_changed(event)
        elif "provider" in event:
            assert event["provider"] == ("fallback" if self.moved else "model"), event
        if kind == "transcript":
            self._transcript(event, origin_s, total_s)
        elif kind == "dtmf":
            at = event["at"]
            assert isinstance(at, float | int) and origin_s - ROUNDING <= at <= total_s + ROUNDING
        elif kind in ("utterance_end", "speech_started"):
            t = event["last_word_end" if kind == "utterance_end" else "timestamp"]
            assert isinstance(t, float | int) and origin_s - ROUNDING <= t <= total_s + ROUNDING

    def _provider_changed(self, event: WireEvent) -> None:
        reason = event["reason"]
        if reason == "primary_recovered":
            assert self.moved and self.changes and "primary_recovered" not in self.changes, self.changes
            assert (event["from"], event["to"]) == ("fallback", "model")
            assert self.core.phase is Phase.ACTIVE, "a return while the call ends"
            failover = self.core.failover
            assert failover is not None and failover.config.failback_after_s > 0
            since = self.primary_up_since
            assert since is not None and self.now + 1e-9 >= since + failover.config.failback_after_s
            assert self.fallback_slots == 0, "the slot was not given back"
            self.moved = False
        else:
            assert not self.moved, "a second move to the fallback without a return"
            assert (event["from"], event["to"]) == ("model", "fallback")
            assert not self.changes or self.changes[1:] == ["primary_recovered"], self.changes
            self.moved = True
        self.changes.append(str(reason))

    def _transcript(self, event: WireEvent, origin_s: float, total_s: float) -> None:
        start, end, channel, words = event["start"], event["end"], event["channel"], event["words"]
        assert isinstance(start, float | int) and isinstance(end, float | int) and isinstance(channel, int)
        assert isinstance(words, list)
        # A resumed call's previous owner may have published finals past the audio this
        # session has read so far: an empty final that confirms a finalize is clamped there.
        published = self.published_s[channel] if channel < len(self.published_s) else 0.0
        latest = max(total_s, published)
        assert origin_s - ROUNDING <= start <= end <= latest + ROUNDING, (start, end, origin_s, latest)
        for word in words:
            assert start - ROUNDING <= word["start"] <= word["end"] <= end + ROUNDING, (word, start, end)
        if not event["is_final"]:
            return
        before = self.final_end_s.get(channel)
        assert before is None or start >= before - ROUNDING, (
            f"a final at {start} after one ending at {before}"
        )
        self.final_end_s[channel] = max(before or 0.0, end)
        for word in words:
            key = (channel, word["word"])
            assert key not in self.final_words, f"{key} emitted by two finals"
            assert word["start"] >= published - ROUNDING, f"{key} was published before the resume"
            self.final_words.add(key)

    # Rules are drawn in name order, the first most often: the provider's, which needs the
    # most steps to reach interesting states, comes first.

    # --- the caller ----------------------------------------------------------------------------

    @precondition(lambda self: self.core.phase is not Phase.ENDED)  # the teardown covers "after"
    @rule(
        ms=st.sampled_from([20, 20, 100, 250]) | st.integers(0, 300),
        broken=st.integers(0, 9),
        value=st.integers(1, 255),
    )
    def send_audio(self, ms: int, broken: int, value: int) -> None:
        """One message of audio: 0-300 ms, mostly 20 ms; one in ten not whole samples."""
        fb = self.fmt.frame_bytes
        data = bytes([value]) * (self.fmt.bytes_for(ms / 1000) + (1 if broken == 0 and fb > 1 else 0))
        phase = self.core.phase
        taken = self.core.on_audio(data, self.now)
        accepted = bool(taken)
        assert accepted == (phase is Phase.ACTIVE and len(data) % fb == 0)
        if taken in (AudioTaken.JOINED, AudioTaken.WAITING) and data:
            # The driver will not poll now: there must be nothing to do before a deadline,
            # and new waiting audio's deadline must be within max_buffer_ms.
            assert self.core.link is Link.CONNECTED and not self.core.has_actions
            assert self.core.unsent_bytes < self.fmt.bytes_for(self.config.send_chunk_ms / 1000)
            deadline = self.core.next_deadline()
            assert deadline is not None
            assert deadline > self.now
            if taken is AudioTaken.WAITING:
                assert deadline <= self.now + self.config.max_buffer_ms / 1000 + 1e-9
        if accepted and data:
            self.call_audio += data
            self.arrivals.append(Arrival(self.origin + len(self.call_audio), self.now, self.connected))
        self._poll()
        assert self.core.retained_bytes <= self.max_retained

    @precondition(lambda self: self.core.phase is not Phase.ENDED)
    @rule(
        what=st.sampled_from(["attach", "attach", "detach", "detach", "end", "stop", "dtmf", "finalize"]),
        roll=st.integers(0, 9),
    )
    def the_caller_acts(self, what: str, roll: int) -> None:
        """Sources come and go, a key is pressed, a finalize is asked for; the call ends, or the
        worker stops it (each rarely: both end the interesting part of a run)."""
        source = "a" if roll % 2 else "b"
        if what == "attach":
            self.core.attach_source(source, self.now)
        elif what == "detach":
            self.core.detach_source(source, self.now)
        elif what == "end" and roll < 3:
            self.core.end("end", self.now)
        elif what == "stop" and roll == 0:
            self.core.fail("shutdown", "the worker is stopping", self.now)
        elif what == "dtmf":
            self.core.on_dtmf("0123456789"[roll], roll % 2, self.now)
        elif what == "finalize":
            self.core.finalize(self.now)
        self._poll()

    @precondition(lambda self: self.core.failover is not None)
    @rule(up=st.sampled_from([True, True, False]))
    def the_primary_changes(self, up: bool) -> None:
        """The primary's health as the registry sees it: up (since now, if it was not) or down."""
        if not up:
            self.primary_up_since = None
        elif self.primary_up_since is None:
            self.primary_up_since = self.now
        self._poll()

    @rule(seconds=st.floats(0, 2) | st.sampled_from([0.02, 0.1, 3.0, 12.0]))
    def time_passes(self, seconds: float) -> None:
        self._run_until(self.now + seconds)

    # --- the provider ------------------------------------------------------------------------

    @precondition(
        lambda self: self.opening is not None or self.connected is not None or self.core.conn_id >= 2
    )
    @rule(data=st.data())
    def provider_acts(self, data: st.DataObject) -> None:
        """Whatever the provider can do in the stream's state: answer an open, send results,
        drop the stream, answer Finalize; and streams that are gone send stale news."""
        choices = []
        if self.opening is not None:
            choices += ["opened", "opened", "opened", "open_failed"]
        if self.connected is not None:
            choices += ["final", "final", "interim", "vad", "drop"]
            if self.streams[self.connected].ended:
                choices += ["finalize_answered", "finalize_answered"]
        if self.core.conn_id >= 2:
            choices.append("stale")
        if not choices:
            return
        what = data.draw(st.sampled_from(choices))
        if what in ("opened", "open_failed"):
            self._open_answered(what == "opened", data.draw(st.booleans()), data.draw(st.integers(0, 2)))
        elif what in ("final", "interim"):
            stream = self.streams[self.connected or 0]
            channel = data.draw(st.integers(0, self.fmt.channels - 1))
            seconds = data.draw(st.floats(0, 3))
            self._result(
                stream, channel, seconds, is_final=what == "final", speech_final=data.draw(st.booleans())
            )
        elif what == "vad":
            stream = self.streams[self.connected or 0]
            channel = data.draw(st.integers(0, self.fmt.channels - 1))
            t = data.draw(st.floats(0, 1)) * self.fmt.seconds(len(stream.received))
            message = SpeechStarted(channel, t) if data.draw(st.booleans()) else UtteranceEnd(channel, t)
            self.core.on_stream_event(stream.conn_id, message, self.now)
        elif what == "drop":
            self._stream_ends(
                data.draw(st.sampled_from(["retryable", "retryable", "fatal", "clean", "outage"]))
            )
        elif what == "finalize_answered":
            self._finalize_answered(data.draw(st.booleans()))
        else:
            self._stale_news(data)
        self._poll()

    def _open_answered(self, succeeds: bool, retryable: bool, kind: int) -> None:
        """`kind`: 0 a plain failure, 1 a handshake refused with a status, 2 an outage."""
        conn = self.opening
        assert conn is not None
        self.opening = None
        if succeeds:
            if self.core.on_stream_opened(conn, self.now):
                self.connected = conn
                self.ever_opened = True
                self.streams[conn] = StreamModel(conn, base=self.core.covered_offset)
            else:
                self.live.discard(conn)  # the driver closes a stream the core no longer wants
        else:
            self.live.discard(conn)
            error = ProviderError(
                "refused",
                "the model refused",
                retryable=retryable,
                status=503 if kind else None,
                outage=kind == 2,
            )
            self.core.on_stream_failed(conn, error, self.now)

    def _stream_ends(self, how: str) -> None:
        conn = self.connected
        assert conn is not None
        self.connected = None
        self.live.discard(conn)
        error = (
            None
            if how == "clean"
            else ProviderError(how, "dropped", retryable=how != "fatal", outage=how == "outage")
        )
        self.core.on_stream_closed(conn, error, self.now)

    def _finalize_answered(self, closes: bool) -> None:
        """Finalize's answer: a final per channel over everything heard, then a clean close."""
        conn = self.connected
        assert conn is not None
        stream = self.streams[conn]
        for channel in range(self.fmt.channels):
            self._result(stream, channel, math.inf, is_final=True, speech_final=True, from_finalize=True)
        if closes:
            self._stream_ends("clean")

    def _stale_news(self, data: st.DataObject) -> None:
        """A stream that is no longer the current one reports: nothing changes."""
        old = data.draw(st.integers(1, self.core.conn_id - 1))
        what = data.draw(st.sampled_from(["opened", "failed", "closed", "dropped", "result"]))
        before = self.core.snapshot(self.now)
        now = self.now
        error = ProviderError("late", "late news", retryable=False)
        if what == "opened":
            assert not self.core.on_stream_opened(old, now)
        elif what == "failed":
            self.core.on_stream_failed(old, error, now)
        elif what == "closed":
            self.core.on_stream_closed(old, None, now)
        elif what == "dropped":
            self.core.on_stream_closed(old, error, now)
        else:
            late = TranscriptResult(0, True, True, "late", 0.9, 0.0, 1.0, (Word("late", 0.1, 0.2, 0.9),))
            self.core.on_stream_event(old, late, now)
        assert self.core.snapshot(now) == before
        assert self.core.next_deadline() != -math.inf, "stale news produced actions"

    def _result(
        self,
        stream: StreamModel,
        channel: int,
        seconds: float,
        *,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool = False,
    ) -> None:
        fmt = self.fmt
        heard = fmt.seconds(len(stream.received))
        start = stream.final_end.get(channel, 0.0)
        end = max(start, min(heard, start + seconds))
        base_s = fmt.seconds(stream.base)
        words = []
        first = math.ceil((base_s + start) / WORD_EVERY_S - 1e-9)
        k = max(first, 0)
        while k * WORD_EVERY_S + WORD_S <= base_s + end + 1e-9:
            at = k * WORD_EVERY_S - base_s
            words.append(Word(f"c{channel}w{k}", at, at + WORD_S, 0.9))
            k += 1
        result = TranscriptResult(
            channel=channel,
            is_final=is_final,
            speech_final=speech_final,
            text=" ".join(w.word for w in words),
            confidence=0.9 if words else 0.0,
            start=start,
            duration=end - start,
            words=tuple(words),
            from_finalize=from_finalize,
            channels=fmt.channels,
        )
        if is_final:
            stream.final_end[channel] = end
        self.core.on_stream_event(stream.conn_id, result, self.now)

    # --- always ------------------------------------------------------------------------------

    @invariant()
    def bounded_and_single(self) -> None:
        assert len(self.live) <= 1
        assert self.core.retained_bytes <= self.max_retained
        assert self.fallback_slots == (1 if self.moved else 0), "a fallback slot held or lost"
        if self.core.phase is Phase.ENDED:
            assert not self.live and self.core.next_deadline() is None

    def teardown(self) -> None:
        """Drive the call to its end: `session_ended` comes once, last, within the bound on a
        call's end, and nothing the call is told afterwards is emitted."""
        if not hasattr(self, "core"):
            return
        self.core.end("end", self.now)
        self._run_until(self.now + FINALIZE_WAITS_MAX * self.config.finalize_timeout_s + 0.1)
        assert self.core.phase is Phase.ENDED
        ended = [e for e in self.events if e["type"] == "session_ended"]
        assert len(ended) == 1 and self.events[-1] is ended[0]
        self.core.on_audio(b"\x00" * self.fmt.frame_bytes, self.now)
        self.core.emit_error("bad_message", "a late message", self.now)
        self.core.on_dtmf("9", 0, self.now)
        self.core.fail("shutdown", "stopping", self.now)
        self.core.end("end", self.now)
        self._poll()
        assert self.events[-1] is ended[0], f"{self.events[-1]['type']} after session_ended"


SessionMachine.TestCase.settings = examples(400, stateful_step_count=80)
test_the_session_core_keeps_its_invariants = SessionMachine.TestCase
