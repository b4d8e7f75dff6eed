"""From a provider's result to what the call's transcript says: in call time, without repeats,
redacted.

A stream reports times from its own start, and the core knows where that start is in the
call. A stream that began by replaying audio hears again what an earlier one finalized
(`dedup.py`): those words are left out, and the result starts where the channel's finals
ended. With `redact`, a transcript's text and words pass the call's `Redactor` before anyone
sees them. This is that step, for every result of every stream, whichever provider heard it;
the session core decides what the result means for the call (coverage, the end) and emits it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .call_time import word_event
from .dedup import WordDedup, text_of
from .events import TranscriptWord
from .provider_events import TranscriptResult, Word
from .redact import Redactor


@dataclass(frozen=True, slots=True)
class Heard:
    """What a result says that the call has not heard yet: its call-time span, and its words
    (times still the stream's) and text without the repeats."""

    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...]


class ResultReader:
    """One call's reading of its providers' results: its word dedup and its redactor."""

    __slots__ = ("dedup", "redactor", "words_deduplicated")

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.dedup = WordDedup()
        self.redactor = redactor
        self.words_deduplicated = 0

    @property
    def spans_redacted(self) -> int:
        return 0 if self.redactor is None else self.redactor.spans_redacted

    def heard(self, result: TranscriptResult, base_s: float) -> Heard:
        """`result` of a stream whose time 0 is call time `base_s`, without the words its
        channel already finalized."""
        channel = result.channel
        start_s, end_s = base_s + result.start, base_s + result.end
        words, text = result.words, result.text
        dedup = self.dedup
        if dedup.repeats(channel, start_s):
            kept = dedup.new_words(channel, words, base_s)
            if len(kept) != len(words):
                self.words_deduplicated += len(words) - len(kept)
                words, text = kept, text_of(kept)
            start_s = max(start_s, dedup.finalized_s(channel))
        return Heard(start_s, end_s, text, words)

    def shown(
        self, result: TranscriptResult, heard: Heard, base_s: float
    ) -> tuple[str, tuple[TranscriptWord, ...]]:
        """The text and words (call seconds) a transcript of `heard` shows: redacted, if the
        call redacts."""
        words = tuple([word_event(w, base_s) for w in heard.words])
        redactor = self.redactor
        if redactor is None:
            return heard.text, words
        return redactor.event_words(
            result.channel, result.is_final, heard.text, words, heard.start_s, heard.end_s
        )
