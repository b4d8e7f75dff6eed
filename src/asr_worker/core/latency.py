"""Arrival latency: for each transcript, how long ago the audio it ends at reached the worker
(its `latency_ms`). That is the delay a caller's words see through the worker and the provider
together, measured where it starts, not from a provider's own clock.

It remembers when each audio message arrived, by the call byte offset the message ended at,
and forgets the ones final results have covered: no later result can end in them. A result's
latency counts from the arrival of the message that held its last byte; a result ending past
everything received (a provider rounding up) counts from the newest message.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# (call offset the message ended at, monotonic time it arrived): plain tuples, one per message,
# 25,000 a second at 500 calls.
_Arrival = tuple[int, float]


@dataclass(slots=True)
class ArrivalLatency:
    _arrivals: deque[_Arrival] = field(default_factory=deque)  # oldest first

    def arrived(self, end_offset: int, now: float) -> None:
        """A message whose audio ends at call offset `end_offset` arrived at `now`."""
        self._arrivals.append((end_offset, now))

    def forget_through(self, offset: int) -> None:
        """No result will end before call offset `offset` any more (finals cover it, or it
        was shed). The newest arrival stays, for a result that ends past the audio."""
        arrivals = self._arrivals
        while len(arrivals) > 1 and arrivals[0][0] <= offset:
            arrivals.popleft()

    def latency_ms(self, end_offset: int, now: float) -> int:
        """From the arrival of the message holding call offset `end_offset` to `now`; 0 if
        no audio arrived."""
        arrived = None
        for message_end, at in reversed(self._arrivals):
            if message_end < end_offset:
                break
            arrived = at
        if arrived is None:
            return 0 if not self._arrivals else max(0, round((now - self._arrivals[-1][1]) * 1000))
        return max(0, round((now - arrived) * 1000))

    def clear(self) -> None:
        self._arrivals.clear()
