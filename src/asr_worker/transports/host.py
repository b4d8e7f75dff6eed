"""What the transports need of the process that serves them, and nothing more.

A transport's handlers join calls, watch their events, read a few limits, count what they
see and refuse new calls while the process drains. `CallHost` says exactly that; the worker
satisfies it without naming it, and hands itself to each transport's `routes(host)` when it
wires the HTTP edge. So a transport can be read, and tested, without the worker, and the
worker is the only module that knows every transport.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from ..http.limits import ConnectionLimits
from ..http.options import HttpOptions
from ..metrics import WorkerMetrics
from ..runtime.hub import EventHub
from ..runtime.manager import SessionManager
from ..tenancy import Keyring
from ..transcripts import Transcripts


class ReplayGuard(Protocol):
    async def first_sighting(self, token: str, ttl_s: float) -> bool:
        """True the first time any worker sharing the bus sees `token` within `ttl_s`."""
        ...


class CallHost(Protocol):
    @property
    def manager(self) -> SessionManager:
        """The live calls: join one, look one up, list them."""
        ...

    @property
    def hub(self) -> EventHub:
        """Every call's events, to watch."""
        ...

    @property
    def transcripts(self) -> Transcripts:
        """Every call's transcript document, while it runs and for a while after."""
        ...

    @property
    def http(self) -> HttpOptions:
        """The listener's limits: the largest message, the first message's deadline."""
        ...

    @property
    def keyring(self) -> Keyring:
        """The keys requests authenticate with (the raw ingest path checks them itself)."""
        ...

    @property
    def bus(self) -> ReplayGuard:
        """Whether another worker has seen a signed request's nonce (AudioHook replays)."""
        ...

    @property
    def limits(self) -> ConnectionLimits:
        """Connections per key (the raw ingest path counts its own)."""
        ...

    @property
    def metrics(self) -> WorkerMetrics: ...

    @property
    def draining(self) -> bool:
        """True once the process stops taking calls: new sockets are refused with 503."""
        ...


HostHandler = Callable[[CallHost, web.Request], Awaitable[web.StreamResponse]]


def bind(host: CallHost, handler: HostHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler that serves `handler` with `host`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await handler(host, request)

    return handle
