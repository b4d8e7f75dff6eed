"""Fault injection for `asr-worker dg-server`: the failures a real Deepgram connection shows,
on demand. From `--faults` / `DG_SERVER_FAULTS` as `key=value,...`, or set on a running
server's `faults` attribute by a test (they are read at each use, so flipping them at run time
takes effect on the next handshake or message).

Two ways to aim the connection faults: at the first `fault_connections` connections (tests
that want one exact failure), or, with `fault_percent`, at a random share of all connections,
each at a random point (a drill that runs for hours: `random.Random(seed)` draws, so a run can
be repeated).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from typing import Final

# The connection faults, each with the field that sets it (and, for those that end or stall a
# connection, the point in its audio where it strikes).
CONNECTION_FAULTS: Final = (
    ("drop", "drop_after_ms"),
    ("close_1011", "close_1011_after_ms"),
    ("close_1008", "close_1008_after_ms"),
    ("stall", "stall_after_ms"),
    ("slow", "reply_delay_ms"),
)


@dataclass(frozen=True, slots=True)
class ConnectionFault:
    """What one connection meets under `fault_percent`: a fault kind, after this much audio."""

    kind: str
    after_ms: float


@dataclass
class Faults:
    reject_status: int = 0  # refuse handshakes with this HTTP status (401, 429, 503...)
    reject_count: int = 0  # ...this many of them, then accept (0: every one while set)
    reject_percent: int = 0  # ...or each handshake with this chance (%; 100 or more: every one)
    accept_first: int = 0  # ...after accepting this many handshakes first (an outage mid-call)
    retry_after_s: int = 0  # Retry-After on refusals (0: none)
    handshake_delay_ms: int = 0  # hold every handshake this long before answering
    drop_after_ms: int = 0  # after this much audio, abort the TCP connection: no close frame
    close_1011_after_ms: int = 0  # after this much audio, close 1011 (NET-0000)
    close_1008_after_ms: int = 0  # after this much audio, close 1008 (DATA-0000)
    stall_after_ms: int = 0  # after this much audio, stop answering: read on, reply nothing, never close
    fault_connections: int = 1  # the drop/close/stall faults hit the first N connections (0: all)
    fault_percent: int = 0  # ...or each connection with this chance (%): see `draw`
    reply_delay_ms: int = 0  # hold every reply this long: a slow server
    garbage_every: int = 0  # before every Nth reply, one message that is not valid protocol
    seed: int = 0  # for the random draws of reject_percent and fault_percent
    _rng: random.Random | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> Faults:
        """`k=v,k=v` with the field names above; raises ValueError naming a bad key or value."""
        faults = cls()
        known = {f.name for f in fields(cls) if not f.name.startswith("_")}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise ValueError(f"unknown fault {key[:40]!r}; known: {', '.join(sorted(known))}")
            number = value.strip()
            if not (number.isascii() and number.isdigit() and len(number) <= 9):
                raise ValueError(f"fault {key} must be a whole number, not {value[:20]!r}")
            setattr(faults, key, int(number))
        return faults

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            self._rng = random.Random(self.seed)
        return self._rng

    def take_rejection(self) -> int:
        """The status to refuse this handshake with, or 0; counts the refusal down."""
        status = self.reject_status
        if not status:
            return 0
        if self.accept_first > 0:
            self.accept_first -= 1
            return 0
        if self.reject_percent:
            return status if self.rng.random() * 100 < self.reject_percent else 0
        if self.reject_count > 0:
            self.reject_count -= 1
            if self.reject_count == 0:
                self.reject_status = 0
        return status

    def hits(self, connection_index: int) -> bool:
        return self.fault_connections == 0 or connection_index < self.fault_connections

    def draw(self) -> ConnectionFault | None:
        """Under `fault_percent`, the fault a new connection meets, if any: with that chance,
        one of the connection faults that are set, chosen evenly, striking at a point drawn
        evenly between none and all of its `_after_ms` of audio (`slow`: from that point on,
        every reply waits `reply_delay_ms`, at a point up to 10 s)."""
        kinds = [(kind, getattr(self, name)) for kind, name in CONNECTION_FAULTS if getattr(self, name)]
        if not self.fault_percent or not kinds or self.rng.random() * 100 >= self.fault_percent:
            return None
        kind, value = self.rng.choice(kinds)
        span_ms = 10_000 if kind == "slow" else value
        return ConnectionFault(kind, self.rng.uniform(0, span_ms))


GARBAGE_MESSAGES: tuple[str | bytes, ...] = (
    "this is not JSON",
    '{"type": "Gibberish", "note": "an unknown message type"}',
    '{"type": "Results", "channel_index": [0, 1], "is_final": true}',  # lacks start, duration, channel
    '["a", "list", "not", "an", "object"]',
    b"\x00\x01binary from the server",
)
