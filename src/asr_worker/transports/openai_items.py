"""A call's transcripts as OpenAI Realtime conversation items: which item each result belongs
to, what delta it adds, when the item is complete. Pure: events in, server events (dicts) out.

With turn detection on (`server_vad`), each of the worker's utterance finals is one item: its
first text announces the item (`speech_started`), interims add deltas, the final stops,
commits and completes it. With turn detection off, the client's commits cut the items: a
commit announces the item (`committed`, the item) and asks the session to finalize what it
has; the results until that flush's final (`from_finalize`) are the item's text.

Deltas are append-only: only words that two interims in a row agree on (and never an
interim's last word, which may still be growing) are sent before the final, so a delta is
never taken back, and the deltas of an item concatenate exactly to its `completed`
transcript. When a final disagrees with words already sent (rare: they were agreed on), the
sent words stand and the final's words after them complete the item; `revisions` counts it.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.events import Transcript
from ..openai_realtime import protocol
from ..openai_realtime.protocol import Schema

_EPSILON_S = 1e-3


@dataclass(slots=True)
class _Item:
    id: str
    start_s: float
    announced: bool = False  # speech_started sent (turn detection) or committed (manual)
    final_words: list[str] = field(default_factory=list)  # from finals: stable
    interim_words: list[str] = field(default_factory=list)  # the last interim's
    prev_interim: list[str] = field(default_factory=list)  # the one before it
    emitted: list[str] = field(default_factory=list)  # words sent as deltas
    end_s: float = 0.0


Emit = Callable[[dict[str, object]], None]


class ItemTracker:
    """One realtime session's items. `emit` gets each server event, in order."""

    def __init__(self, emit: Emit, schema: Callable[[], Schema], prefix: str | None = None) -> None:
        self._emit = emit
        self._schema = schema
        self._prefix = prefix or f"item_{secrets.token_hex(6)}"
        self._numbers = itertools.count(1)
        self._events = itertools.count(1)
        self._event_prefix = f"event_{secrets.token_hex(4)}"
        self._previous: str | None = None
        self._open: _Item | None = None  # turn detection: the utterance being heard
        self._committed: deque[_Item] = deque()  # commits waiting for their flush's final
        self._uncommitted: list[str] = []  # manual: final words not yet committed
        self._ignore_before_s = 0.0  # `clear`: results of earlier audio are dropped
        self.revisions = 0
        self.completed = 0

    def event_id(self) -> str:
        return f"{self._event_prefix}_{next(self._events)}"

    # --- inputs ---------------------------------------------------------------------------

    def commit(self, vad: bool, at_s: float) -> None:
        """The client committed its buffer (the caller has asked the session to finalize)."""
        if vad:
            item = self._open or self._new_item(at_s)
            self._open = None
        else:
            item = self._new_item(at_s)
            item.final_words, self._uncommitted = self._uncommitted, []
        item.end_s = at_s
        self._announce_commit(item)
        self._committed.append(item)
        self._advance(item)

    def clear(self, at_s: float) -> None:
        """The client cleared its buffer: what it had sent so far is not transcribed."""
        self._ignore_before_s = at_s
        self._uncommitted = []
        if self._open is not None and not self._open.announced:
            self._open = None
        self._emit(protocol.cleared_event(self.event_id()))

    def transcript(self, t: Transcript, vad: bool) -> None:
        if t.end <= self._ignore_before_s + _EPSILON_S and not t.from_finalize:
            return
        words = t.text.split()
        if t.from_finalize and self._committed:
            item = self._committed.popleft()
            self._final(item, words)
            item.end_s = max(item.end_s, t.end)
            self._complete(item)
            return
        if self._committed:  # results of audio before the pending commit: that item's text
            item = self._committed[0]
            if t.is_final:
                self._final(item, words)
            else:
                self._interim(item, words)
            self._advance(item)
            return
        if not vad:
            if t.is_final:
                self._uncommitted += words
            return
        if not words and self._open is None:
            return
        current = self._open
        if current is None:
            current = self._new_item(t.start)
            self._open = current
            current.announced = True
            self._emit(protocol.speech_started_event(current.id, _ms(t.start), self.event_id()))
        item = current
        if not t.is_final:
            self._interim(item, words)
            self._advance(item)
            return
        self._final(item, words)
        item.end_s = t.end
        self._open = None
        self._emit(protocol.speech_stopped_event(item.id, _ms(t.end), self.event_id()))
        self._announce_commit(item)
        self._complete(item)

    def ended(self, ok: bool, code: str, message: str) -> None:
        """The call is over: every item still open is completed with what it has (or failed,
        when the call ended on an error)."""
        pending = list(self._committed)
        self._committed.clear()
        if self._open is not None:
            item, self._open = self._open, None
            self._announce_commit(item)
            pending.append(item)
        for item in pending:
            if ok:
                self._complete(item)
            else:
                self._emit(protocol.failed_event(item.id, code, message, self.event_id()))

    # --- internals ------------------------------------------------------------------------

    def _new_item(self, start_s: float) -> _Item:
        return _Item(f"{self._prefix}_{next(self._numbers)}", start_s)

    def _announce_commit(self, item: _Item) -> None:
        previous, self._previous = self._previous, item.id
        self._emit(protocol.committed_event(item.id, previous, self.event_id()))
        self._emit(protocol.item_event(self._schema(), item.id, previous, self.event_id()))

    @staticmethod
    def _interim(item: _Item, words: list[str]) -> None:
        item.prev_interim, item.interim_words = item.interim_words, words

    @staticmethod
    def _final(item: _Item, words: list[str]) -> None:
        item.final_words += words
        item.interim_words, item.prev_interim = [], []

    def _advance(self, item: _Item) -> None:
        """Send the words of `item` that can no longer change and were not sent yet."""
        candidate = list(item.final_words)
        interim = item.interim_words
        if interim:
            # An interim's words are stable when the previous interim agreed on them; its last
            # word never is.
            agreed = _common_prefix(item.prev_interim, interim)
            candidate += interim[: min(agreed, len(interim) - 1)]
        self._send_new(item, candidate)

    def _send_new(self, item: _Item, candidate: list[str]) -> None:
        done = len(item.emitted)
        if len(candidate) <= done or candidate[:done] != item.emitted:
            return
        new = candidate[done:]
        delta = (" " if done else "") + " ".join(new)
        item.emitted += new
        self._emit(protocol.delta_event(item.id, delta, self.event_id()))

    def _complete(self, item: _Item) -> None:
        words = item.final_words
        done = len(item.emitted)
        if words[:done] != item.emitted:
            self.revisions += 1
        rest = words[done:] if len(words) > done else []
        if rest:
            item.emitted += rest
            self._emit(protocol.delta_event(item.id, (" " if done else "") + " ".join(rest), self.event_id()))
        self.completed += 1
        audio_s = max(0.0, item.end_s - item.start_s)
        self._emit(protocol.completed_event(item.id, " ".join(item.emitted), audio_s, self.event_id()))


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
