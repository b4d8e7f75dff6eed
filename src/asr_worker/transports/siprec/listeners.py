"""The SIP listeners: UDP datagrams and TCP or TLS connections, each message batch handed to
the recording server with the peer to answer. A TCP connection's messages are cut by their
Content-Length (`sip.StreamFramer`); a double-CRLF keep-alive is answered with one CRLF
(RFC 5626). At most `MAX_TCP_CONNECTIONS` connections are open at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, cast

from . import sip

log = logging.getLogger("asr_worker.siprec")

MAX_TCP_CONNECTIONS: Final = 1024


@dataclass
class Peer:
    """Where a message came from, and how to answer it."""

    address: tuple[str, int]
    transport: str  # UDP, TCP, TLS
    local: tuple[str, int]
    send: Callable[[bytes], None]

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"


class Receiver(Protocol):
    """What the listeners hand messages to (the recording server)."""

    @property
    def streams(self) -> set[SipStream]: ...

    def receive(self, messages: list[bytes], peer: Peer) -> None: ...


class SipDatagrams(asyncio.DatagramProtocol):
    def __init__(self, server: Receiver) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        transport = self._transport
        if transport is None or data.strip(b"\r\n") == b"":
            return  # a keep-alive
        address = (str(addr[0]), int(str(addr[1])))
        local = transport.get_extra_info("sockname")
        peer = Peer(
            address, "UDP", (str(local[0]), int(local[1])), lambda out: transport.sendto(out, address)
        )
        self._server.receive([data], peer)


class SipStream(asyncio.Protocol):
    """One TCP or TLS connection: messages cut by Content-Length, answered on it."""

    def __init__(self, server: Receiver, kind: str) -> None:
        self._server = server
        self._kind = kind
        self._framer = sip.StreamFramer()
        self._transport: asyncio.Transport | None = None
        self._peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if len(self._server.streams) >= MAX_TCP_CONNECTIONS:
            transport.close()
            return
        self._server.streams.add(self)
        remote = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self._peer = Peer(
            (str(remote[0]), int(remote[1])), self._kind, (str(local[0]), int(local[1])), self._write
        )

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self._peer is None:
            return
        before = self._framer.keepalives
        try:
            messages = self._framer.push(data)
        except sip.SipError as exc:
            log.info("siprec stream closed", extra={"peer": self._peer.address[0], "reason": exc.detail})
            self.close()
            return
        if self._framer.keepalives > before:
            self._write(b"\r\n")  # RFC 5626's pong
        if messages:
            self._server.receive(messages, self._peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.streams.discard(self)
        self._transport = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
