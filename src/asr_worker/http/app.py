"""The HTTP edge: health, readiness, metrics, session listing and the live page, plus the
routes it is given (every transport's, bound to the worker by the composition root).

This package knows no transport and no worker: what it needs of the process it serves is
`ServedProcess`, and the routes and the raw ingest path come in from `worker.serve`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from aiohttp import web

from ..core.clock import Clock
from ..metrics import CONTENT_TYPE, WorkerMetrics
from ..runtime.manager import SessionManager
from . import page
from .auth import auth_middleware
from .options import MAX_REQUEST_LINE_BYTES, HttpOptions


class ServedProcess(Protocol):
    """What the HTTP edge's own endpoints read of the process they report on."""

    @property
    def http(self) -> HttpOptions:
        """The token every endpoint but /health, /metrics and the page's shell requires."""
        ...

    @property
    def clock(self) -> Clock: ...

    @property
    def manager(self) -> SessionManager:
        """The live calls, for `/v1/sessions`."""
        ...

    @property
    def metrics(self) -> WorkerMetrics: ...

    def health(self) -> dict[str, object]: ...

    def readiness(self) -> tuple[bool, str]: ...


def build_app(served: ServedProcess, routes: Iterable[web.RouteDef]) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.json_response(served.health())

    async def ready(request: web.Request) -> web.Response:
        is_ready, reason = served.readiness()
        return web.json_response({"ready": is_ready, "reason": reason}, status=200 if is_ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=served.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def sessions(request: web.Request) -> web.Response:
        now = served.clock.monotonic()
        listing = [runner.core.snapshot(now) for runner in served.manager.sessions]
        return web.json_response({"sessions": listing, "count": len(listing)})

    app = web.Application(
        client_max_size=1 << 20,
        middlewares=[auth_middleware(served.http.worker_token)],
        # an ingest socket's query may name a call's keyterms: as long a line as the raw path takes
        handler_args={"max_line_size": MAX_REQUEST_LINE_BYTES},
    )
    app.add_routes(
        [
            web.get("/health", health),
            web.get("/ready", ready),
            web.get("/metrics", metrics),
            web.get("/v1/sessions", sessions),
            *page.routes(),
            *routes,
        ]
    )
    return app
