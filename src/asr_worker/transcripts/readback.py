"""A call's document events read back from the JSON they were written as (`jsonwire.dumps_event`,
what Redis keeps on the bus path), as the typed events `document.build` takes.

Only what a document holds is read back (`document.in_document`); anything else, and anything
that is not an event of that shape (Redis is shared: what is there was written by a worker of
this or another version, or by hand), is skipped, never an error.
"""

from __future__ import annotations

from typing import Final

from .. import jsonwire
from ..core.events import (
    CallError,
    CallEvent,
    ProviderChanged,
    SessionEnded,
    SessionStarted,
    Transcript,
    TranscriptWord,
)

_NUMBER: Final = (int, float)


class _Skip(Exception):
    """Not an event this reads back."""


def read_event(raw: bytes | str) -> CallEvent | None:
    """One event from its JSON, or None."""
    try:
        data = jsonwire.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        return _event(data)
    except _Skip:
        return None


def read_events(raws: list[bytes]) -> list[CallEvent]:
    return [event for event in map(read_event, raws) if event is not None]


def _event(d: dict[str, object]) -> CallEvent | None:
    kind = d.get("type")
    head = (_text(d, "interaction_id"), _optional_text(d, "tenant_id"), _int(d, "seq"))
    if kind == "transcript":
        words = d.get("words")
        if not isinstance(words, list):
            raise _Skip
        return Transcript(
            *head,
            _int(d, "channel"),
            _bool(d, "is_final"),
            _bool(d, "speech_final"),
            _bool(d, "from_finalize"),
            _text(d, "text"),
            _float(d, "confidence"),
            _float(d, "start"),
            _float(d, "end"),
            tuple(_word(w) for w in words),
            _text(d, "provider"),
            _int(d, "latency_ms"),
            _int(d, "timestamp_ms"),
            _optional_text(d, "language"),
        )
    if kind == "session_started":
        offset = d.get("offset_s")
        return SessionStarted(
            *head,
            _text(d, "provider"),
            _text(d, "encoding"),
            _int(d, "sample_rate"),
            _int(d, "channels"),
            _int(d, "timestamp_ms"),
            d.get("resumed") is True,
            float(offset) if isinstance(offset, _NUMBER) and not isinstance(offset, bool) else None,
        )
    if kind == "session_ended":
        return SessionEnded(
            *head,
            _text(d, "reason"),
            _float(d, "audio_s"),
            _int(d, "reconnects"),
            _int(d, "finals"),
            _text(d, "provider"),
            _int(d, "timestamp_ms"),
        )
    if kind == "provider_changed":
        return ProviderChanged(
            *head,
            _text(d, "from"),
            _text(d, "to"),
            _text(d, "reason"),
            _float(d, "at"),
            _int(d, "timestamp_ms"),
        )
    if kind == "error":
        return CallError(*head, _text(d, "code"), _text(d, "message"), _int(d, "timestamp_ms"))
    return None


def _word(w: object) -> TranscriptWord:
    if not isinstance(w, dict):
        raise _Skip
    speaker = w.get("speaker")
    return TranscriptWord(
        _text(w, "word"),
        _float(w, "start"),
        _float(w, "end"),
        _float(w, "confidence"),
        _optional_text(w, "punctuated_word"),
        speaker if isinstance(speaker, int) and not isinstance(speaker, bool) else None,
    )


def _text(d: dict[str, object], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise _Skip
    return value


def _optional_text(d: dict[str, object], key: str) -> str | None:
    value = d.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _Skip


def _int(d: dict[str, object], key: str) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Skip
    return value


def _float(d: dict[str, object], key: str) -> float:
    value = d.get(key)
    if not isinstance(value, _NUMBER) or isinstance(value, bool):
        raise _Skip
    return float(value)


def _bool(d: dict[str, object], key: str) -> bool:
    value = d.get(key)
    if not isinstance(value, bool):
        raise _Skip
    return value
