"""Reconnect backoff: after a stream fails to open or drops, when the call tries again.

The delay doubles with each failure in a row, from `initial_s` up to `max_s`, and the retry
falls at a random point in its upper half (full jitter), so that the calls a provider dropped
together do not all return together and knock it over again. A stream that connects, or a move
to another provider, starts the count over.

Pure: the randomness is the session's `random.Random`, so a test with a seeded one gets the
same times every run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    initial_s: float  # the wait after a first failure (`SessionConfig.backoff_initial_s`)
    max_s: float  # the longest wait (`SessionConfig.backoff_max_s`)
    rng: random.Random
    failures: int = 0  # in a row, since a stream last connected
    retry_at: float | None = None  # monotonic time the next open is due; None: none waits

    def failed(self, now: float) -> None:
        """A stream failed to open or dropped at `now`: the next open waits."""
        self.failures += 1
        delay_s = min(self.max_s, self.initial_s * 2 ** (self.failures - 1))
        self.retry_at = now + delay_s * (0.5 + self.rng.random() / 2)

    def cancel(self) -> None:
        """An open happens now (or the call is over): nothing waits any more."""
        self.retry_at = None

    def reset(self) -> None:
        """A stream connected, or the call moved to another provider: the next failure is a
        first one again."""
        self.failures = 0
        self.retry_at = None
