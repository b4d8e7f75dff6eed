"""What the session core tells its driver to do (the actions `poll` hands over) and what
`on_audio` did with a message. Plain frozen values, compiled with the core (setup.py): the
runner reads them for every chunk of audio it sends."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .events import CallEvent


class AudioTaken(IntEnum):
    """What `on_audio` did with a message, so the driver knows its next step without asking:
    at 500 calls it asks 25,000 times a second. Falsy only when refused."""

    REFUSED = 0  # not taken; an `error` event (in the outbox) may say why
    JOINED = 1  # joined audio already waiting to go out: nothing new is due
    WAITING = 2  # started new waiting audio: `poll` must run within max_buffer_ms from now
    POLL = 3  # the core has work now (a chunk is full, a stream to open, events): poll it


@dataclass(frozen=True, slots=True)
class OpenStream:
    conn_id: int
    reconnect: bool
    fallback: bool = False  # open it on the fallback provider: the call has moved there


@dataclass(frozen=True, slots=True)
class SendAudio:
    conn_id: int
    data: bytes
    waited_s: float  # how long the oldest byte of `data` sat in the worker


@dataclass(frozen=True, slots=True)
class SendKeepAlive:
    conn_id: int


@dataclass(frozen=True, slots=True)
class EndStream:
    """Flush and close: Deepgram's Finalize then CloseStream."""

    conn_id: int


@dataclass(frozen=True, slots=True)
class FlushStream:
    """Finalize without closing (Deepgram's Finalize): the provider returns the pending
    utterance's final now, marked `from_finalize`, and the stream goes on."""

    conn_id: int


@dataclass(frozen=True, slots=True)
class AbortStream:
    conn_id: int


@dataclass(frozen=True, slots=True)
class Emit:
    event: CallEvent


Action = OpenStream | SendAudio | SendKeepAlive | EndStream | FlushStream | AbortStream | Emit
