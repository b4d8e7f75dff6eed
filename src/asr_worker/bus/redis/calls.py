"""The calls this worker owns on the bus, and who may change what of each.

An `OwnedCall` is shared by the bus's loops, so each part of it has one writer:

* `state`: the writer (`writer.py`) moves it, on the session's end and when another worker
  turns out to hold the call; everyone else only reads it.
* `cursor` (an `AudioCursor`): the audio reader (`audio.py`) alone, after intake set it up.
* `progress` (a `SavedProgress`): the writer alone, after intake set it up.
* `fed` (a `FedEntries`): where the two meet; the reader records each entry it feeds, the
  writer asks where a covered offset falls and so drops what finals have covered.
* the session (`source`, the bus's `CallSource` on it): driven only through the methods under
  "the call's session", so the bus joins a session in one place. Intake opens it (joining
  it, or abandoning a call workers kept dying on); the audio reader feeds, ends, leaves and
  rejoins it as the producer comes and goes; the writer ends it when another worker holds
  the call.

`CallTable` holds them by interaction id: intake adds a call, the writer forgets it once it is
over (or intake, if the session was refused).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from ...core.audio import AudioFormat
from ...core.call_options import NO_OPTIONS, CallOptions
from ...core.ids import CallKey
from ...core.session import Phase
from ...core.session_types import Resume
from .wire import audio_key, call_tag

if TYPE_CHECKING:
    from ...runtime.manager import SessionManager
    from ...runtime.runner import SessionRunner
    from ...runtime.source import CallSource

# The reason a session ends with when its call is given up (ASR_MAX_TAKEOVERS).
ABANDONED: Final = "call_abandoned"


class CallState(StrEnum):
    READING = "reading"  # session live; reading audio until the end entry
    ENDED = "ended"  # the session ended the call; its session_ended is on its way to Redis
    HANDING_OVER = "handing_over"  # shutdown: save progress, then let another worker take it
    LOST = "lost"  # another worker holds the entry now; nothing more is written


@dataclass(frozen=True, slots=True)
class ClaimTiming:
    """Every ownership interval, derived from `ASR_CLAIM_IDLE_S`: an owner refreshes its
    entries four times per claim time, others take entries idle for three quarters of it."""

    claim_idle_s: float

    @property
    def refresh_interval_s(self) -> float:
        return self.claim_idle_s / 4

    @property
    def claim_min_idle_ms(self) -> int:
        return round(self.claim_idle_s * 750)

    @property
    def claim_scan_interval_s(self) -> float:
        return min(1.0, self.claim_idle_s / 10)

    @property
    def handback_idle_ms(self) -> int:
        """The idle time an entry handed back is given: the next scan anywhere takes it."""
        return self.claim_min_idle_ms * 4


@dataclass(slots=True)
class AudioCursor:
    """Where reading the call's audio stands. Changed by the audio reader only."""

    read_after: str = "0-0"  # the last entry consumed
    offset: int = 0  # call byte offset of the next byte to feed
    skip_entry: str = ""  # on resume, the first entry: its first `skip` bytes are already covered
    skip: int = 0
    end_seen: bool = False
    silent_since: float | None = None  # monotonic time the producer last went quiet


@dataclass(frozen=True, slots=True)
class ProgressPoint:
    """A place in the call to save: final results cover it up to call byte `covered`, the
    last entry wholly covered is `after`, and the first `skip` bytes of entry `next` are."""

    covered: int
    after: str
    next: str
    skip: int


@dataclass(frozen=True, slots=True)
class PendingProgress:
    """Progress to save once every event up to `seq` is written: final results behind the
    point were all emitted by then."""

    point: ProgressPoint
    seq: int


@dataclass(slots=True)
class SavedProgress:
    """What of the call Redis holds. Changed by the writer only."""

    saved_offset: int = 0
    saved_after: str = "0-0"
    pending: PendingProgress | None = None
    written_seq: int = 0  # highest seq of this call written to (or dropped before) Redis
    entry_gone: bool = False  # the call's entry was found pending for no one (logged once)


@dataclass(slots=True)
class _Fed:
    entry_id: str
    start: int  # call byte offsets of the audio this entry gave the session
    end: int


