"""The worker's listening socket: aiohttp for HTTP, a raw protocol for the ingest socket.

A new connection's first request line decides who serves it. One that starts with the raw
server's `first_line` (the ingest socket's `GET /v1/audio/`, whose audio frames are parsed in
the transport callback, the worker's hottest path) goes to that server's protocol; every other
connection goes to aiohttp's low-level server (`AppRunner.server`, the protocol factory aiohttp
documents for `loop.create_server`). An ingest upgrade that comes later on a kept-alive
connection (aiohttp's client reuses them) is served by aiohttp's own route for the same path.

The raw server is whatever satisfies `RawServer`; the composition root passes the ingest
socket's (`transports.ingest_raw.IngestServer`), so this module knows no transport.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Final, Protocol, cast

from aiohttp import web

BACKLOG: Final = 1024  # a fleet reconnecting its calls at once should not meet refused connections


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
    """Holds a new connection's first bytes until they tell whose it is, then hands it over."""

    def __init__(self, server: HttpServer, raw: RawServer) -> None:
        self._server = server
        self._raw = raw
        self._first_line = raw.first_line
        self._transport: asyncio.Transport | None = None
        self._first = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._first += data
        if self._first.startswith(self._first_line):
            self._hand_over(self._raw.protocol())
        elif not self._first_line.startswith(self._first):
            self._hand_over(self._server.http_protocol())

    def eof_received(self) -> bool | None:
        return None  # closed before it said anything that needs an answer

    def _hand_over(self, protocol: asyncio.Protocol) -> None:
        transport = self._transport
        assert transport is not None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(self._first)
        self._first = b""


class HttpServer:
    """The listening socket, aiohttp's application and the raw server beside it."""

    def __init__(self, runner: web.AppRunner) -> None:
        self._runner = runner
        self._server: asyncio.Server | None = None
        self._raw: RawServer | None = None

    async def start(self, host: str, port: int, raw: RawServer) -> int:
        """Listen; return the bound port (the configured one, or the one the OS chose for 0)."""
        self._raw = raw
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
        if self._server is not None:
            self._server.close()
        if self._raw is not None:
            self._raw.close()
