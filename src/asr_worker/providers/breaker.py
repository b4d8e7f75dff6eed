"""A circuit breaker shared by all calls of one provider: when the provider is down for
everyone, new calls fail at once instead of each one piling up retries against it.

CLOSED: everything goes through; `threshold` connection failures in a row open it.
OPEN: new calls are refused (`allow_new` is False) for `cooldown_s`; calls already admitted keep
retrying with their own backoff, and each of their attempts is a probe.
HALF_OPEN (after the cooldown): the next attempt goes through; success closes the breaker,
failure opens it for another cooldown.

Pure: the caller passes the time in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..errors import ProviderError
from .base import ProviderHealth


class BreakerState(IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass(slots=True)
class CircuitBreaker:
    threshold: int = 5
    cooldown_s: float = 10.0
    failures: int = 0  # consecutive
    opened_at: float | None = None
    trips: int = 0
    refused: int = 0

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at < self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow_new(self, now: float) -> bool:
        """May a new call try to connect? Counts the refusals."""
        if self.state(now) is BreakerState.OPEN:
            self.refused += 1
            return False
        return True

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self, now: float) -> None:
        self.failures += 1
        state = self.state(now)
        if state is BreakerState.HALF_OPEN or (
            state is BreakerState.CLOSED and self.failures >= self.threshold
        ):
            self.opened_at = now
            self.trips += 1

    def is_open(self, now: float) -> bool:
        """The provider is failing for every call (an outage), not only for one."""
        return self.state(now) is BreakerState.OPEN

    def refuse_new_call(self, now: float, provider: str, last_failure: str) -> ProviderError | None:
        """What a new call gets at once while the breaker is open (None: it may try): an
        outage, which a fallback provider takes over; counts the refusal."""
        if self.allow_new(now):
            return None
        return ProviderError(
            "provider_unavailable",
            f"{provider} is failing for every call ({self.failures} connection failures in a row, "
            f"last: {last_failure}); new calls fail at once for {self.retry_in_s(now):.0f} s more",
            retryable=False,
            status=503,
            outage=True,
        )

    def retry_in_s(self, now: float) -> float:
        return 0.0 if self.opened_at is None else max(0.0, self.opened_at + self.cooldown_s - now)

    def health(
        self, now: float, last_failure: str, refusal: str | None = None, *, connected: bool = True
    ) -> ProviderHealth:
        """The provider's health as the breaker sees it, for /health: open, half-open, a
        refusal that retrying cannot fix (`refusal`: a bad key), never connected yet
        (`connected` False: unknown until a call tries, failing once one has failed), failing
        since it last connected (its latest attempts failed, fewer than open the breaker), or
        ok. Where new calls go meanwhile is the caller's to say: it knows
        whether there is a fallback."""
        state = self.state(now)
        if state is BreakerState.OPEN:
            return ProviderHealth(
                False,
                f"circuit open after {self.failures} connection failures in a row (last: {last_failure})",
                refusing_new_calls_s=self.retry_in_s(now),
            )
        if state is BreakerState.HALF_OPEN:
            return ProviderHealth(
                False, f"circuit half-open: the next new call is a probe (last failure: {last_failure})"
            )
        if refusal is not None:
            return ProviderHealth(False, refusal)
        tried = "1 connection attempt" if self.failures == 1 else f"{self.failures} connection attempts"
        if not connected:
            if self.failures == 0:
                return ProviderHealth(
                    False, "no connection yet: the first call will show whether it works", known=False
                )
            return ProviderHealth(False, f"never connected: {tried} failed (last: {last_failure})")
        if self.failures:
            return ProviderHealth(
                False,
                f"the last {tried} failed (last: {last_failure}); it connected before, calls keep retrying",
            )
        return ProviderHealth(True, "ok")
