"""A recorded call's media: its RTP ports, each stream's receiver, and the audio of its streams
fed to the call as one stream (two channels for SIPREC, one for an externalMedia call).

RTP ports come from one pool (`ASR_SIPREC_RTP_PORTS`), even numbers only (the odd one above
is RTCP's by convention); a call's streams get consecutive even ports where the pool has
them, which keeps one call's traffic easy to find in a capture. Each port is a non-blocking
UDP socket read in the event loop's reader callback, every waiting packet at once, with no
task or queue per packet.

Only the address that negotiated a stream may send on it: the SDP's connection address (or,
without one, the SBC's own), and once the first packet arrives, only that packet's address
and port (a stray or a spoofed sender on another port is dropped and counted). A stream's
audio is placed in the call by its RTP timestamps (losses filled, `rtp.RtpReceiver`), its
start and every restart (a new SSRC, a long gap) by the clock; the two channels are aligned by
the interleaver Twilio's two tracks use.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Final

from ...core.audio import AudioFormat, Encoding
from ...core.session import Phase
from ...runtime.source import CallSource
from ..interleave import TrackInterleaver
from . import rtp
from .rtp import RtpReceiver, RtpStats

log = logging.getLogger("asr_worker.siprec")

READS_PER_WAKEUP: Final = 64
MAX_PACKET_BYTES: Final = 2048

Address = tuple[str, int]
PacketHandler = Callable[[bytes, Address], None]


class RtpSocket:
    """One bound RTP port, read in the event loop's reader callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, port: int) -> None:
        self.port = port
        self.handler: PacketHandler | None = None
        self._loop = loop
        self._sock = sock
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(READS_PER_WAKEUP):
            try:
                data, address = self._sock.recvfrom(MAX_PACKET_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error reported on the socket: nothing to read
                return
            if self.handler is not None:
                self.handler(data, (str(address[0]), int(address[1])))

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


class RtpPorts:
    """The pool of RTP ports (even numbers of the range), bound on demand."""

    def __init__(self, host: str, first: int, last: int) -> None:
        self.host = host
        self._ports = [p for p in range(first + first % 2, last + 1, 2)]
        self._free = set(self._ports)
        self._cursor = 0
        self.in_use = 0

    @property
    def capacity(self) -> int:
        return len(self._ports)

    def open(self, count: int) -> list[RtpSocket] | None:
        """`count` bound ports, consecutive where the pool has them; None if it has not."""
        if count > len(self._free):
            return None
        loop = asyncio.get_running_loop()
        n = len(self._ports)
        for step in range(n):  # a block of consecutive free ports first
            i = (self._cursor + step) % n
            block = self._ports[i : i + count]
            if (
                len(block) == count
                and all(p in self._free for p in block)
                and block[-1] - block[0] == 2 * (count - 1)
            ):
                sockets = self._bind(loop, block)
                if sockets is not None:
                    self._cursor = (i + count) % n
                    return sockets
        picked: list[RtpSocket] = []
        for port in list(self._free):
            found = self._bind(loop, [port])
            if found:
                picked += found
                if len(picked) == count:
                    return picked
        for s in picked:
            self.release(s)
        return None

    def _bind(self, loop: asyncio.AbstractEventLoop, ports: list[int]) -> list[RtpSocket] | None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        bound: list[tuple[socket.socket, int]] = []
        for port in ports:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((self.host, port))
            except OSError:  # in use by another process: leave it out of the pool for now
                sock.close()
                for other, _ in bound:
                    other.close()
                return None
            bound.append((sock, port))
        for _, port in bound:
            self._free.discard(port)
        self.in_use += len(bound)
        return [RtpSocket(loop, sock, port) for sock, port in bound]

    def release(self, rtp_socket: RtpSocket) -> None:
        rtp_socket.close()
        if rtp_socket.port not in self._free:
            self._free.add(rtp_socket.port)
            self.in_use -= 1


@dataclass
class PacketCounts:
    """Packets a call's ports dropped before its receivers saw them."""

    foreign: int = 0  # from an address that did not negotiate the stream
    rtcp: int = 0
    malformed: int = 0
    held: int = 0  # on a stream that is on hold (a=inactive)


@dataclass
class Leg:
    """One stream of a call: its port, its receiver, where it may come from, its channel."""

    index: int
    label: str | None
    socket: RtpSocket
    receiver: RtpReceiver
    remote_ip: str | None
    channel: int | None
    sending: bool = True
    latched: Address | None = None
    anchor_ms: float | None = None
    placed_samples: int = 0
    last_packet_at: float | None = None


def _same_ip(a: str, b: str) -> bool:
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return a == b
    if isinstance(x, ipaddress.IPv6Address) and x.ipv4_mapped is not None:
        x = x.ipv4_mapped
    if isinstance(y, ipaddress.IPv6Address) and y.ipv4_mapped is not None:
        y = y.ipv4_mapped
    return x == y


@dataclass
class CallMedia:
    """A call's streams feeding its one source: packets in, the call's audio out."""

    source: CallSource | None  # None until the call is answered (a SIPREC INVITE) and joined
    fmt: AudioFormat  # the call's: G.711 at 8 kHz, one or two channels
    started_at: float
    max_lag_ms: int = 100
    legs: dict[int, Leg] = field(default_factory=dict)
    counts: PacketCounts = field(default_factory=PacketCounts)
    ended_stats: RtpStats = field(default_factory=RtpStats)
    interleaver: TrackInterleaver | None = None
    last_packet_at: float | None = None

    def __post_init__(self) -> None:
        if self.fmt.channels == 2:
            track = AudioFormat(self.fmt.encoding, self.fmt.sample_rate, 1)
            self.interleaver = TrackInterleaver(track, max_lag_ms=self.max_lag_ms)

    @property
    def law(self) -> Encoding:
        return self.fmt.encoding

    def add(self, leg: Leg, now: Callable[[], float]) -> None:
        self.legs[leg.index] = leg
        leg.socket.handler = lambda data, address: self.packet(leg, data, address, now())

    def remove(self, index: int) -> Leg | None:
        leg = self.legs.pop(index, None)
        if leg is not None:
            self._deliver(leg, leg.receiver.flush(), None)
            self._add_stats(leg.receiver.stats)
            leg.socket.handler = None
        return leg

    def packet(self, leg: Leg, data: bytes, address: Address, now: float) -> None:
        if leg.latched is not None:
            if address != leg.latched:
                self.counts.foreign += 1
                return
        elif leg.remote_ip is not None and not _same_ip(address[0], leg.remote_ip):
            self.counts.foreign += 1
            return
        packet = rtp.parse(data)
        if packet is None:
            if rtp.is_rtcp(data):
                self.counts.rtcp += 1
            else:
                self.counts.malformed += 1
            return
        if leg.latched is None:
            leg.latched = address
        if not leg.sending:
            self.counts.held += 1
            return
        leg.last_packet_at = self.last_packet_at = now
        self._deliver(leg, leg.receiver.push(packet, now), now)

    def set_sending(self, leg: Leg, sending: bool, now: float) -> None:
        """A hold (`a=inactive`) passes on what the stream held; a resume is placed by the
        clock, as the SBC may or may not have moved its timestamps on through the hold."""
        if leg.sending and not sending:
            self._deliver(leg, leg.receiver.flush(), now)
        elif sending and not leg.sending:
            leg.receiver.restart()
            leg.anchor_ms = None
        leg.sending = sending

    def poll(self, now: float) -> None:
        for leg in list(self.legs.values()):
            due = leg.receiver.deadline()
            if due is not None and due <= now:
                self._deliver(leg, leg.receiver.poll(now), now)

    def finish(self) -> None:
        """The call's media ends: everything held goes to the call."""
        for index in list(self.legs):
            self.remove(index)
        if self.interleaver is not None:
            self._feed(self.interleaver.flush())

    def stats(self) -> RtpStats:
        total = _copy(self.ended_stats)
        for leg in self.legs.values():
            _sum_into(total, leg.receiver.stats)
        return total

    # --- internals -------------------------------------------------------------------------

    def _add_stats(self, stats: RtpStats) -> None:
        _sum_into(self.ended_stats, stats)

    def _deliver(self, leg: Leg, outputs: list[rtp.Output], now: float | None) -> None:
        channel = leg.channel
        for item in outputs:
            if isinstance(item, bytes):
                if channel is None:
                    continue
                self._place(leg, channel, item, now)
            elif isinstance(item, rtp.Digit):
                if channel is not None and self.source is not None:
                    self.source.dtmf(item.digit, channel)
            else:
                leg.anchor_ms = None  # a restart: what follows is placed by the clock

    def _place(self, leg: Leg, channel: int, data: bytes, now: float | None) -> None:
        if self.interleaver is None:
            self._feed(data)
            return
        if leg.anchor_ms is None:
            at = self.started_at if now is None else now
            leg.anchor_ms = (at - self.started_at) * 1000
            leg.placed_samples = 0
        timestamp_ms = int(leg.anchor_ms + leg.placed_samples * 1000 // self.fmt.sample_rate)
        leg.placed_samples += len(data)
        self._feed(self.interleaver.push(channel, data, timestamp_ms))

    def _feed(self, data: bytes) -> None:
        source = self.source
        if data and source is not None and source.attached and source.runner.status.phase is Phase.ACTIVE:
            source.feed(data)


def _copy(stats: RtpStats) -> RtpStats:
    copy = RtpStats()
    _sum_into(copy, stats)
    return copy


def _sum_into(total: RtpStats, stats: RtpStats) -> None:
    for item in fields(RtpStats):
        setattr(total, item.name, getattr(total, item.name) + getattr(stats, item.name))
