"""What keeps the listening socket from being held hostage: caps on connections per client
address and per key, and headroom below the process's file-descriptor limit.

A silent or half-sent connection costs a file descriptor until it is closed. The connection
router (`server.py`) closes one whose request head does not arrive in time, and asks here
before it takes a new one: refused when its address already holds its share, or when the
process is within `fd_headroom` descriptors of its limit (so calls in progress keep the
descriptors their providers and the bus need). The access middleware asks here before a key
opens another long-lived connection. Each refusal kind has a counter and one log line at most
every `LOG_EVERY_S` (with how many were refused since), so a flood neither goes unseen nor
floods the log.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections import Counter as Tally
from collections.abc import Callable
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from .options import HttpOptions

log = logging.getLogger("asr_worker.limits")

LOG_EVERY_S: Final = 10.0
_FD_SAMPLE_S: Final = 0.1  # how long a count of open descriptors is trusted


class Closable(Protocol):
    def is_closing(self) -> bool: ...


def fd_limit() -> int:
    """The process's soft limit on open file descriptors."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def open_fds() -> int:
    """How many file descriptors the process has open (Linux; elsewhere 0: no headroom check)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


class ConnectionLimits:
    def __init__(
        self,
        options: HttpOptions,
        *,
        limit: int | None = None,
        count_fds: Callable[[], int] = open_fds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fd_limit = fd_limit() if limit is None else limit
        self.fd_headroom = options.fd_headroom
        usable = max(1, self.fd_limit - self.fd_headroom)
        self.per_address = options.max_connections_per_address or max(1, usable // 4)
        self.per_key = options.max_connections_per_key
        self._count_fds = count_fds
        self._clock = clock
        self._fds_at = float("-inf")
        self._fds = 0
        self._by_address: dict[str, list[Closable]] = {}
        self._by_key: Tally[str] = Tally()
        self._refused_since: Tally[str] = Tally()
        self._logged_at: dict[str, float] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.refused = Counter(
            "asr_connections_refused",
            "Connections refused or closed before they became calls, by why: head_timeout, "
            "head_too_large, malformed_request, first_message_timeout, per_address, per_key, "
            "fd_headroom.",
            ["reason"],
            registry=self.registry,
        )
        Gauge(
            "asr_fd_limit", "The process's limit on open file descriptors.", registry=self.registry
        ).set_function(lambda: self.fd_limit)
        Gauge("asr_fds_open", "File descriptors the process has open.", registry=self.registry).set_function(
            self._open_fds
        )

    def describe(self) -> dict[str, int]:
        """The limits in force, for the worker's `serving` log line."""
        return {
            "fd_limit": self.fd_limit,
            "fd_headroom": self.fd_headroom,
            "connections_per_address": self.per_address,
            "connections_per_key": self.per_key,
        }

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(self.registry)

    def admit(self, address: str, connection: Closable) -> str | None:
        """Take a new connection from `address`, or say why not (a refusal reason)."""
        if self.fd_limit - self._open_fds() <= self.fd_headroom:
            return "fd_headroom"
        held = [c for c in self._by_address.get(address, ()) if not c.is_closing()]
        if len(held) >= self.per_address:
            self._by_address[address] = held
            return "per_address"
        held.append(connection)
        self._by_address[address] = held
        return None

    def enter_key(self, key_id: str) -> bool:
        """One more long-lived connection for this key, if it has room."""
        if self._by_key[key_id] >= self.per_key:
            self.refuse("per_key")
            return False
        self._by_key[key_id] += 1
        return True

    def leave_key(self, key_id: str) -> None:
        left = self._by_key[key_id] - 1
        if left > 0:
            self._by_key[key_id] = left
        else:
            del self._by_key[key_id]

    def refuse(self, reason: str, peer: str | None = None) -> None:
        """Count a refusal, and log it at most every LOG_EVERY_S per kind."""
        self.refused.labels(reason).inc()
        self._refused_since[reason] += 1
        now = self._clock()
        if now - self._logged_at.get(reason, float("-inf")) >= LOG_EVERY_S:
            self._logged_at[reason] = now
            count, self._refused_since[reason] = self._refused_since[reason], 0
            log.warning("connections refused", extra={"reason": reason, "count": count, "last_peer": peer})

    def _open_fds(self) -> int:
        now = self._clock()
        if now - self._fds_at >= _FD_SAMPLE_S:
            self._fds, self._fds_at = self._count_fds(), now
        return self._fds
