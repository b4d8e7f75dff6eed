"""How the primary provider fares as its calls see it: since when it has carried new
connections, for failback (a call that moved to the fallback returns once the primary has
worked for ASR_FAILBACK_AFTER_S).

The runners report every connection they open on the primary, and every one that fails to
open or drops with an error; the primary counts as up from the first connection that opened
after the last failure, and not at all while it takes no new calls (its circuit breaker is
open). The providers stay unaware of each other and of this: it is the registry's view.
"""

from __future__ import annotations

from ..providers.base import AdmissionGate, Provider


class PrimaryWatch:
    __slots__ = ("_provider", "_up_since")

    def __init__(self, provider: Provider) -> None:
        self._provider = provider
        self._up_since: float | None = None

    def opened(self, now: float) -> None:
        """A connection to the primary opened."""
        if self._up_since is None:
            self._up_since = now

    def failed(self) -> None:
        """A connection to the primary failed to open or dropped with an error."""
        self._up_since = None

    def up_since(self) -> float | None:
        """Since when the primary has carried new connections; None if it is not now."""
        gate = self._provider
        if isinstance(gate, AdmissionGate) and not gate.taking_new_calls():
            self._up_since = None
        return self._up_since
