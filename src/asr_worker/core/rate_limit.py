"""The rate limit on a call's audio messages: a token bucket holding one second's worth.

A source that floods a call (a bug, a replay loop, an attack) would otherwise make the worker
and the provider carry whatever it sends; with the limit, the excess is dropped and the session
core says so in an `error` event at most once a second, while normal bursts (a source catching
up after a network stall) pass.

Cheap on purpose: `take` runs for every audio message (25,000 a second at 500 calls). While
tokens are left it only takes one; the bucket is refilled when it runs low, for what the time
since the last refill earned: the same bound, give or take one message, without the arithmetic
on every message. No limit (a rate of 0) is a bucket that never runs low.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

_UNLIMITED: Final = float("inf")
WARN_EVERY_S: Final = 1.0  # a limited call is told at most this often


@dataclass(slots=True)
class TokenBucket:
    per_s: float  # audio messages a second, the rate and the burst; 0: no limit
    refilled_at: float  # monotonic time the bucket was last refilled (or made full)
    tokens: float = field(init=False, default=0.0)
    warned_at: float = float("-inf")  # monotonic time the call was last told

    def __post_init__(self) -> None:
        self.tokens = self.per_s or _UNLIMITED

    def take(self, now: float) -> bool:
        """One message may pass at `now`: True, and it took its token; False: it is excess."""
        if self.tokens >= 1.0:  # the common case: no arithmetic
            self.tokens -= 1.0
            return True
        return self._refill_and_take(now)

    def _refill_and_take(self, now: float) -> bool:
        rate = self.per_s
        self.tokens = min(rate, self.tokens + (now - self.refilled_at) * rate)
        self.refilled_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def warn_due(self, now: float) -> bool:
        """The call is to be told it lost messages to the limit: once a second at most."""
        if now - self.warned_at >= WARN_EVERY_S:
            self.warned_at = now
            return True
        return False
