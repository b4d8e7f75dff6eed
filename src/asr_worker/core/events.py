"""Every event the worker emits, as a typed value: the session core makes them, the runner,
the hub, the bus, SSE and the tools read their fields, and only the edges turn them into JSON
(`jsonwire.dumps_event`), the way h11 keeps typed events inside and bytes at the edge.

Each class carries exactly the fields its JSON carries, in the order the JSON lists them
(`wire`), and `type`, its name on the wire (the JSON's `type`, the SSE `event:` line). A
call's numbered events begin with `interaction_id`, `tenant_id`, `seq` and end with
`timestamp_ms` (wall-clock milliseconds), the event's own fields in between. Values are
already what goes out (times rounded to milliseconds, confidences to 4 places), so writing an
event is only a copy. A field that is `None` and marked "omitted" is left out of the JSON
rather than written as null, as the documented shapes have it.

This module is compiled with the core (setup.py): a transcript is made and written about
1,250 times a second at 500 calls. Every class is immutable: `frozen=True`, or, for the two
made per transcript (`Transcript` and its `TranscriptWord`s), `Final` fields set by their
own `__init__`. The dataclasses module writes a frozen class's `__init__` in Python, storing
each field through `object.__setattr__`, and compiled code calls it like any Python function:
about 2 us an object, 14 us for a transcript of six words, half again the cost of making and
writing one. The `Final` fields are compiled to plain stores (0.06 us an object), refuse
assignment when compiled (AttributeError) and fail mypy anywhere.

`wire` builds the dict orjson writes; orjson's own support for dataclasses is not used: it
cannot leave out a field, and on these classes once compiled (mypyc keeps a float field
unboxed) it crashes the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .provider_events import Entity, SearchResult


@dataclass(slots=True, init=False)
class TranscriptWord:
    """One word of a transcript, in call seconds. Made six-odd times per transcript, so it is
    read-only through `Final` fields and its own `__init__` rather than `frozen=True` (see the
    module's docstring)."""

    word: Final[str]
    start: Final[float]
    end: Final[float]
    confidence: Final[float]
    punctuated_word: Final[str | None]  # omitted when None
    speaker: Final[int | None]  # omitted when None

    def __init__(
        self,
        word: str,
        start: float,
        end: float,
        confidence: float,
        punctuated_word: str | None = None,
        speaker: int | None = None,
    ) -> None:
        self.word = word
        self.start = start
        self.end = end
        self.confidence = confidence
        self.punctuated_word = punctuated_word
        self.speaker = speaker

    def wire(self) -> dict[str, object]:
        out: dict[str, object] = {
            "word": self.word,
            "start": self.start,
            "end": self.end,
            "confidence": self.confidence,
        }
        if self.punctuated_word is not None:
            out["punctuated_word"] = self.punctuated_word
        if self.speaker is not None:
            out["speaker"] = self.speaker
        return out


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """The call's first event; a call another worker takes over (Redis bus) gets a second one,
    `resumed`, with `offset_s`, the call time it continues from."""

    interaction_id: str
    tenant_id: str | None
    seq: int
    provider: str
    encoding: str
    sample_rate: int
    channels: int
    timestamp_ms: int
    resumed: bool = False  # omitted when False
    offset_s: float | None = None  # omitted when None

    @property
    def type(self) -> str:
        return "session_started"

    def wire(self) -> dict[str, object]:
        out: dict[str, object] = {
            "type": "session_started",
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "provider": self.provider,
            "encoding": self.encoding,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
        }
        if self.resumed:
            out["resumed"] = True
        if self.offset_s is not None:
            out["offset_s"] = self.offset_s
        out["timestamp_ms"] = self.timestamp_ms
        return out


@dataclass(slots=True, init=False)
class Transcript:
    """An interim (`is_final` false) or final result for one channel, in call seconds.
    `latency_ms` runs from the arrival of the audio the result ends at to its emission;
    `language` is the one the provider transcribed in, where it says (omitted when None);
    `languages`, `search` and `entities` are what the provider reported of them, where it did
    (Deepgram's `languages`, `search` hits in call seconds, `detect_entities`; omitted when
    empty). The
    hot one (about 1,250 a second at 500 calls): read-only through `Final` fields and its own
    `__init__` rather than `frozen=True` (see the module's docstring)."""

    interaction_id: Final[str]
    tenant_id: Final[str | None]
    seq: Final[int]
    channel: Final[int]
    is_final: Final[bool]
    speech_final: Final[bool]
    from_finalize: Final[bool]
    text: Final[str]
    confidence: Final[float]
    start: Final[float]
    end: Final[float]
    words: Final[tuple[TranscriptWord, ...]]
    provider: Final[str]
    latency_ms: Final[int]
    timestamp_ms: Final[int]
    language: Final[str | None]  # omitted when None
    languages: Final[tuple[str, ...]]  # omitted when empty
    search: Final[tuple[SearchResult, ...]]  # omitted when empty
    entities: Final[tuple[Entity, ...]]  # omitted when empty

    def __init__(
        self,
        interaction_id: str,
        tenant_id: str | None,
        seq: int,
        channel: int,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
        text: str,
        confidence: float,
        start: float,
        end: float,
        words: tuple[TranscriptWord, ...],
        provider: str,
        latency_ms: int,
        timestamp_ms: int,
        language: str | None = None,
        languages: tuple[str, ...] = (),
        search: tuple[SearchResult, ...] = (),
        entities: tuple[Entity, ...] = (),
    ) -> None:
        self.interaction_id = interaction_id
        self.tenant_id = tenant_id
        self.seq = seq
        self.channel = channel
        self.is_final = is_final
        self.speech_final = speech_final
        self.from_finalize = from_finalize
        self.text = text
        self.confidence = confidence
        self.start = start
        self.end = end
        self.words = words
        self.provider = provider
        self.latency_ms = latency_ms
        self.timestamp_ms = timestamp_ms
        self.language = language
        self.languages = languages
        self.search = search
        self.entities = entities

    @property
    def type(self) -> str:
        return "transcript"

    def wire(self) -> dict[str, object]:
        out: dict[str, object] = {
            "type": "transcript",
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "channel": self.channel,
            "is_final": self.is_final,
            "speech_final": self.speech_final,
            "from_finalize": self.from_finalize,
            "text": self.text,
            "confidence": self.confidence,
            "start": self.start,
            "end": self.end,
            "words": [w.wire() for w in self.words],
        }
        if self.language is not None:
            out["language"] = self.language
        if self.languages:
            out["languages"] = list(self.languages)
        if self.search:
            out["search"] = [found.wire() for found in self.search]
        if self.entities:
            out["entities"] = [entity.wire() for entity in self.entities]
        out["provider"] = self.provider
        out["latency_ms"] = self.latency_ms
        out["timestamp_ms"] = self.timestamp_ms
        return out


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    """The provider heard a gap after speech on `channel`; its last word ended at `last_word_end`."""

    interaction_id: str
    tenant_id: str | None
    seq: int
    channel: int
    last_word_end: float
    provider: str
    timestamp_ms: int

    @property
    def type(self) -> str:
        return "utterance_end"

    def wire(self) -> dict[str, object]:
        return {
            "type": "utterance_end",
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "channel": self.channel,
            "last_word_end": self.last_word_end,
            "provider": self.provider,
            "timestamp_ms": self.timestamp_ms,
        }


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The provider heard speech begin on `channel` at call time `timestamp` (seconds, unlike
    the event's own wall-clock `timestamp_ms`)."""

    interaction_id: str
    tenant_id: str | None
    seq: int
    channel: int
    timestamp: float
    provider: str
    timestamp_ms: int

    @property
    def type(self) -> str:
        return "speech_started"

    def wire(self) -> dict[str, object]:
        return {
            "type": "speech_started",
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "channel": self.channel,
            "timestamp": self.timestamp,
            "provider": self.provider,
            "timestamp_ms": self.timestamp_ms,
        }


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A key pressed on a phone (telephony), at `at`, the call time its audio had reached."""

    interaction_id: str
    tenant_id: str | None
    seq: int
    digit: str
    channel: int
    at: float
    timestamp_ms: int

    @property
    def type(self) -> str:
        return "dtmf"

    def wire(self) -> dict[str, object]:
        return {
            "type": "dtmf",
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "digit": self.digit,
            "channel": self.channel,
            "at": self.at,
            "timestamp_ms": self.timestamp_ms,
        }


@dataclass(frozen=True, slots=True)
class Paused:
    """The call's audio stopped reaching the provider at call time `at` (a PCI pause: an
    operator, the source, or Genesys asked): nothing said until `resumed` is transcribed."""

    interaction_id: str
    tenant_id: str | None
    seq: int
    at: float
    timestamp_ms: int

    @property
    def type(self) -> str:
        return "paused"

    def wire(self) -> dict[str, object]:
        return {
            "type": "paused",
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "at": self.at,
            "timestamp_ms": self.timestamp_ms,
        }


@dataclass(frozen=True, slots=True)
class Resumed:
    """The call's audio reaches the provider again from call time `at`, the end of the gap
    a `paused` began."""

    interaction_id: str
    tenant_id: str | None
    seq: int
    at: float
    timestamp_ms: int

    @property
    def type(self) -> str:
        return "resumed"

    def wire(self) -> dict[str, object]:
        return {
            "type": "resumed",
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "at": self.at,
            "timestamp_ms": self.timestamp_ms,
        }


@dataclass(frozen=True, slots=True)
class CallError:
    """Something went wrong in a call (`code` is short and stable, `message` is for people);
    the call goes on unless a `session_ended` follows."""

    interaction_id: str
    tenant_id: str | None
    seq: int
    code: str
    message: str
    timestamp_ms: int

    @property
    def type(self) -> str:
        return "error"

    def wire(self) -> dict[str, object]:
        return {
            "type": "error",
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "code": self.code,
            "message": self.message,
            "timestamp_ms": self.timestamp_ms,
        }


@dataclass(frozen=True, slots=True)
class ProviderChanged:
    """The call moved from provider `from_` to provider `to` (failover) for `reason`; the new
    provider transcribes from call time `at` (seconds), where the last final before the move
    ended, so no word is lost or repeated."""

    interaction_id: str
    tenant_id: str | None
    seq: int
    from_: str
    to: str
    reason: str
    at: float
    timestamp_ms: int

    @property
    def type(self) -> str:
        return "provider_changed"

    def wire(self) -> dict[str, object]:
        return {
            "type": "provider_changed",
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "from": self.from_,
            "to": self.to,
            "reason": self.reason,
            "at": self.at,
            "timestamp_ms": self.timestamp_ms,
        }


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The call's last event: why it ended, how much audio it had, how often its provider
    stream was replaced, how many finals it got, and the provider that carried it at the end
    (the fallback, after a `provider_changed`)."""

    interaction_id: str
    tenant_id: str | None
    seq: int
    reason: str
    audio_s: float
    reconnects: int
    finals: int
    provider: str
    timestamp_ms: int

    @property
    def type(self) -> str:
        return "session_ended"

    def wire(self) -> dict[str, object]:
        return {
            "type": "session_ended",
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "reason": self.reason,
            "audio_s": self.audio_s,
            "reconnects": self.reconnects,
            "finals": self.finals,
            "provider": self.provider,
            "timestamp_ms": self.timestamp_ms,
        }


@dataclass(frozen=True, slots=True)
class EventsDropped:
    """In place of the `count` events a watcher too slow to keep up lost (the event hub's
    bounded queues); `interaction_id` is None on a stream of every call's events."""

    interaction_id: str | None
    count: int

    @property
    def type(self) -> str:
        return "events_dropped"

    def wire(self) -> dict[str, object]:
        return {"type": "events_dropped", "interaction_id": self.interaction_id, "count": self.count}


@dataclass(frozen=True, slots=True)
class Refusal:
    """An `error` outside any call's numbered events: a socket or a call announcement refused
    before (or without) a session, so it has no seq, tenant or time."""

    code: str
    message: str
    interaction_id: str | None = None  # omitted when None

    @property
    def type(self) -> str:
        return "error"

    def wire(self) -> dict[str, object]:
        out: dict[str, object] = {"type": "error"}
        if self.interaction_id is not None:
            out["interaction_id"] = self.interaction_id
        out["code"] = self.code
        out["message"] = self.message
        return out


# A call's numbered events: what the session core emits, the hub keeps and the bus publishes.
CallEvent = (
    SessionStarted
    | Transcript
    | UtteranceEnd
    | SpeechStarted
    | Dtmf
    | Paused
    | Resumed
    | CallError
    | ProviderChanged
    | SessionEnded
)

# Everything the worker sends a watcher.
Event = CallEvent | EventsDropped | Refusal
