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
class TranscriptResult:
    """One Deepgram-style `Results` message.

    A final (`is_final`) covers the stream's audio from `start` to `start + duration`; finals of
    one channel tile the stream's timeline, empty ones included, which is what lets the core
    know how much audio is safely transcribed and need not be replayed after a reconnect.
    `language` is the language the provider transcribed it in, where it says (or was asked for
    one); None where nothing is known.
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
