"""Failover: when a call's primary provider cannot carry it, the call moves to the fallback.

Pure, like the session core that owns one `Failover` per call (`SessionCore.failover`): the
core reports what happens to its provider streams, with the time, and asks here whether the
call must move now, and when it must next look. Three things move a call:

* `circuit_open`: a failure the provider marks as an outage (`ProviderError.outage`: its
  circuit breaker is open, so it is failing for every call, not only this one);
* `handshake_refused`: `refusals` handshakes in a row refused with a retryable HTTP status
  (429, 5xx): the reconnect budget is spent;
* `no_connection`: no working connection (one that delivered a result, or lasted `after_s`)
  for `after_s` while the call wanted one: network errors, timeouts, connections that drop
  as soon as they open. A call that is ending waits less: its end's wait for the last finals
  is bounded, so once the end began it moves after half that wait without a connection.

Moving takes one of the fallback's slots (`claim`, given by the session registry: the
fallback carries a bounded number of calls). Without one the call stays on its primary,
retrying as before, says so once (`fallback_full`), and asks again `retry_s` later. The
replay of the audio no final covered is the core's, the same replay as after any reconnect.

A call that moved stays on the fallback to its end (no flapping inside a call), unless
`failback_after_s` (ASR_FAILBACK_AFTER_S) is set: then it returns to its primary
(`primary_recovered`) at the first utterance boundary once the primary has been carrying new
connections for that long since the move (`primary_up_since`, given by the session registry:
the primary's health as its calls see it), giving its fallback slot back (`release`). At most
once: a call that fails over again after returning stays on the fallback.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..errors import ProviderError
from ..settings import Section, Setting, int_range, seconds

CIRCUIT_OPEN: Final = "circuit_open"
HANDSHAKE_REFUSED: Final = "handshake_refused"
NO_CONNECTION: Final = "no_connection"
PRIMARY_RECOVERED: Final = "primary_recovered"

# What `Failover.take` did.
STAYED: Final = 0
MOVED: Final = 1
FULL: Final = 2


@dataclass(frozen=True, slots=True)
class FailoverConfig:
    fallback: str = ""  # the fallback provider's name; "": no failover
    after_s: float = 10.0
    refusals: int = 3  # retryable handshake refusals in a row that spend the reconnect budget
    retry_s: float = 2.0  # after `fallback_full`, how long before asking for a slot again
    failback_after_s: float = 0.0  # 0: a moved call never returns
    # Calls the fallback carries at once (the session registry's slots). 0: what the fallback
    # measures it can carry (the local engine), or 32 calls for one that measures nothing.
    max_calls: int = 0


def _provider_name(text: str) -> str:
    """A provider's name, or "" for none; which names exist is the configuration's to check."""
    value = text.strip().lower()
    if value in ("", "none"):
        return ""
    if not _NAME.fullmatch(value):
        raise ValueError("must be a provider's name, or none")
    return value


_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,39}")

SETTINGS: Final = Section(
    "failover",
    "failover to a second provider",
    FailoverConfig,
    (
        Setting(
            "fallback",
            "ASR_FALLBACK_PROVIDER",
            "a second provider a call moves to, mid-call, when its primary cannot carry it "
            "(none: no failover)",
            _provider_name,
        ),
        Setting(
            "after_s",
            "ASR_FAILOVER_AFTER_S",
            "how long a call may go without a working connection to its primary before it moves to "
            "the fallback",
            seconds(0.5, 3600.0),
        ),
        Setting(
            "failback_after_s",
            "ASR_FAILBACK_AFTER_S",
            "a call that moved to the fallback returns to its primary, once, at an utterance boundary, "
            "after the primary has carried new connections for this long (0: it stays on the fallback)",
            seconds(0.0, 3600.0),
        ),
        Setting(
            "max_calls",
            "ASR_FALLBACK_MAX_CALLS",
            "most calls the fallback provider carries at once; calls beyond it wait for their primary. 0: "
            "as many as the fallback measures it can carry (the local engine), 32 for a remote one",
            int_range(0, 1_000_000),
        ),
    ),
)


def _no_slot() -> bool:
    return False


def _never_up() -> float | None:
    return None


def _nothing() -> None:
    return None


@dataclass(slots=True)
class Failover:
    config: FailoverConfig
    claim: Callable[[], bool] = _no_slot  # take a slot on the fallback; False when it is full
    release: Callable[[], None] = _nothing  # give the slot back (a call that returned)
    # Since when the primary has been carrying new connections (None: it is not).
    primary_up_since: Callable[[], float | None] = _never_up
    moved: bool = False
    reason: str = ""
    primary: str = ""  # the provider the call moved from
    moved_at: float = float("-inf")
    returned: bool = False  # the call went back to its primary once; it never does again
    down_since: float | None = None  # since when the call has wanted a working connection
    refused: int = 0  # retryable handshake refusals in a row
    full_told: bool = False
    not_before: float = float("-inf")  # no slot is asked for before this
    _opened_at: float | None = None
    _end_by: float | None = None  # the call is ending: if down, move by then

    def started_moved(self, reason: str, primary: str, now: float) -> None:
        """The registry put a new call straight on the fallback (the primary's breaker is open)."""
        self.moved, self.reason, self.primary, self.moved_at = True, reason, primary, now

    def wanting(self, now: float) -> None:
        """The call asks for a connection; from now on it counts as down until one works."""
        if self.down_since is None:
            self.down_since = now

    def ending(self, by: float) -> None:
        """The call is ending: a call down on its primary moves by `by` at the latest."""
        self._end_by = by

    def opened(self, now: float) -> None:
        self._opened_at = now
        self.refused = 0

    def working(self) -> None:
        """The current connection delivered a result: the provider carries the call."""
        self.down_since = None

    def lost(self, error: ProviderError, now: float) -> str | None:
        """A connection failed to open or dropped: the reason to move now, or None."""
        opened_at, self._opened_at = self._opened_at, None
        if opened_at is not None and now - opened_at >= self.config.after_s:
            self.down_since = now  # it carried the call a good while: count down time afresh
        self.wanting(now)
        if self.moved:
            return None
        if error.outage:
            return CIRCUIT_OPEN
        if error.status is not None and error.retryable and opened_at is None:
            self.refused += 1
            if self.refused >= self.config.refusals:
                return HANDSHAKE_REFUSED
        return self.due(now)

    def due(self, now: float) -> str | None:
        """`no_connection` once the call has wanted a working connection for `after_s`."""
        deadline = self.deadline()
        if deadline is not None and now + 1e-9 >= deadline:
            return NO_CONNECTION
        return None

    def deadline(self) -> float | None:
        """When `due` next has something to say, while the call is down on its primary."""
        if self.moved or self.down_since is None:
            return None
        at = self.down_since + self.config.after_s
        if self._end_by is not None:
            at = min(at, max(self._end_by, self.down_since))
        return max(at, self.not_before)

    def return_due(self, now: float) -> bool:
        """A moved call may go back to its primary now (the caller is at an utterance
        boundary): failback is on, the call has not returned before, and the primary has
        carried new connections for `failback_after_s` since the move."""
        after_s = self.config.failback_after_s
        if not self.moved or self.returned or after_s <= 0:
            return False
        since = self.primary_up_since()
        return since is not None and now + 1e-9 >= max(since, self.moved_at) + after_s

    def go_back(self) -> None:
        """The call returns to its primary: the slot goes back; the primary counts as down
        until a connection works, as for any new connection."""
        self.moved, self.returned, self.reason = False, True, PRIMARY_RECOVERED
        self.down_since, self.refused, self.full_told = None, 0, False
        self.not_before, self._opened_at = float("-inf"), None
        self.release()

    def take(self, reason: str, primary: str, now: float) -> int:
        """Move now if the fallback has room (and it is time to ask): MOVED; FULL the first
        time the fallback had no room for this call (say so, once); else STAYED."""
        if self.moved or now + 1e-9 < self.not_before:
            return STAYED
        if not self.claim():
            self.not_before = now + self.config.retry_s
            told, self.full_told = self.full_told, True
            return STAYED if told else FULL
        self.moved, self.reason, self.primary, self.moved_at = True, reason, primary, now
        return MOVED
