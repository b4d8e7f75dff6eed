"""RTP (RFC 3550) in: one stream's packets put back in order, its losses filled with silence
so that the call's time stays true, its key presses (RFC 4733) read. Pure: packets and the
time in, audio and digits out.

A packet that arrives in order is passed on at once: the receiver adds no delay to a clean
stream. A packet after a gap is held, for at most `jitter_ms`, for the missing ones to arrive
(reordering); when they do not, they count as lost and the held packets go on. Duplicates,
and packets that arrive after their place was given up, are dropped. Audio is placed by its
RTP timestamp: a gap (a lost packet, silence suppression, a comfort-noise pause) becomes that
much silence, up to `max_fill_ms`; past that, or when the source changes (a new SSRC, a
sequence that jumps), the stream restarts and its caller places what follows by the clock.
RTCP that shares the port is recognised and ignored. Every buffer is bounded: at most
`max_held` packets wait.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from ...core.audio import Encoding
from ...core.codecs import decode_g711, encode_g711

RTP_VERSION: Final = 2
MAX_DROPOUT: Final = 3000  # a forward jump this large is a new sequence (RFC 3550 A.1)
EVENTS: Final = "0123456789*#ABCD"
SILENCE: Final = {Encoding.MULAW: b"\xff", Encoding.ALAW: b"\xd5"}


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def is_rtcp(data: bytes) -> bool:
    """RTCP multiplexed on the RTP port (RFC 5761): packet types 192-223."""
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


def parse(data: bytes) -> RtpPacket | None:
    """One RTP packet, or None for what is not one (RTCP, too short, another version)."""
    if len(data) < 12 or data[0] >> 6 != RTP_VERSION or is_rtcp(data):
        return None
    csrc = data[0] & 0x0F
    offset = 12 + 4 * csrc
    if data[0] & 0x10:  # a header extension: 4 bytes, then its length in words
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data)
    if data[0] & 0x20:  # padding: its count is the last byte
        end -= data[-1]
    if end < offset:
        return None
    return RtpPacket(
        payload_type=data[1] & 0x7F,
        marker=bool(data[1] & 0x80),
        sequence=int.from_bytes(data[2:4], "big"),
        timestamp=int.from_bytes(data[4:8], "big"),
        ssrc=int.from_bytes(data[8:12], "big"),
        payload=data[offset:end],
    )


def build(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    """An RTP packet (for tests, benchmarks and tools that send RTP)."""
    head = bytes([0x80, (0x80 if marker else 0) | payload_type])
    return (
        head
        + (sequence & 0xFFFF).to_bytes(2, "big")
        + (timestamp & 0xFFFFFFFF).to_bytes(4, "big")
        + (ssrc & 0xFFFFFFFF).to_bytes(4, "big")
        + payload
    )


@dataclass(frozen=True, slots=True)
class Digit:
    digit: str


class Restart:
    """What follows is not continuous with what came before: place it by the clock."""


RESTART: Final = Restart()
Output = bytes | Digit | Restart


@dataclass(slots=True)
class RtpStats:
    packets: int = 0
    duplicates: int = 0
    late: int = 0
    lost: int = 0
    reordered: int = 0
    unknown_payload: int = 0
    comfort_noise: int = 0
    ssrc_changes: int = 0
    stale_ssrc: int = 0
    filled_samples: int = 0
    digits: int = 0


def translation(source: Encoding, target: Encoding) -> bytes | None:
    """A 256-byte table from one G.711 law to the other (None: the same law)."""
    if source is target:
        return None
    return encode_g711(decode_g711(bytes(range(256)), source), target)


@dataclass
class RtpReceiver:
    law: Encoding  # the law the call's audio is in
    payloads: dict[int, Encoding]  # payload type -> the law it carries
    telephone_event: int | None = None
    comfort_noise: int | None = None
    jitter_ms: int = 60
    max_fill_ms: int = 2000
    max_held: int = 64
    stats: RtpStats = field(default_factory=RtpStats)
    ssrc: int | None = None
    _next_seq: int | None = None
    _held: dict[int, tuple[RtpPacket, float]] = field(default_factory=dict)
    _expected_ts: int | None = None
    _retired: deque[int] = field(default_factory=lambda: deque(maxlen=4))
    _released: deque[int] = field(default_factory=lambda: deque(maxlen=64))
    _events: deque[int] = field(default_factory=lambda: deque(maxlen=16))
    _tables: dict[int, bytes | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._tables = {pt: translation(law, self.law) for pt, law in self.payloads.items()}

    def push(self, packet: RtpPacket, now: float) -> list[Output]:
        """Take one packet that arrived at `now`; what is ready to go on, in order."""
        self.stats.packets += 1
        out: list[Output] = []
        if packet.ssrc != self.ssrc:
            if packet.ssrc in self._retired:
                self.stats.stale_ssrc += 1
                return out
            if self.ssrc is not None:
                self.stats.ssrc_changes += 1
                self._restart(out)
                self._retired.append(self.ssrc)
            self.ssrc = packet.ssrc
            self._next_seq = packet.sequence
        if self._next_seq is None:  # the first packet after a resume
            self._next_seq = packet.sequence
        ahead = (packet.sequence - self._next_seq) & 0xFFFF
        if ahead >= 0x8000:  # behind what was passed on
            if packet.sequence in self._released:
                self.stats.duplicates += 1
            else:
                self.stats.late += 1
            return out
        if ahead > MAX_DROPOUT:  # the sender's sequence started over
            self._restart(out)
            self._next_seq = packet.sequence
            ahead = 0
        if packet.sequence in self._held:
            self.stats.duplicates += 1
            return out
        if ahead == 0 and self._held:
            self.stats.reordered += 1  # it fills a gap that later packets wait behind
        self._held[packet.sequence] = (packet, now)
        self._release(out)
        self._expire(now, out)
        return out

    def poll(self, now: float) -> list[Output]:
        """What waited long enough for its missing packets (call at `deadline`)."""
        out: list[Output] = []
        self._expire(now, out)
        return out

    def deadline(self) -> float | None:
        """When the oldest held packet stops waiting, or None if none waits."""
        if not self._held:
            return None
        return min(at for _, at in self._held.values()) + self.jitter_ms / 1000

    def flush(self) -> list[Output]:
        """Everything held, in order, the gaps given up (the stream ends or changes)."""
        out: list[Output] = []
        while self._held:
            self._skip_gap()
            self._release(out)
        return out

    @property
    def held_packets(self) -> int:
        return len(self._held)

    def restart(self) -> None:
        """What comes next is placed anew, its sequence too (a resume after a hold)."""
        self._expected_ts = None
        if not self._held:
            self._next_seq = None

    # --- internals -------------------------------------------------------------------------

    def _restart(self, out: list[Output]) -> None:
        out += self.flush()
        self._expected_ts = None
        out.append(RESTART)

    def _release(self, out: list[Output]) -> None:
        while self._next_seq is not None and self._next_seq in self._held:
            packet, _ = self._held.pop(self._next_seq)
            self._released.append(self._next_seq)
            self._next_seq = (self._next_seq + 1) & 0xFFFF
            self._emit(packet, out)

    def _expire(self, now: float, out: list[Output]) -> None:
        wait_s = self.jitter_ms / 1000
        while self._held and (
            len(self._held) > self.max_held or min(at for _, at in self._held.values()) + wait_s <= now
        ):
            self._skip_gap()
            self._release(out)

    def _skip_gap(self) -> None:
        """Give up on the missing packets before the first one held."""
        assert self._next_seq is not None
        base = self._next_seq
        first = min(self._held, key=lambda seq: (seq - base) & 0xFFFF)
        self.stats.lost += (first - base) & 0xFFFF
        self._next_seq = first

    def _emit(self, packet: RtpPacket, out: list[Output]) -> None:
        pt = packet.payload_type
        if pt == self.telephone_event:
            self._event(packet, out)
            return
        if pt == self.comfort_noise:
            self.stats.comfort_noise += 1
            return
        if pt not in self._tables:
            self.stats.unknown_payload += 1
            return
        payload = packet.payload
        if self._expected_ts is not None:
            gap = ((packet.timestamp - self._expected_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            limit = 8 * self.max_fill_ms
            if 0 < gap <= limit:
                out.append(SILENCE[self.law] * gap)
                self.stats.filled_samples += gap
            elif gap > limit or gap < -limit:
                out.append(RESTART)
            elif gap < 0:  # overlaps audio already passed on: keep only what is new
                if -gap >= len(payload):
                    self.stats.duplicates += 1
                    return
                payload = payload[-gap:]
        self._expected_ts = (packet.timestamp + len(packet.payload)) & 0xFFFFFFFF
        table = self._tables[pt]
        out.append(payload if table is None else payload.translate(table))

    def _event(self, packet: RtpPacket, out: list[Output]) -> None:
        """RFC 4733: one event is many packets with one timestamp; it counts once."""
        if len(packet.payload) < 4 or packet.timestamp in self._events:
            return
        event = packet.payload[0]
        if event < len(EVENTS):
            self._events.append(packet.timestamp)
            self.stats.digits += 1
            out.append(Digit(EVENTS[event]))
