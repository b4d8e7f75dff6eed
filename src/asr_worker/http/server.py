"""The worker's listening socket: aiohttp for HTTP, a raw protocol for the ingest socket.

A new connection's first request line decides who serves it. `GET /v1/audio/...` goes to
`transports.ingest_raw`, which parses audio frames in the transport callback (the worker's
hottest path); every other connection goes to aiohttp's low-level server (`AppRunner.server`,
the protocol factory aiohttp documents for `loop.create_server`). An ingest upgrade that comes
later on a kept-alive connection (aiohttp's client reuses them) is served by aiohttp's own
route for the same path, so both paths carry the same `IngestCall`.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Final, cast

from aiohttp import web

from ..transports.ingest_raw import FIRST_LINE, IngestProtocol, Spawn

if TYPE_CHECKING:
    from ..worker import Worker

BACKLOG: Final = 1024  # a fleet reconnecting its calls at once should not meet refused connections


class ConnectionRouter(asyncio.Protocol):
    """Holds a new connection's first bytes until they tell whose it is, then hands it over."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._first = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._first += data
        if self._first.startswith(FIRST_LINE):
            self._hand_over(self._server.ingest_protocol())
        elif not FIRST_LINE.startswith(self._first):
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
    """The listening socket and the raw ingest connections it has handed out."""

    def __init__(self, worker: Worker, runner: web.AppRunner) -> None:
        self._worker = worker
        self._runner = runner
        self._server: asyncio.Server | None = None
        self._spawn: Spawn | None = None
        self._ingest: set[IngestProtocol] = set()

    async def start(self, host: str, port: int, spawn: Spawn) -> int:
        """Listen; return the bound port (the configured one, or the one the OS chose for 0)."""
        self._spawn = spawn
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ConnectionRouter(self), host, port, backlog=BACKLOG, reuse_address=True
        )
        for sock in self._server.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
        return port

    def ingest_protocol(self) -> IngestProtocol:
        assert self._spawn is not None
        return IngestProtocol(self._worker, self._spawn, self._ingest)

    def http_protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None, "AppRunner.setup() comes first"
        return server()

    @property
    def ingest_connections(self) -> int:
        return len(self._ingest)

    def close(self) -> None:
        """Stop listening and drop the ingest connections still open (their calls have ended)."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._ingest):
            connection.abort()
