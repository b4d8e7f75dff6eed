"""A provider result's parts in call time, as a `transcript` event carries them: its words, the
hits of the call's searched terms, the entities and languages the provider reported.

A provider's times are its stream's (seconds from that stream's first audio); the session adds
the stream's start in the call (`base_s`). What the session changed in the words (a replay's
repeated words dropped, a redacted span made one word) decides what else is kept: entities
name their words by index, so they go when the words changed; and a call that redacts never
gets a snippet or an entity's value that holds a number or a redaction keyword, since those
quote the words redaction may have taken out.
"""

from __future__ import annotations

from typing import Final

from . import spoken_numbers as sn
from .events import TranscriptWord
from .provider_events import Entity, SearchHit, SearchResult, TranscriptResult, Word

REDACTED: Final = "[REDACTED]"

Extras = tuple[tuple[str, ...], tuple[SearchResult, ...], tuple[Entity, ...]]


def word_event(w: Word, base_s: float) -> TranscriptWord:
    return TranscriptWord(
        w.word,
        round(base_s + w.start, 3),
        round(base_s + w.end, 3),
        round(w.confidence, 4),
        w.punctuated_word or None,  # an empty one is left out, as a missing one
        w.speaker,
    )


def extras(result: TranscriptResult, base_s: float, words_kept: bool, redacting: bool) -> Extras:
    """(languages, search, entities) of `result` for its event: `words_kept` when the event's
    words are the result's, one for one; `redacting` when the call redacts."""
    if not (result.search or result.entities):
        return result.languages, (), ()
    search = tuple(
        SearchResult(
            found.query,
            tuple(
                SearchHit(
                    hit.confidence,
                    round(base_s + hit.start, 3),
                    round(base_s + hit.end, 3),
                    _guarded(hit.snippet, redacting),
                )
                for hit in found.hits
            ),
        )
        for found in result.search
    )
    entities = (
        tuple(
            Entity(
                e.label,
                _guarded(e.value, redacting),
                _guarded(e.raw_value, redacting),
                e.confidence,
                e.start_word,
                e.end_word,
            )
            for e in result.entities
        )
        if words_kept
        else ()
    )
    return result.languages, search, entities


def _guarded(text: str, redacting: bool) -> str:
    return REDACTED if redacting and sn.may_hold(text) else text
