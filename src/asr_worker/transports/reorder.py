"""A track's media messages back in order, for platforms that may deliver them out of it
(Telnyx says its media frames are not guaranteed in order: `chunk` numbers them).

Each message waits until the one before it (by `chunk`) has come, for at most `depth` messages:
a message still missing when `depth` later ones are waiting is skipped (its gap becomes
silence or a shift in the call, as a lost message would), and one that comes after its turn is
handed on at once rather than dropped. A message without a chunk number passes straight
through. So a reordered track is delayed by at most `depth` messages (60 ms of 20 ms frames at
the default), and the buffer never holds more than that.

Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class ChunkReorder(Generic[T]):
    depth: int = 3
    skipped: int = 0  # chunk numbers given up on
    late: int = 0  # messages that came after their turn (handed on at once)
    duplicates: int = 0  # a chunk number already waiting: the copy is dropped
    held: int = 0  # messages that waited for an earlier one
    _expected: int | None = None
    _waiting: dict[int, T] = field(default_factory=dict)

    def push(self, chunk: int | None, item: T) -> list[T]:
        """Take one message; return the messages now due, in order (maybe none)."""
        if chunk is None:
            return [item]
        if self._expected is None:
            self._expected = chunk
        if chunk in self._waiting:
            self.duplicates += 1
            return []
        if chunk < self._expected:
            self.late += 1
            return [item]
        self._waiting[chunk] = item
        out = self._release()
        if not out:
            self.held += 1
        while len(self._waiting) > self.depth:
            nearest = min(self._waiting)
            self.skipped += nearest - self._expected
            self._expected = nearest
            out += self._release()
        return out

    def flush(self) -> list[T]:
        """Everything waiting, in order (the stream is over)."""
        out = [self._waiting[chunk] for chunk in sorted(self._waiting)]
        if self._waiting:
            self._expected = max(self._waiting) + 1
        self._waiting.clear()
        return out

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _release(self) -> list[T]:
        out: list[T] = []
        assert self._expected is not None
        while self._expected in self._waiting:
            out.append(self._waiting.pop(self._expected))
            self._expected += 1
        return out
