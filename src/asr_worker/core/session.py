"""The session core: one call's state machine, with no I/O and no clock of its own.

It is driven the way the websockets library's sans-I/O protocol is: the edges feed it inputs
(`on_audio`, `end`, `on_stream_opened`, `on_stream_event`, `on_stream_closed`, source attach
and detach), each with the current monotonic time, then call `poll(now)` to collect the
actions to carry out (open a provider stream, send audio, send a keep-alive, end or abort a
stream, emit an event: a typed value from `events`, which only the edges write as JSON) and
`next_deadline()` to know when to poll again if nothing else happens.

The session invariants (docs/ingest-and-events.md) hold here, each kept by a small pure part
this core owns (its own module, with its own tests), and the core orchestrates them: the
phases, the link state, the actions and the events.

* single flight: a stream is opened only from the IDLE/BACKOFF states, so however many
  sources deliver first frames before the provider answers, exactly one open happens; a
  failed one is retried after a jittered backoff (`backoff.py`);
* continuous forwarding: once connected, no byte waits longer than `max_buffer_ms`
  (`forwarding.py`, which also times keep-alives);
* no lost audio: bytes stay in the replay buffer (`replay.py`) until a final result covers
  them, and a new stream starts by replaying them; call time = stream time + stream base;
* no repeated words: words a channel has already finalized are left out of later results
  (`dedup.py`, applied with redaction by `results.py`);
* failover: when the provider cannot carry the call (`failover.py` decides when), the next
  stream opens on the fallback with the same replay, and `provider_changed` says so; with
  failback on, the same way back to the primary, once, at an utterance boundary;
* finalize: on end, everything is flushed, the stream is ended, and `session_ended` is emitted
  only after the provider confirmed its last results, or a bounded wait ran out (`end_wait.py`);
* bounds: a flooding source loses the excess (`rate_limit.py`); each transcript says how long
  ago its audio arrived (`latency.py`);
* redaction: every transcript passes the call's `Redactor` (`redact.py`) before it is emitted,
  whichever stream or provider heard it: nothing after the core sees what it takes out;
* pause: paused audio is counted and dropped before the replay buffer (no stream, replay or
  failover sends it); call time runs on, results map past the gaps (`pause.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from ..errors import ProviderError
from .actions import (
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
from .audio import AudioFormat
from .backoff import Backoff
from .call_time import extras
from .end_wait import FINALIZE_WAITS_MAX, EndWait
from .events import (
    CallError,
    CallEvent,
    Dtmf,
    Paused,
    ProviderChanged,
    Resumed,
    SessionEnded,
    SessionStarted,
    SpeechStarted,
    Transcript,
    UtteranceEnd,
)
from .failover import FULL, MOVED, PRIMARY_RECOVERED, Failover
from .forwarding import Forwarding
from .latency import ArrivalLatency
from .pause import PauseMap
from .provider_events import ProviderEvent, StreamMetadata, TranscriptResult
from .provider_events import SpeechStarted as ProviderSpeechStarted
from .provider_events import UtteranceEnd as ProviderUtteranceEnd
from .rate_limit import TokenBucket
from .redact import Redactor
from .replay import ReplayBuffer
from .results import ResultReader
from .session_types import Resume, SessionConfig, SessionStats

# FINALIZE_WAITS_MAX is the end wait's, and here too: a call's longest end is the session's fact.
__all__ = ["FINALIZE_WAITS_MAX", "Link", "Phase", "SessionCore"]


class Phase(StrEnum):
    ACTIVE = "active"
    ENDING = "ending"
    ENDED = "ended"


class Link(StrEnum):
    """The state of the (at most one) provider stream."""

    IDLE = "idle"  # no audio yet, so no stream wanted
    CONNECTING = "connecting"  # an open is in flight; everyone else waits for it
    CONNECTED = "connected"
    BACKOFF = "backoff"  # the last stream dropped or failed to open; retrying after a backoff
    CLOSING = "closing"  # end sent; waiting for the provider's last results and clean close


@dataclass(slots=True)
class SessionCore:
    interaction_id: str
    tenant_id: str | None
    fmt: AudioFormat
    provider: str
    config: SessionConfig
    created_at: float
    wall_ms_at_create: int
    rng: random.Random = field(default_factory=random.Random)
    resume: Resume | None = None
    failover: Failover | None = None  # with a fallback provider: when and where the call moves
    redactor: Redactor | None = None  # with `redact`: every transcript passes through it

    phase: Phase = Phase.ACTIVE
    link: Link = Link.IDLE
    conn_id: int = 0
    end_reason: str | None = None
    stats: SessionStats = field(default_factory=SessionStats)

    # The parts, each its own idea (module docstring); made from the config below.
    _replay: ReplayBuffer = field(init=False)
    _forwarding: Forwarding = field(init=False)
    _results: ResultReader = field(init=False)  # dedup and redaction of every result
    _arrivals: ArrivalLatency = field(default_factory=ArrivalLatency)
    _rate: TokenBucket = field(init=False)
    _backoff: Backoff = field(init=False)
    _end_wait: EndWait = field(init=False)
    _pause: PauseMap = field(default_factory=PauseMap)

    _ever_connected: bool = False
    _grace_at: float | None = None
    _dropping: bool = False
    _told_ending: bool = False
    _flush_wanted: bool = False  # a finalize asked for while no stream was connected
    _sources: set[str] = field(default_factory=set)
    _seq: int = 0
    _outbox: list[Action] = field(default_factory=list)
    _frame_bytes: int = field(init=False, default=0)  # the format's, read per frame

    def __post_init__(self) -> None:
        fmt, config = self.fmt, self.config
        self._frame_bytes = fmt.frame_bytes
        self._results = ResultReader(self.redactor)
        self._replay = ReplayBuffer(fmt.bytes_for(config.max_retained_s), fmt.frame_bytes)
        self._forwarding = Forwarding(
            chunk_bytes=max(fmt.frame_bytes, fmt.bytes_for(config.send_chunk_ms / 1000)),
            max_wait_s=config.max_buffer_ms / 1000,
            keepalive_s=config.keepalive_s,
            message_bytes=max(fmt.frame_bytes, fmt.bytes_for(config.max_message_ms / 1000)),
        )
        self._rate = TokenBucket(config.max_frames_per_s, self.created_at)
        self._backoff = Backoff(config.backoff_initial_s, config.backoff_max_s, self.rng)
        self._end_wait = EndWait(config.finalize_timeout_s)
        # A session nobody feeds ends after the grace period like one whose sources left.
        self._grace_at = self.created_at + config.grace_s
        offset_s: float | None = None
        if self.resume is not None:
            self._start_from(self.resume)
            offset_s = round(fmt.seconds(self.resume.offset), 3)
        self._emit(
            SessionStarted(
                self.interaction_id,
                self.tenant_id,
                self._next_seq(),
                self.provider,
                str(fmt.encoding),
                fmt.sample_rate,
                fmt.channels,
                self._wall_ms(self.created_at),
                resumed=offset_s is not None,
                offset_s=offset_s,
            )
        )

    def _start_from(self, resume: Resume) -> None:
        """Every call offset starts at `resume.offset` instead of 0; nothing before it is held."""
        if resume.offset < 0 or resume.offset % self.fmt.frame_bytes or resume.seq < 0:
            raise ValueError(f"cannot resume at byte {resume.offset}, seq {resume.seq}: not whole samples")
        self._replay.start_at(resume.offset)
        self._results.dedup.start_at(self.fmt.seconds(resume.offset), resume.finalized_s, self.fmt.channels)
        self._seq = resume.seq

    # --- inputs from sources --------------------------------------------------------------

    def attach_source(self, source_id: str, now: float) -> None:
        self._sources.add(source_id)
        self._grace_at = None

    def detach_source(self, source_id: str, now: float) -> None:
        self._sources.discard(source_id)
        if not self._sources and self.phase is Phase.ACTIVE:
            self._grace_at = now + self.config.grace_s

    @property
    def source_count(self) -> int:
        return len(self._sources)

    def on_audio(self, data: bytes, now: float) -> AudioTaken:
        """Take one message of audio; what it returns tells the driver what is due next."""
        if self.phase is not Phase.ACTIVE:
            self.stats.frames_rejected += 1
            if not self._told_ending:
                self._told_ending = True  # once: a source still streaming must not flood watchers
                self.emit_error("session_ending", ending_message(self.end_reason), now)
            return AudioTaken.REFUSED
        if len(data) % self._frame_bytes:
            self.stats.frames_rejected += 1
            self.emit_error(
                "bad_audio",
                f"a message of {len(data)} bytes is not whole {self.fmt.encoding} samples "
                f"({self.fmt.frame_bytes} bytes per sample over {self.fmt.channels} channel(s)); dropped",
                now,
            )
            return AudioTaken.REFUSED
        if not data:
            return AudioTaken.JOINED
        if not self._rate.take(now):
            self._rate_limited(now)
            return AudioTaken.REFUSED
        stats = self.stats
        stats.frames_in += 1
        stats.bytes_in += len(data)
        if self._pause.paused:
            # Counted in the call's time, never held: no stream, replay or failover can send it.
            self._pause.skip(self._replay.received, len(data))
            stats.bytes_paused += len(data)
            return AudioTaken.JOINED
        if self.link is Link.IDLE:
            self._open(now)
        else:
            stats.frames_reused += 1
        replay, forwarding = self._replay, self._forwarding
        received = replay.append(data)
        self._arrivals.arrived(received, now)
        starts_waiting = forwarding.waits(now)
        if received - replay.base > replay.capacity_bytes:
            self._shed_oldest(now)
        if (
            self.link is not Link.CONNECTED
            or self._outbox
            or received - replay.sent >= forwarding.chunk_bytes
        ):
            return AudioTaken.POLL
        return AudioTaken.WAITING if starts_waiting else AudioTaken.JOINED

    def _rate_limited(self, now: float) -> None:
        """A message over the rate limit was dropped: counted, and said once a second."""
        self.stats.frames_rate_limited += 1
        if self._rate.warn_due(now):
            self.emit_error(
                "rate_limited",
                f"more than {self._rate.per_s:g} audio messages a second for this call; "
                "the excess is dropped",
                now,
            )

    def end(self, reason: str, now: float) -> None:
        """The call is over: flush, end the stream, emit `session_ended` once it confirmed."""
        if self.phase is not Phase.ACTIVE:
            return
        self.phase = Phase.ENDING
        self.end_reason = reason
        self._grace_at = None
        self._end_wait.start(now)
        if self.failover is not None:
            self.failover.ending(now + self.config.finalize_timeout_s / 2)
        if self.link is Link.IDLE:
            self._finish(now)
        elif self.link is Link.CONNECTED:
            self._flush(now)
            self._end_stream()

    def finalize(self, now: float) -> None:
        """A source wants the pending utterance's final now (a voice bot at the end of a turn);
        the call goes on. What waits goes out first, then the provider's flush. Without a
        connected stream the flush follows the next connection's replay, so it still covers
        the audio the source had sent when it asked."""
        if self.phase is not Phase.ACTIVE:
            return
        if self.link is Link.CONNECTED:
            self._flush(now)
            self._outbox.append(FlushStream(self.conn_id))
        else:
            self._flush_wanted = True

    def fail(self, code: str, message: str, now: float) -> None:
        """End the call at once, without waiting for the provider (a fault, or a forced stop)."""
        if self.phase is Phase.ENDED:
            return
        self.emit_error(code, message, now)
        self.end_reason = code
        self._finish(now)

    def emit_error(self, code: str, message: str, now: float) -> None:
        if self.phase is Phase.ENDED:
            return  # `session_ended` was the call's last event: a late source's error has no call
        self._emit(
            CallError(
                self.interaction_id, self.tenant_id, self._next_seq(), code, message, self._wall_ms(now)
            )
        )

    def on_dtmf(self, digit: str, channel: int, now: float) -> None:
        """A key pressed on a phone (telephony `dtmf`): an event in the call's order, at the
        call time its audio has reached, for a voice bot to act on. Not while the call is
        paused: a card keyed in then is what the pause is for."""
        if self.phase is Phase.ENDED or self._pause.paused:
            return
        at = round(self.audio_s, 3)
        seq = self._next_seq()
        self._emit(Dtmf(self.interaction_id, self.tenant_id, seq, digit, channel, at, self._wall_ms(now)))

    def pause_audio(self, now: float) -> bool:
        """Stop the call's audio reaching the provider (a card is about to be read out): it is
        asked to finalize what it heard, then gets keep-alives. False if paused or ending."""
        if self.phase is not Phase.ACTIVE or self._pause.paused:
            return False
        self._pause.paused = True
        at, seq = round(self.audio_s, 3), self._next_seq()
        self._emit(Paused(self.interaction_id, self.tenant_id, seq, at, self._wall_ms(now)))
        if self.link is Link.CONNECTED:
            self._flush(now)  # what arrived before the pause is heard, and finalized
            self._outbox.append(FlushStream(self.conn_id))
        elif self._replay.received > self._replay.covered:
            self._flush_wanted = True
        return True

    def resume_audio(self, now: float) -> bool:
        """The call's audio reaches the provider again. False if it was not paused."""
        if self.phase is Phase.ENDED or not self._pause.paused:
            return False
        self._pause.paused = False
        at, seq = round(self.audio_s, 3), self._next_seq()
        self._emit(Resumed(self.interaction_id, self.tenant_id, seq, at, self._wall_ms(now)))
        return True

    @property
    def paused(self) -> bool:
        return self._pause.paused

    # --- inputs from the provider stream --------------------------------------------------

    def on_stream_opened(self, conn_id: int, now: float) -> bool:
        """The open for `conn_id` succeeded. False means the core no longer wants that stream
        (the call ended meanwhile) and the driver must close it."""
        if conn_id != self.conn_id or self.link is not Link.CONNECTING:
            return False
        self.link = Link.CONNECTED
        self.stats.streams_opened += 1
        if self._ever_connected:
            self.stats.reconnects += 1
        self._ever_connected = True
        if self.failover is not None:
            self.failover.opened(now)
        self._backoff.reset()
        # Replay: the new stream starts at the first byte no final has covered.
        self.stats.bytes_replayed += self._replay.rewind()
        self._pause.fold_through(self._replay.stream_base)
        self._forwarding.stream_opened(now)
        if self._replay.unsent_bytes > 0:
            self._flush(now)
        if self._flush_wanted and self.phase is Phase.ACTIVE:
            self._outbox.append(FlushStream(self.conn_id))
        self._flush_wanted = False
        if self.phase is Phase.ENDING:
            self._end_wait.again(now)  # a new connection: its last finals may still come
            self._end_stream()
        return True

    def on_stream_failed(self, conn_id: int, error: ProviderError, now: float) -> None:
        """The open for `conn_id` failed."""
        if conn_id != self.conn_id or self.link is not Link.CONNECTING:
            return
        self.stats.open_failures += 1
        self._lost_stream(error, now)

    def on_stream_closed(self, conn_id: int, error: ProviderError | None, now: float) -> None:
        """The stream `conn_id` ended: cleanly (`error` None) or not."""
        if conn_id != self.conn_id or self.link not in (Link.CONNECTED, Link.CLOSING):
            return
        if error is None and self.link is Link.CLOSING:
            self._finish(now)
            return
        if error is None:
            error = ProviderError("closed", "the provider closed the stream unasked", retryable=True)
        self.stats.drops += 1
        self._lost_stream(error, now)

    def on_stream_event(self, conn_id: int, event: ProviderEvent, now: float) -> None:
        if conn_id != self.conn_id or self.link not in (Link.CONNECTED, Link.CLOSING):
            return
        failover = self.failover
        if failover is not None and failover.down_since is not None:
            failover.working()  # a result: this connection carries the call
        if isinstance(event, TranscriptResult):
            self._on_result(event, self._base_s(event.start), now)
            # Failback happens at an utterance boundary: a final ending an utterance, or silence.
            boundary = event.is_final and (event.speech_final or not event.text)
            if boundary and failover is not None and self.phase is Phase.ACTIVE and failover.return_due(now):
                self._fail_back(now)
        elif isinstance(event, ProviderUtteranceEnd):
            self._emit(
                UtteranceEnd(
                    self.interaction_id,
                    self.tenant_id,
                    self._next_seq(),
                    event.channel,
                    round(self._base_s(event.last_word_end) + event.last_word_end, 3),
                    self.provider,
                    self._wall_ms(now),
                )
            )
        elif isinstance(event, ProviderSpeechStarted):
            self._emit(
                SpeechStarted(
                    self.interaction_id,
                    self.tenant_id,
                    self._next_seq(),
                    event.channel,
                    round(self._base_s(event.timestamp) + event.timestamp, 3),
                    self.provider,
                    self._wall_ms(now),
                )
            )
        elif isinstance(event, StreamMetadata):
            pass  # summarized by session_ended; the provider client logs its request id

    # --- outputs --------------------------------------------------------------------------

    def poll(self, now: float) -> list[Action]:
        """Run what is due at `now` and hand over every pending action."""
        if self.phase is Phase.ACTIVE and _due(now, self._grace_at):
            self.end("grace_timeout", now)
        if self.phase is Phase.ENDING and _due(now, self._end_wait.deadline):
            self._give_up(now)
        failover = self.failover
        if failover is not None and self.link in (Link.CONNECTING, Link.BACKOFF):
            reason = failover.due(now)
            if reason is not None:
                self._fail_over(reason, now)
        if self.link is Link.BACKOFF and _due(now, self._backoff.retry_at):
            self._open(now)
        if self.link is Link.CONNECTED:
            replay, forwarding = self._replay, self._forwarding
            if forwarding.send_due(replay.received - replay.sent, now):
                self._flush(now)
            elif forwarding.keepalive_due(now):
                self.stats.keepalives += 1
                self._outbox.append(SendKeepAlive(self.conn_id))
        actions, self._outbox = self._outbox, []
        return actions

    def next_deadline(self) -> float | None:
        """When `poll` has timed work to do next, if no input arrives first."""
        if self._outbox:
            return float("-inf")
        deadline = _NEVER  # the earliest of the timed work below that applies now
        if self.phase is Phase.ACTIVE:
            if self._grace_at is not None:
                deadline = self._grace_at
        elif self.phase is Phase.ENDING and self._end_wait.deadline is not None:
            deadline = self._end_wait.deadline
        link = self.link
        if link is Link.CONNECTED:
            replay = self._replay
            deadline = min(deadline, self._forwarding.deadline(replay.received - replay.sent))
        elif link is Link.BACKOFF and self._backoff.retry_at is not None:
            deadline = min(deadline, self._backoff.retry_at)
        if self.failover is not None and link in (Link.CONNECTING, Link.BACKOFF):
            deadline = min(deadline, self.failover.deadline() or _NEVER)
        return None if deadline == _NEVER else deadline

    @property
    def has_actions(self) -> bool:
        """`poll` has actions to hand over even before any deadline."""
        return bool(self._outbox)

    @property
    def ended(self) -> bool:
        return self.phase is Phase.ENDED and not self._outbox

    # --- views ----------------------------------------------------------------------------

    @property
    def audio_s(self) -> float:
        """The call's time: all the audio it received, paused stretches included."""
        return self.fmt.seconds(self._replay.received + self._pause.total_bytes)

    @property
    def retained_bytes(self) -> int:
        return self._replay.held_bytes

    @property
    def max_wait_s(self) -> float:
        """How long new waiting audio may wait before it must go out (`max_buffer_ms`)."""
        return self._forwarding.max_wait_s

    @property
    def unsent_bytes(self) -> int:
        return self._replay.unsent_bytes

    @property
    def covered_offset(self) -> int:
        """Call byte offset up to which final results cover the audio (or it was given up):
        a session resumed elsewhere at this offset loses no audio that is not yet final (and
        a pause that began there is covered too: it is never to be transcribed)."""
        return self._pause.call_offset(self._replay.covered)

    @property
    def last_seq(self) -> int:
        """The seq of the newest event this session has emitted."""
        return self._seq

    def snapshot(self, now: float) -> dict[str, object]:
        replay = self._replay
        return {
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "phase": str(self.phase),
            "provider_state": str(self.link),
            "provider": self.provider,
            **self.fmt.describe(),
            "sources": len(self._sources),
            "audio_s": round(self.audio_s, 3),
            "covered_s": round(self.fmt.seconds(self.covered_offset), 3),
            "paused": self._pause.paused,
            # Held audio: not yet sent (the only lag, at most ASR_MAX_BUFFER_MS while connected),
            # and sent but not covered by a final (kept for replay; seconds mid-utterance).
            "buffered_ms": round(self.fmt.seconds(replay.held_bytes) * 1000),
            "unsent_ms": round(self.fmt.seconds(replay.unsent_bytes) * 1000),
            "kept_for_replay_ms": round(self.fmt.seconds(replay.replayable_bytes) * 1000),
            "reconnects": self.stats.reconnects,
            "finals": self.stats.finals,
            "age_s": round(now - self.created_at, 3),
            "last_seq": self._seq,
        }

    # --- internals ------------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self.conn_id += 1
        self.link = Link.CONNECTING
        self._backoff.cancel()
        failover = self.failover
        if failover is not None:
            failover.wanting(now)
        fallback = failover is not None and failover.moved
        self._outbox.append(OpenStream(self.conn_id, reconnect=self._ever_connected, fallback=fallback))

    def _flush(self, now: float) -> None:
        """Send everything not yet sent on the current stream, in messages of bounded size."""
        replay = self._replay
        start, stop = replay.sent, replay.received
        if stop <= start:
            return
        waited = self._forwarding.sent(now)
        step = self._forwarding.message_bytes
        for i in range(start, stop, step):
            self._outbox.append(SendAudio(self.conn_id, replay.read(i, min(i + step, stop)), waited))
        self.stats.bytes_out += stop - start
        replay.sent_all()

    def _end_stream(self) -> None:
        self.link = Link.CLOSING
        self._outbox.append(EndStream(self.conn_id))

    def _lost_stream(self, error: ProviderError, now: float) -> None:
        self._outbox.append(AbortStream(self.conn_id))
        failover = self.failover
        if failover is not None and (error.retryable or error.outage):
            self.link = Link.BACKOFF  # an outage waits for the fallback's room as a retryable fault
            reason = failover.lost(error, now)
            if reason is not None and self._fail_over(reason, now):
                return
        elif not error.retryable:
            self.link = Link.IDLE
            self.emit_error(error.code, error.message, now)
            self.end_reason = "provider_error"
            self._finish(now)
            return
        self._backoff.failed(now)
        self.link = Link.BACKOFF
        if self._replay.received > self._replay.covered:
            self._forwarding.waits(now)  # what the next stream replays has waited since now

    def _fail_over(self, reason: str, now: float) -> bool:
        """Move the call to the fallback provider if it has room; the new stream replays the
        audio no final covered, as after any reconnect. False: the call stays where it is."""
        failover = self.failover
        assert failover is not None
        taken = failover.take(reason, self.provider, now)
        if taken == FULL:
            self.emit_error(
                "fallback_full",
                f"{self.provider} cannot carry this call ({reason}) and the fallback provider "
                f"{failover.config.fallback} has no room; the call waits for {self.provider}",
                now,
            )
        if taken != MOVED:
            return False
        if self.link is Link.CONNECTING:
            self._outbox.append(AbortStream(self.conn_id))
        self._switch(failover.config.fallback, reason, now)
        return True

    def _fail_back(self, now: float) -> None:
        """A moved call at an utterance boundary returns to its primary (failback): the
        fallback's stream is closed and the primary's replays what no final covered yet."""
        failover = self.failover
        assert failover is not None
        failover.go_back()
        self._outbox.append(AbortStream(self.conn_id))
        self._switch(failover.primary, PRIMARY_RECOVERED, now)

    def _switch(self, to: str, reason: str, now: float) -> None:
        previous, self.provider = self.provider, to
        at = round(self.fmt.seconds(self.covered_offset), 3)
        seq, wall_ms = self._next_seq(), self._wall_ms(now)
        self._emit(
            ProviderChanged(self.interaction_id, self.tenant_id, seq, previous, to, reason, at, wall_ms)
        )
        self._backoff.reset()
        self._open(now)

    def _on_result(self, result: TranscriptResult, base_s: float, now: float) -> None:
        channel, reader = result.channel, self._results
        heard = reader.heard(result, base_s)
        self.stats.words_deduplicated = reader.words_deduplicated
        start_s, end_s = heard.start_s, heard.end_s
        if result.is_final:
            self.stats.finals += 1
            if self._cover(channel, end_s, result.channels) and self.phase is Phase.ENDING:
                self._end_wait.again(now)  # progress: more finals may still come
        else:
            self.stats.interims += 1
        if not heard.text and not result.from_finalize:
            return  # silence: it advanced coverage above, but is not news to anyone
        text, words = reader.shown(result, heard, base_s)
        self.stats.spans_redacted = reader.spans_redacted
        self._emit(
            Transcript(
                self.interaction_id,
                self.tenant_id,
                self._next_seq(),
                channel,
                result.is_final,
                result.speech_final,
                result.from_finalize,
                text,
                round(result.confidence, 4),
                round(start_s, 3),
                round(max(start_s, end_s), 3),
                words,
                self.provider,
                self._arrivals.latency_ms(self._pause.kept_offset(self.fmt.bytes_for(end_s)), now),
                self._wall_ms(now),
                result.language,
                *extras(result, base_s, len(words) == len(result.words), reader.redactor is not None),
            )
        )

    def _cover(self, channel: int, end_s: float, channels: int) -> bool:
        """A final covered `channel` up to `end_s`; free what all have covered. True if it moved."""
        all_s = self._results.dedup.finalized(channel, end_s, channels)
        replay = self._replay
        if not replay.cover(self._pause.kept_offset(self.fmt.bytes_for(all_s))):
            return False
        self._arrivals.forget_through(replay.covered)
        return True

    def _shed_oldest(self, now: float) -> None:
        """The replay buffer is full: drop its oldest audio, counting what that costs."""
        replay = self._replay
        held_from = replay.base
        lost = replay.shed_oldest()
        if replay.base == held_from:
            return  # less than a frame over
        if lost:
            self.stats.bytes_dropped += lost
            if self.link in (Link.CONNECTED, Link.CLOSING):
                # The live stream would get audio with a hole in it; start a fresh one instead.
                self._lost_stream(ProviderError("stalled", "provider not taking audio", retryable=True), now)
            if not self._dropping:
                self._dropping = True
                self.emit_error(
                    "audio_dropped",
                    f"the provider is not taking audio; keeping only the last "
                    f"{self.config.max_retained_s:g} s, older audio is lost",
                    now,
                )
        else:
            self._dropping = False
        self._arrivals.forget_through(replay.base)

    def _give_up(self, now: float) -> None:
        untranscribed = self.fmt.seconds(self._replay.received - self._replay.covered)
        self.emit_error(
            "finalize_timeout",
            f"the provider did not confirm the last results within {now - self._end_wait.started_at:.3g} s "
            f"of the call's end; {untranscribed:.2f} s of audio may be untranscribed",
            now,
        )
        self._finish(now)

    def _finish(self, now: float) -> None:
        if self.link is not Link.IDLE:
            self._outbox.append(AbortStream(self.conn_id))
        self.link = Link.IDLE
        self.phase = Phase.ENDED
        self._end_wait.stop()
        self._backoff.cancel()
        self._emit(
            SessionEnded(
                self.interaction_id,
                self.tenant_id,
                self._next_seq(),
                self.end_reason or "end",
                round(self.audio_s, 3),
                self.stats.reconnects,
                self.stats.finals,
                self.provider,
                self._wall_ms(now),
            )
        )
        self._replay.clear()
        self._arrivals.clear()

    def _base_s(self, at_s: float) -> float:
        """The call time of the stream's time 0 for what it reports at `at_s`, past the pauses."""
        base, pause = self._replay.stream_base, self._pause
        if not pause.total_bytes:
            return self.fmt.seconds(base)
        kept = base + self.fmt.bytes_for(at_s)
        return self.fmt.seconds(base + pause.call_offset(kept) - kept)

    def _next_seq(self) -> int:
        """The seq of the event about to be made: one more than the call's last."""
        self._seq += 1
        return self._seq

    def _wall_ms(self, now: float) -> int:
        """`now` (monotonic) as wall-clock milliseconds, for an event's `timestamp_ms`."""
        return self.wall_ms_at_create + round((now - self.created_at) * 1000)

    def _emit(self, event: CallEvent) -> None:
        self._outbox.append(Emit(event))


_NEVER: Final = float("inf")

# Why a call takes no more audio, by its end's reason: whose move it was.
_ENDED_BY: Final = {
    "end": "the call is ending: its `end` came",
    "stop": "the call is ending: the platform's `stop` came",
    "grace_timeout": "the call ended: no source fed it for ASR_SESSION_GRACE_S",
    "shutdown": "the worker is shutting down; the call was finalized",
}


def ending_message(reason: str | None) -> str:
    """The `session_ending` error's message for audio that came after the call's end began."""
    why = _ENDED_BY.get(reason or "end")
    if why is None:
        why = f"the call failed ({reason})"
    return f"{why}; audio after that is not taken"


def _due(now: float, deadline: float | None) -> bool:
    """Deadlines are met to within a nanosecond, so a timer set for `deadline` never wakes
    a hair early and finds nothing to do."""
    return deadline is not None and now + 1e-9 >= deadline
