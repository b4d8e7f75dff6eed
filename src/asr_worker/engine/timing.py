"""Word times for a decoder that gives none (Moonshine), from where the VAD heard voice.

The words of an utterance were said, in order, while there was voice: so they are laid along
the utterance's voiced spans (runs of VAD windows at or above the end-of-speech threshold,
`voiced_spans`), each taking a share of the voiced time in proportion to its length in
letters (a digit counts as a short word: "10" is said "ten"), and none straddling a pause: a
word that would is moved wholly into the span that holds most of it. Pauses inside an
utterance thus get no words, and the first word starts where the voice starts rather than at
the lead-in.

Honest, not exact: the times are as good as the VAD's 32 ms windows and the assumption that
letters take equal time. A word's start and end are within a few hundred milliseconds of
where a forced aligner puts them on ordinary speech, which is what captions, "who spoke when"
and the replay boundary need; it is not a phonetic alignment (docs/local-engine.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from .decoding import Decoded, DecodedWord

_DIGIT_LETTERS: Final = 3  # a digit is said as a word of about three letters
_WORD_GAP_LETTERS: Final = 1  # the boundary between two words takes about a letter's time

Span = tuple[float, float]  # (start, end) seconds from the start of the decoded audio


def voiced_spans(
    probabilities: Sequence[float], first_window_s: float, window_s: float, threshold: float
) -> list[Span]:
    """Runs of windows at or above `threshold`, as seconds; window i spans
    [first_window_s + i * window_s, + window_s)."""
    spans: list[Span] = []
    start: float | None = None
    for i, p in enumerate(probabilities):
        at = first_window_s + i * window_s
        if p >= threshold and start is None:
            start = at
        elif p < threshold and start is not None:
            spans.append((start, at))
            start = None
    if start is not None:
        spans.append((start, first_window_s + len(probabilities) * window_s))
    return spans


def _weight(text: str) -> float:
    letters = sum(ch.isalpha() for ch in text) + _DIGIT_LETTERS * sum(ch.isdigit() for ch in text)
    return max(1, letters) + _WORD_GAP_LETTERS


def spread(decoded: Decoded, spans: Sequence[Span]) -> Decoded:
    """`decoded` with its words timed along `spans` (its own if it has times, or no words;
    the whole audio when the VAD heard no voice in it, as for a held blip at Finalize)."""
    if decoded.timed or not decoded.words:
        return decoded
    usable = [(max(0.0, a), min(decoded.audio_s, b)) for a, b in spans]
    usable = [(a, b) for a, b in usable if b > a] or [(0.0, decoded.audio_s)]
    voiced = sum(b - a for a, b in usable)
    weights = [_weight(w.text) for w in decoded.words]
    total = sum(weights)
    words: list[DecodedWord] = []
    done = 0.0
    for word, weight in zip(decoded.words, weights, strict=True):
        lo, hi = done / total * voiced, (done + weight) / total * voiced
        done += weight
        start, end = _place(lo, hi, usable)
        if words:  # a word moved into a span never starts before the one said before it ends
            start = max(start, words[-1].end)
            end = max(end, start)
        words.append(DecodedWord(word.text, round(start, 3), round(end, 3), word.probability))
    return replace(decoded, words=tuple(words), timed=True)


def _place(lo: float, hi: float, spans: Sequence[Span]) -> Span:
    """The voiced-time interval [lo, hi) on the clock, moved wholly into the one span that holds
    most of it (shortened only if the span is shorter than the word)."""
    chosen, best_overlap = 0, -1.0
    offset, offsets = 0.0, []
    for i, (a, b) in enumerate(spans):
        offsets.append(offset)
        overlap = min(hi, offset + b - a) - max(lo, offset)
        if overlap > best_overlap:
            chosen, best_overlap = i, overlap
        offset += b - a
    a, b = spans[chosen]
    length = hi - lo
    start = max(a, min(a + lo - offsets[chosen], b - length))
    return start, min(b, start + length)
