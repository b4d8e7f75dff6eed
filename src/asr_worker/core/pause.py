"""The pause: while a call is paused (a card being read out, PCI DSS's "pause and resume"), no
audio of it reaches the provider, and the call's time still runs.

The audio a paused call receives is counted and dropped; it never enters the replay buffer,
so no reconnect, replay or failover can send it either. What the provider hears is therefore
the call's audio with the paused stretches cut out, and its times count that audio. The call's
time counts everything received, pauses included (a transcript after a pause is stamped where
its words were said in the call). `PauseMap` keeps the two apart: the replay buffer's byte
offsets count the audio kept (`kept`), the call's count all of it (`call`), and each pause is a
gap, where `kept` stood still while `call` ran on.

A provider result never straddles a gap (the core asks the provider to finalize when a pause
begins), so each result maps to call time with the gaps before its start. Gaps before the
current stream's first byte are folded into one offset; at most `MAX_GAPS` are held apart
(older ones are folded too: a result then maps a pause too early, never a word into one).

Pure and clockless, compiled with the core (setup.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

MAX_GAPS: Final = 64


@dataclass(slots=True)
class PauseMap:
    paused: bool = False
    total_bytes: int = 0  # all the audio dropped in pauses, call-long
    _folded: int = 0  # paused bytes of the gaps folded in (before the stream's first byte)
    _at: list[int] = field(default_factory=list)  # each gap's kept offset, in order
    _size: list[int] = field(default_factory=list)  # and its paused bytes

    def skip(self, kept_offset: int, size: int) -> None:
        """`size` bytes of audio arrived while paused, where the kept audio reached `kept_offset`."""
        self.total_bytes += size
        if self._at and self._at[-1] == kept_offset:
            self._size[-1] += size
            return
        self._at.append(kept_offset)
        self._size.append(size)
        if len(self._at) > MAX_GAPS:
            self._folded += self._size.pop(0)
            self._at.pop(0)

    def call_offset(self, kept_offset: int) -> int:
        """The call offset of the kept audio at `kept_offset`: a gap that begins exactly there
        is before it (the audio after a pause starts after its gap)."""
        offset = kept_offset + self._folded
        for at, size in zip(self._at, self._size, strict=True):
            if at > kept_offset:
                break
            offset += size
        return offset

    def kept_offset(self, call_offset: int) -> int:
        """The kept offset of call offset `call_offset`; one inside a gap maps to its start."""
        kept = call_offset - self._folded
        for at, size in zip(self._at, self._size, strict=True):
            if kept <= at:
                break
            kept = max(at, kept - size)
        return kept

    def fold_through(self, kept_offset: int) -> None:
        """No result will be mapped from before `kept_offset` any more (a new stream starts
        there): the gaps at or before it become one offset."""
        while self._at and self._at[0] <= kept_offset:
            self._folded += self._size.pop(0)
            self._at.pop(0)

    @property
    def gaps(self) -> int:
        return len(self._at)
