"""What a provider stream reports, in the provider's own time (seconds from the first byte of
audio sent on that stream). The session core turns these into the call's events, in call time.

These types live in the core because the core consumes them; providers import them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float
    confidence: float
    punctuated_word: str | None = None
    speaker: int | None = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    """Where a searched term was heard (Deepgram's `search` hit): its times (the stream's, or
    the call's in an event), how sure, and the words heard there."""

    confidence: float
    start: float
    end: float
    snippet: str

    def wire(self) -> dict[str, object]:
        return {"confidence": self.confidence, "start": self.start, "end": self.end, "snippet": self.snippet}


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One `search` term and its hits in one result, the best first (none: not heard there)."""

    query: str
    hits: tuple[SearchHit, ...] = ()

    def wire(self) -> dict[str, object]:
        return {"query": self.query, "hits": [hit.wire() for hit in self.hits]}


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity a provider found in a final (Deepgram's `detect_entities`): its label (NAME,
    CARDINAL...), its text, and the words it spans, `start_word` to `end_word` (exclusive)."""

    label: str
    value: str
    raw_value: str
    confidence: float
    start_word: int
    end_word: int

    def wire(self) -> dict[str, object]:
        return {
            "label": self.label,
            "value": self.value,
            "raw_value": self.raw_value,
            "confidence": self.confidence,
            "start_word": self.start_word,
            "end_word": self.end_word,
        }


@dataclass(frozen=True, slots=True)
class TranscriptResult:
    """One Deepgram-style `Results` message.

    A final (`is_final`) covers the stream's audio from `start` to `start + duration`; finals of
    one channel tile the stream's timeline, empty ones included, which is what lets the core
    know how much audio is safely transcribed and need not be replayed after a reconnect.
    `language` is the language the provider transcribed it in, where it says (or was asked for
    one); None where nothing is known. `languages`: every language it heard in it, the most
    spoken first, where it says (Deepgram's `languages`, with `language=multi`); `search`: the
    hits of the terms the stream searches for; `entities`: what the provider found in it.
    """

    channel: int
    is_final: bool
    speech_final: bool
    text: str
    confidence: float
    start: float
    duration: float
    words: tuple[Word, ...] = ()
    from_finalize: bool = False
    channels: int = 1
    language: str | None = None
    languages: tuple[str, ...] = ()
    search: tuple[SearchResult, ...] = ()
    entities: tuple[Entity, ...] = ()

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    channel: int
    last_word_end: float


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    channel: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class StreamMetadata:
    """The provider's summary at the end of a stream (Deepgram's `Metadata`)."""

    request_id: str = ""
    duration: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


ProviderEvent = TranscriptResult | UtteranceEnd | SpeechStarted | StreamMetadata
