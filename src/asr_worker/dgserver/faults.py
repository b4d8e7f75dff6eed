"""Fault injection for `asr-worker dg-server`: the failures a real Deepgram connection shows,
on demand. From `--faults` / `DG_SERVER_FAULTS` as `key=value,...`, or set on a running
server's `faults` attribute by a test (they are read at each use, so flipping them at run time
takes effect on the next handshake or message).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class Faults:
    reject_status: int = 0  # refuse handshakes with this HTTP status (401, 429, 503...)
    reject_count: int = 0  # ...this many of them, then accept (0: every one while set)
    retry_after_s: int = 0  # Retry-After on refusals (0: none)
    handshake_delay_ms: int = 0  # hold every handshake this long before answering
    drop_after_ms: int = 0  # after this much audio, abort the TCP connection: no close frame
    close_1011_after_ms: int = 0  # after this much audio, close 1011 (NET-0000)
    close_1008_after_ms: int = 0  # after this much audio, close 1008 (DATA-0000)
    fault_connections: int = 1  # the drop/close faults hit the first N connections (0: all)
    reply_delay_ms: int = 0  # hold every reply this long: a slow server
    garbage_every: int = 0  # before every Nth reply, one message that is not valid protocol

    @classmethod
    def parse(cls, text: str) -> Faults:
        """`k=v,k=v` with the field names above; raises ValueError naming a bad key or value."""
        faults = cls()
        known = {f.name for f in fields(cls)}
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

    def take_rejection(self) -> int:
        """The status to refuse this handshake with, or 0; counts the refusal down."""
        status = self.reject_status
        if not status:
            return 0
        if self.reject_count > 0:
            self.reject_count -= 1
            if self.reject_count == 0:
                self.reject_status = 0
        return status

    def hits(self, connection_index: int) -> bool:
        return self.fault_connections == 0 or connection_index < self.fault_connections


GARBAGE_MESSAGES: tuple[str | bytes, ...] = (
    "this is not JSON",
    '{"type": "Gibberish", "note": "an unknown message type"}',
    '{"type": "Results", "channel_index": [0, 1], "is_final": true}',  # lacks start, duration, channel
    '["a", "list", "not", "an", "object"]',
    b"\x00\x01binary from the server",
)
