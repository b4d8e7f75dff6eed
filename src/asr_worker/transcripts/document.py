"""The transcript document: what was said in one call, built from its events.

`build` is pure: a call's events in (typed, `core/events.py`, in the order they were
published), the document out. Whoever keeps the events (this worker's memory, Redis on the bus
path) hands them here, so every worker builds the same document from the same events, and a
call a second worker took over reads as one call. What goes in:

* the call's metadata: tenant, id, audio format, when it started and ended (and why), the
  providers that transcribed it, each channel and its role (a two-channel call's channel 0 is
  the customer, 1 the agent, as every route numbers them; a one-channel call's is `mixed`);
* every final utterance with text (interims are drafts of them), with its times in call
  seconds, words, confidence, language and provider, in call-time order;
* the points where the call moved provider (`provider_changed`), where another worker took it
  over (`resumes`), and its errors;
* `redactions`: what redaction changed in the text, filled from the events redaction emits.

A `session_started` that is not a resume begins the call anew (an interaction id used again
by a later call), and an event whose seq was already seen is a copy (events read back from
two places) and counts once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from ..core.events import (
    CallError,
    CallEvent,
    ProviderChanged,
    SessionEnded,
    SessionStarted,
    Transcript,
    TranscriptWord,
)

DOCUMENT_VERSION: Final = 1
ROLES_TWO_CHANNELS: Final = ("customer", "agent")
ROLE_ONE_CHANNEL: Final = "mixed"
ACTIVE: Final = "active"
ENDED: Final = "ended"


def in_document(event: CallEvent) -> bool:
    """Whether an event is part of a call's document (what a store keeps of the call)."""
    if isinstance(event, Transcript):
        return event.is_final and bool(event.text)
    return isinstance(event, SessionStarted | SessionEnded | ProviderChanged | CallError)


def roles(channels: int) -> tuple[str, ...]:
    return ROLES_TWO_CHANNELS if channels == 2 else (ROLE_ONE_CHANNEL,) * max(1, channels)


@dataclass(frozen=True, slots=True)
class Utterance:
    seq: int
    channel: int
    role: str
    start: float
    end: float
    text: str
    confidence: float
    words: tuple[TranscriptWord, ...]
    language: str | None
    provider: str
    speech_final: bool
    from_finalize: bool

    def wire(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "channel": self.channel,
            "role": self.role,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "confidence": self.confidence,
            "language": self.language,
            "provider": self.provider,
            "speech_final": self.speech_final,
            "from_finalize": self.from_finalize,
            "words": [w.wire() for w in self.words],
        }


