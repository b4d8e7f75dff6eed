"""Word de-duplication: no word is published as final twice.

A provider stream that starts by replaying audio (after a drop, on the fallback provider, or
a call resumed on another worker) hears again what the last stream heard, including words it
already finalized. Per channel, this remembers how far (in call seconds) final results reached;
in a later result, the words that start before that are repeats and are left out, and the
result starts no earlier than that.

How far every channel is final is also how much audio no stream needs to replay any more:
the session core frees its replay buffer up to there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from .provider_events import Word

# Times are sums of floats (a stream's base and the provider's offset): equal within this.
_EPSILON_S: Final = 1e-6


@dataclass(slots=True)
class WordDedup:
    _finalized_s: dict[int, float] = field(default_factory=dict)  # per channel, call seconds

    def start_at(self, at_s: float, finalized_s: tuple[float, ...], channels: int) -> None:
        """A call resumed at call time `at_s`, whose channels had words published as final up
        to `finalized_s` (`Resume`): nothing before either is published again."""
        for channel in range(channels):
            done_s = finalized_s[channel] if channel < len(finalized_s) else 0.0
            self._finalized_s[channel] = max(at_s, done_s)

    def finalized_s(self, channel: int) -> float:
        """How far (call seconds) final results on `channel` reached."""
        return self._finalized_s.get(channel, 0.0)

    def repeats(self, channel: int, start_s: float) -> bool:
        """A result starting at call time `start_s` on `channel` begins in audio that channel
        already finalized: some of its words may be repeats."""
        return start_s < self._finalized_s.get(channel, 0.0) - _EPSILON_S

    def new_words(self, channel: int, words: tuple[Word, ...], base_s: float) -> tuple[Word, ...]:
        """The words (times relative to `base_s`, the stream's start in call seconds) that
        start where `channel` has not finalized yet."""
        from_s = self._finalized_s.get(channel, 0.0) - _EPSILON_S
        return tuple(w for w in words if base_s + w.start >= from_s)

    def finalized(self, channel: int, end_s: float, channels: int) -> float:
        """A final result covered `channel` up to call time `end_s`; returns how far all of
        the call's `channels` are final (call seconds)."""
        finalized_s = self._finalized_s
        if end_s > finalized_s.get(channel, 0.0):
            finalized_s[channel] = end_s
        all_s = finalized_s.get(0, 0.0)
        for other in range(1, channels):
            all_s = min(all_s, finalized_s.get(other, 0.0))
        return all_s


def text_of(words: tuple[Word, ...]) -> str:
    """A result's text made from its words, as the provider punctuated them."""
    return " ".join(w.punctuated_word or w.word for w in words)