class FedEntries:
    """Audio entries fed to the session and not yet wholly covered by final results. The
    reader records, the writer resolves covered offsets; held only until finals cover them."""

    __slots__ = ("_fed", "after")

    def __init__(self, after: str = "0-0") -> None:
        self._fed: deque[_Fed] = deque()
        self.after = after  # the last entry wholly covered

    def record(self, entry_id: str, start: int, end: int) -> None:
        self._fed.append(_Fed(entry_id, start, end))

    def point(self, covered: int) -> ProgressPoint:
        """Where a covered call offset falls: the last entry wholly covered, the entry the
        offset falls in, and how many of that entry's bytes are covered."""
        fed = self._fed
        while fed and fed[0].end <= covered:
            self.after = fed.popleft().entry_id
        if fed and fed[0].start < covered:
            head = fed[0]
            return ProgressPoint(covered, self.after, head.entry_id, covered - head.start)
        return ProgressPoint(covered, self.after, "", 0)


@dataclass(slots=True)
class OwnedCall:
    interaction_id: str
    tenant_id: str
    fmt: AudioFormat
    entry_id: str  # the call's entry in asr:calls
    mark: str  # the transcript's last id before this call's first event
    cursor: AudioCursor = field(default_factory=AudioCursor)
    progress: SavedProgress = field(default_factory=SavedProgress)
    fed: FedEntries = field(default_factory=FedEntries)
    state: CallState = CallState.READING
    source: CallSource | None = None
    cluster: bool = False  # its keys carry its id as a Redis Cluster hash tag
    options: CallOptions = NO_OPTIONS  # from its announcement, which every takeover reads again

    @property
    def tag(self) -> str:
        """The call's name in its Redis keys (`wire.call_tag`)."""
        return call_tag(self.tenant_id, self.interaction_id)

    @property
    def audio_key(self) -> str:
        return audio_key(self.tag, cluster=self.cluster)

    # --- the call's session: the only code on the bus that drives its runner -----------------

    def open(self, manager: SessionManager, resume: Resume | None) -> None:
        """Join the call's session, starting it, with this bus as its source (raises
        SessionRefused or ValueError if this worker cannot)."""
        self.source = manager.join(
            CallKey(self.tenant_id, self.interaction_id), self.fmt, resume, options=self.options
        )

    @property
    def runner(self) -> SessionRunner | None:
        """The session, for what the bus reads of it (`status`, `wants_audio`)."""
        return None if self.source is None else self.source.runner

    def rejoin(self) -> None:
        """The producer is back after going quiet: the session has this bus as a source again."""
        if self.source is not None:
            self.source.rejoin()

    def leave(self) -> None:
        """The producer went quiet: the session counts its source as gone (its grace applies)."""
        if self.source is not None:
            self.source.leave()

    def feed(self, audio: bytes) -> bool:
        return self.source is not None and self.source.feed(audio)

    def end(self, reason: str) -> None:
        if self.source is not None:
            self.source.end(reason)

    def report(self, code: str, message: str) -> None:
        """An error in what the producer wrote; it goes out as the call's error event."""
        if self.source is not None:
            self.source.error(code, message)

    def abandon(self, code: str, message: str) -> None:
        if self.source is not None:
            self.source.abandon(code, message)

    @property
    def active(self) -> bool:
        """The session takes audio (not ending, not ended)."""
        return self.runner is not None and self.runner.status.phase is Phase.ACTIVE

    @property
    def session_over(self) -> bool:
        return self.runner is None or self.runner.status.phase is Phase.ENDED

    def wants_audio(self, feed_limit_bytes: int) -> bool:
        runner = self.runner
        if self.state is not CallState.READING or self.cursor.end_seen or runner is None:
            return False
        # The stream is the buffer: while the provider is not taking audio, leave it in Redis
        # rather than fill the session's retained buffer (which would shed the oldest).
        return runner.wants_audio(feed_limit_bytes)


class CallTable:
    """The calls this worker owns, by interaction id, and two wake-ups: `changed` when intake
    adds one (the audio reader has a new stream to read), `freed` when a call leaves or its
    session ends (intake may have room again)."""

    def __init__(self) -> None:
        self._calls: dict[str, OwnedCall] = {}
        self.changed = asyncio.Event()
        self.freed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[OwnedCall]:
        return iter(list(self._calls.values()))

    def get(self, tag: str) -> OwnedCall | None:
        """The call with this tag (`wire.call_tag`: its tenant and id)."""
        return self._calls.get(tag)

    def add(self, call: OwnedCall) -> None:
        self._calls[call.tag] = call

    def forget(self, call: OwnedCall) -> None:
        if self._calls.get(call.tag) is call:
            del self._calls[call.tag]
        self.freed.set()
