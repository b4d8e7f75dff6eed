"""Time as the core sees it: a monotonic clock for deadlines and a wall clock for event stamps.

The core never reads time itself; callers pass `now` in. `Clock` is what the I/O edges use to
get those values, and `FakeClock` lets tests move time by hand.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall_ms(self) -> int: ...


class SystemClock:
    # The C function itself, not a method around it: the ingest path reads the clock for
    # every audio message.
    monotonic = staticmethod(time.monotonic)

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock that only moves when a test says so."""

    def __init__(self, start: float = 1000.0, wall_ms: int = 1_764_300_000_000) -> None:
        self._now = start
        self._wall_origin_ms = wall_ms
        self._start = start

    def monotonic(self) -> float:
        return self._now

    def wall_ms(self) -> int:
        return self._wall_origin_ms + round((self._now - self._start) * 1000)

    def advance(self, seconds: float) -> float:
        self._now += seconds
        return self._now