@dataclass(frozen=True, slots=True)
class Document:
    interaction_id: str
    tenant_id: str | None
    status: str  # ACTIVE or ENDED
    encoding: str | None  # None: the call's start is not among the events (kept only in part)
    sample_rate: int | None
    channels: int
    started_ms: int | None
    ended_ms: int | None
    end_reason: str | None
    audio_s: float | None
    providers: tuple[str, ...]
    utterances: tuple[Utterance, ...]
    provider_changes: tuple[dict[str, object], ...]
    resumes: tuple[dict[str, object], ...]
    errors: tuple[dict[str, object], ...]
    redactions: tuple[dict[str, object], ...]
    last_seq: int

    @property
    def roles(self) -> tuple[str, ...]:
        return roles(self.channels)

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages its utterances were transcribed in, in order of first use."""
        return tuple(dict.fromkeys(u.language for u in self.utterances if u.language is not None))

    def wire(self) -> dict[str, object]:
        """The document as JSON (what `GET .../transcript` and a webhook carry)."""
        return {
            "type": "transcript",
            "version": DOCUMENT_VERSION,
            "interaction_id": self.interaction_id,
            "tenant_id": self.tenant_id,
            "status": self.status,
            "format": None
            if self.encoding is None
            else {"encoding": self.encoding, "sample_rate": self.sample_rate, "channels": self.channels},
            "started_at": iso_time(self.started_ms),
            "ended_at": iso_time(self.ended_ms),
            "end_reason": self.end_reason,
            "audio_s": self.audio_s,
            "providers": list(self.providers),
            "languages": list(self.languages),
            "channels": [{"channel": c, "role": role} for c, role in enumerate(self.roles)],
            "utterances": [u.wire() for u in self.utterances],
            "provider_changes": list(self.provider_changes),
            "resumes": list(self.resumes),
            "errors": list(self.errors),
            "redactions": list(self.redactions),
            "last_seq": self.last_seq,
        }

    def key(self, target: str, kind: str) -> str:
        """The idempotency key of this call's document sent to `target`: the same on every try
        and from every worker (it names the call by its tenant, id and first start, so a later
        call that reuses the id gets another)."""
        name = f"{kind}|{self.tenant_id}|{self.interaction_id}|{self.started_ms}|{target}"
        return "doc_" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def iso_time(ms: int | None) -> str | None:
    """Wall-clock milliseconds as an ISO 8601 UTC time (`2026-01-02T03:04:05.678Z`)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class _Builder:
    interaction_id: str
    tenant_id: str | None
    status: str = ACTIVE
    encoding: str | None = None
    sample_rate: int | None = None
    channels: int = 1
    started_ms: int | None = None
    ended_ms: int | None = None
    end_reason: str | None = None
    audio_s: float | None = None
    providers: dict[str, None] = field(default_factory=dict)
    utterances: list[Utterance] = field(default_factory=list)
    provider_changes: list[dict[str, object]] = field(default_factory=list)
    resumes: list[dict[str, object]] = field(default_factory=list)
    errors: list[dict[str, object]] = field(default_factory=list)
    redactions: list[dict[str, object]] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    last_seq: int = 0

    def take(self, event: CallEvent) -> None:
        if isinstance(event, SessionStarted):
            self._started(event)
            return
        if event.seq in self.seen:
            return  # a copy: read back from two places
        self.seen.add(event.seq)
        self.last_seq = max(self.last_seq, event.seq)
        if isinstance(event, Transcript):
            if event.is_final and event.text:
                self._utterance(event)
        elif isinstance(event, ProviderChanged):
            self.providers[event.to] = None
            self.provider_changes.append(
                {
                    "seq": event.seq,
                    "from": event.from_,
                    "to": event.to,
                    "reason": event.reason,
                    "at": event.at,
                }
            )
        elif isinstance(event, CallError):
            self.errors.append(
                {
                    "seq": event.seq,
                    "code": event.code,
                    "message": event.message,
                    "at": iso_time(event.timestamp_ms),
                }
            )
        elif isinstance(event, SessionEnded):
            self.status = ENDED
            self.ended_ms = event.timestamp_ms
            self.end_reason = event.reason
            self.audio_s = event.audio_s
            self.providers[event.provider] = None

    def _started(self, event: SessionStarted) -> None:
        if not event.resumed:
            # The call begins: anything before it was an earlier call with the same id.
            fresh = _Builder(event.interaction_id, event.tenant_id)
            for name in _Builder.__slots__:
                setattr(self, name, getattr(fresh, name))
            self.started_ms = event.timestamp_ms
        elif event.seq in self.seen:
            return
        else:
            self.resumes.append(
                {
                    "seq": event.seq,
                    "offset_s": event.offset_s,
                    "provider": event.provider,
                    "at": iso_time(event.timestamp_ms),
                }
            )
        self.seen.add(event.seq)
        self.last_seq = max(self.last_seq, event.seq)
        self.status = ACTIVE
        self.ended_ms = self.end_reason = self.audio_s = None
        self.encoding, self.sample_rate, self.channels = event.encoding, event.sample_rate, event.channels
        self.providers[event.provider] = None

    def _utterance(self, event: Transcript) -> None:
        channel_roles = roles(self.channels)
        role = channel_roles[event.channel] if 0 <= event.channel < len(channel_roles) else "unknown"
        self.providers[event.provider] = None
        self.utterances.append(
            Utterance(
                event.seq,
                event.channel,
                role,
                event.start,
                event.end,
                event.text,
                event.confidence,
                event.words,
                event.language,
                event.provider,
                event.speech_final,
                event.from_finalize,
            )
        )

    def document(self) -> Document:
        return Document(
            self.interaction_id,
            self.tenant_id,
            self.status,
            self.encoding,
            self.sample_rate,
            self.channels,
            self.started_ms,
            self.ended_ms,
            self.end_reason,
            self.audio_s,
            tuple(self.providers),
            tuple(sorted(self.utterances, key=call_order)),
            tuple(self.provider_changes),
            tuple(self.resumes),
            tuple(self.errors),
            tuple(self.redactions),
            self.last_seq,
        )


def call_order(utterance: Utterance) -> tuple[float, int, int]:
    """Utterances by call time: by start, then channel, then the order they were emitted."""
    return (utterance.start, utterance.channel, utterance.seq)


def build(events: Iterable[CallEvent]) -> Document | None:
    """The document of the call these events are of (in publication order); None for none."""
    builder: _Builder | None = None
    for event in events:
        if builder is None:
            builder = _Builder(event.interaction_id, event.tenant_id)
        builder.take(event)
    return None if builder is None else builder.document()
