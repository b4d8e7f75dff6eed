"""Deepgram's `search`: where in a result each searched term was heard.

Deepgram matches a term against the audio's sounds and reports every stretch that may be it,
with a confidence; here the match is against the words the engine wrote, so a term the engine
misspelled is still found ("Zorblax" heard as "zorblacks"): each stretch of as many words as
the term has (one fewer or one more, for a term heard split or joined) is compared with the
term, letters only and without case, and a stretch similar enough is a hit. Its confidence is
that similarity times the words' own confidence; its times are its words'; its snippet is the
words as heard. Hits do not overlap, and the best come first.

Pure: words in, hits out. It runs on results the way a client receives them, after every
other formatting and after redaction, so a snippet never quotes what was redacted.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Final

from .provider_events import SearchHit, SearchResult, TranscriptResult

MIN_SIMILARITY: Final = 0.7  # of a stretch's letters to the term's (difflib's ratio)
MAX_HITS: Final = 10  # per term and result


def searched(result: TranscriptResult, terms: tuple[str, ...]) -> TranscriptResult:
    """`result` with its `search`: one entry per term, in the order asked, hits or none."""
    if not terms:
        return result
    if result.words:
        spoken = [_letters(w.word) for w in result.words]
        starts = [w.start for w in result.words]
        ends = [w.end for w in result.words]
        sure = [w.confidence for w in result.words]
    else:  # a provider that gives no words: the text's, all at the result's times
        spoken = [_letters(token) for token in result.text.split()]
        starts = [result.start] * len(spoken)
        ends = [result.end] * len(spoken)
        sure = [result.confidence] * len(spoken)
    found = tuple(SearchResult(term, _hits(term, spoken, starts, ends, sure)) for term in terms)
    return TranscriptResult(
        channel=result.channel,
        is_final=result.is_final,
        speech_final=result.speech_final,
        text=result.text,
        confidence=result.confidence,
        start=result.start,
        duration=result.duration,
        words=result.words,
        from_finalize=result.from_finalize,
        channels=result.channels,
        language=result.language,
        languages=result.languages,
        search=found,
        entities=result.entities,
    )


def _hits(
    term: str, spoken: list[str], starts: list[float], ends: list[float], sure: list[float]
) -> tuple[SearchHit, ...]:
    wanted = " ".join(part for part in (_letters(t) for t in term.split()) if part)
    if not wanted or not spoken:
        return ()
    size = len(wanted.split())
    candidates: list[tuple[float, int, int]] = []  # (confidence, first word, last word)
    matcher = SequenceMatcher(autojunk=False)
    matcher.set_seq2(wanted)
    for length in {max(1, size - 1), size, size + 1}:
        for first in range(len(spoken) - length + 1):
            stretch = " ".join(w for w in spoken[first : first + length] if w)
            if not stretch:
                continue
            matcher.set_seq1(stretch)
            if matcher.real_quick_ratio() < MIN_SIMILARITY or matcher.quick_ratio() < MIN_SIMILARITY:
                continue
            similarity = matcher.ratio()
            if similarity >= MIN_SIMILARITY:
                last = first + length - 1
                heard = sum(sure[first : last + 1]) / length
                candidates.append((similarity * heard, first, last))
    candidates.sort(key=lambda c: (-c[0], c[1]))
    taken: list[tuple[float, int, int]] = []
    for candidate in candidates:
        if all(candidate[2] < t[1] or candidate[1] > t[2] for t in taken):
            taken.append(candidate)
            if len(taken) == MAX_HITS:
                break
    return tuple(
        SearchHit(
            round(confidence, 4),
            starts[first],
            ends[last],
            " ".join(w for w in spoken[first : last + 1] if w),
        )
        for confidence, first, last in taken
    )


def _letters(word: str) -> str:
    """A word as compared: lower case, letters, digits and apostrophes only."""
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "'")
