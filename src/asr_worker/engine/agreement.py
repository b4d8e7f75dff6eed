"""Interim results with a stable prefix: local agreement, as whisper_streaming does it.

The open utterance is re-decoded from its start every so often; each decode is a hypothesis.
Words on which two consecutive hypotheses agree (their common prefix) are *committed*: later
interims of the same utterance always begin with them, so a reader's screen does not flicker
back. The rest of the newest hypothesis follows, provisional. Words are compared without case
or punctuation, so "Hello," and "hello" agree.

The final of an utterance is decoded afresh and replaces all of this (as a Deepgram final
replaces its interims); `Agreement` is then reset for the next utterance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from .decoding import DecodedWord

_OVERLAP_S: Final = 0.05


def normalize(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "'")


@dataclass(slots=True)
class Agreement:
    committed: list[DecodedWord] = field(default_factory=list)
    previous: list[DecodedWord] = field(default_factory=list)

    def update(self, hypothesis: list[DecodedWord]) -> list[DecodedWord]:
        """Take a new hypothesis; return the interim to show: committed words, then the rest."""
        agreed = _common_prefix(self.previous, hypothesis)
        if agreed > len(self.committed) and _starts_with(hypothesis, self.committed):
            self.committed = list(hypothesis[:agreed])
        self.previous = list(hypothesis)
        return self.committed + self._tail(hypothesis)

    @property
    def stable_count(self) -> int:
        return len(self.committed)

    def reset(self) -> None:
        self.committed = []
        self.previous = []

    def _tail(self, hypothesis: list[DecodedWord]) -> list[DecodedWord]:
        n = len(self.committed)
        if _starts_with(hypothesis, self.committed):
            return list(hypothesis[n:])
        # The new decode disagrees inside the committed part: keep the committed words and
        # continue with what it heard after them, by time.
        last_end = self.committed[-1].end
        return [w for w in hypothesis if w.start >= last_end - _OVERLAP_S]


def _common_prefix(a: list[DecodedWord], b: list[DecodedWord]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if normalize(x.text) != normalize(y.text):
            break
        n += 1
    return n


def _starts_with(words: list[DecodedWord], prefix: list[DecodedWord]) -> bool:
    return len(words) >= len(prefix) and _common_prefix(words, prefix) == len(prefix)
