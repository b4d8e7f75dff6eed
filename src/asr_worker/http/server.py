"""The worker's listening socket: aiohttp for HTTP, a raw protocol for the ingest socket.

A new connection's first request line decides who serves it. One that starts with the raw
server's `first_line` (the ingest socket's `GET /v1/audio/`, whose audio frames are parsed in
the transport callback, the worker's hottest path) goes to that server's protocol; every other
connection goes to aiohttp's low-level server (`AppRunner.server`, the protocol factory aiohttp
documents for `loop.create_server`). An ingest upgrade that comes later on a kept-alive
connection (aiohttp's client reuses them) is served by aiohttp's own route for the same path.

The raw server is whatever satisfies `RawServer`; the composition root passes the ingest
socket's (`transports.ingest_raw.IngestServer`), so this module knows no transport.

The router is also every connection's first deadline: it takes a connection only if its
address and the process's file descriptors have room (`limits.ConnectionLimits`), and hands it
over only once its whole request head has arrived, within `ASR_HEAD_TIMEOUT_S` (else 408) and
`MAX_HEAD_BYTES` (else 431). A silent or half-sent connection so holds a descriptor for a few
seconds at most, and what is served after it (aiohttp, the raw ingest socket) always starts
from a complete head.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Final, Protocol, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .limits import ConnectionLimits

_AIOHTTP_SERVER_LOG: Final = logging.getLogger("aiohttp.server")
BACKLOG: Final = 1024  # a fleet reconnecting its calls at once should not meet refused connections
MAX_HEAD_BYTES: Final = 64 * 1024  # a request's line and headers
_HEAD_END: Final = b"\r\n\r\n"


def _status(code: int, reason: str, retry_after_s: int | None = None) -> bytes:
    """A bodiless HTTP answer that closes the connection."""
    extra = f"Retry-After: {retry_after_s}\r\n" if retry_after_s is not None else ""
    return f"HTTP/1.1 {code} {reason}\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n".encode()


class RawServer(Protocol):
    """Connections served straight on the loop's transport, bypassing aiohttp."""

    @property
    def first_line(self) -> bytes:
        """How a connection for this server starts (its request line's first bytes)."""
        ...

    def protocol(self) -> asyncio.Protocol:
        """A protocol for one new connection; the router then gives it the connection and the
        bytes read so far."""
        ...

    @property
    def connections(self) -> int:
        """Its connections open now."""
        ...

    def close(self) -> None:
        """Drop its connections still open (at shutdown, once every call has ended)."""
        ...


class ConnectionRouter(asyncio.Protocol):
    """Holds a new connection's request head until it is whole, then hands it to its server."""

    def __init__(self, server: HttpServer, raw: RawServer) -> None:
        self._server = server
        self._raw = raw
        self._first_line = raw.first_line
        self._transport: asyncio.Transport | None = None
        self._first = b""
        self._deadline: asyncio.TimerHandle | None = None
        self._peer: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        limits = self._server.limits
        refused = limits.admit(self._peer, self._transport)
        if refused is not None:
            limits.refuse(refused, self._peer)
            self._end(_status(503, "Service Unavailable", retry_after_s=1))
            return
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._server.head_timeout_s, self._head_late)

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._first += data
        if _HEAD_END in self._first:
            raw = self._first.startswith(self._first_line)
            self._hand_over(self._raw.protocol() if raw else self._server.http_protocol())
        elif len(self._first) > MAX_HEAD_BYTES:
            self._server.limits.refuse("head_too_large", self._peer)
            self._end(_status(431, "Request Header Fields Too Large"))

    def eof_received(self) -> bool | None:
        return None  # closed before it said anything that needs an answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()

    def _head_late(self) -> None:
        self._deadline = None
        self._server.limits.refuse("head_timeout", self._peer)
        self._end(_status(408, "Request Timeout"))

    def _end(self, answer: bytes) -> None:
        self._stop_deadline()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(answer)
            transport.close()

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _hand_over(self, protocol: asyncio.Protocol) -> None:
        self._stop_deadline()
        transport = self._transport
        assert transport is not None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(self._first)
        self._first = b""


class MalformedRequests(logging.Filter):
    """aiohttp logs every request it cannot parse as an ERROR with a traceback: a flood of
    malformed requests, which needs no key, would flood the log. Such a record becomes a
    refusal of kind `malformed_request` instead: counted, and one line at most every
    `limits.LOG_EVERY_S` that names the peer and no part of the request."""

    def __init__(self, limits: ConnectionLimits) -> None:
        super().__init__()
        self._limits = limits

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        _, _, peer = record.getMessage().partition(" from ")
        self._limits.refuse("malformed_request", peer[:60] or None)
        return False


class HttpServer:
    """The listening socket, aiohttp's application and the raw server beside it."""

    def __init__(self, runner: web.AppRunner, limits: ConnectionLimits, head_timeout_s: float) -> None:
        self._runner = runner
        self.limits = limits
        self.head_timeout_s = head_timeout_s
        self._quiet = MalformedRequests(limits)
        self._server: asyncio.Server | None = None
        self._raw: RawServer | None = None

    async def start(self, host: str, port: int, raw: RawServer) -> int:
        """Listen; return the bound port (the configured one, or the one the OS chose for 0)."""
        self._raw = raw
        _AIOHTTP_SERVER_LOG.addFilter(self._quiet)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ConnectionRouter(self, raw), host, port, backlog=BACKLOG, reuse_address=True
        )
        for sock in self._server.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
        return port

    def http_protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None, "AppRunner.setup() comes first"
        return server()

    @property
    def raw_connections(self) -> int:
        return 0 if self._raw is None else self._raw.connections

    def close(self) -> None:
        """Stop listening and drop the raw connections still open (their calls have ended)."""
        _AIOHTTP_SERVER_LOG.removeFilter(self._quiet)
        if self._server is not None:
            self._server.close()
        if self._raw is not None:
            self._raw.close()
