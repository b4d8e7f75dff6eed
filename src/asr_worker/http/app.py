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
from ..errors import AccessDenied, CodedError
from ..metrics import CONTENT_TYPE, WorkerMetrics
from ..runtime.manager import SessionManager
from ..tenancy import Keyring, Scope
from . import page
from .auth import ANY_KEY, OPEN, Route, access_middleware, principal_of
from .limits import ConnectionLimits
from .options import MAX_REQUEST_LINE_BYTES


class ServedProcess(Protocol):
    """What the HTTP edge's own endpoints read of the process they report on."""

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


def build_app(
    served: ServedProcess, routes: Iterable[Route], keyring: Keyring, limits: ConnectionLimits
) -> web.Application:
    """The application: the edge's own routes and the ones given, each guarded as it declares."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response(served.health())

    async def ready(request: web.Request) -> web.Response:
        is_ready, reason = served.readiness()
        return web.json_response({"ready": is_ready, "reason": reason}, status=200 if is_ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=served.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def sessions(request: web.Request) -> web.Response:
        """The calls of the key's tenant, with their state."""
        now = served.clock.monotonic()
        try:
            tenant = principal_of(request).tenants_seen(request.query.get("tenant_id"))
        except CodedError as exc:
            status = exc.status if isinstance(exc, AccessDenied) else 400
            return web.json_response({"error": exc.code, "message": exc.message}, status=status)
        listing = [runner.core.snapshot(now) for runner in served.manager.sessions_of(tenant)]
        return web.json_response({"sessions": listing, "count": len(listing)})

    every = [
        Route("GET", "/health", health, OPEN),
        Route("GET", "/ready", ready, ANY_KEY),
        Route("GET", "/metrics", metrics, OPEN),
        Route("GET", "/v1/sessions", sessions, Scope.OPERATE),
        *page.routes(),
        *routes,
    ]
    app = web.Application(
        client_max_size=1 << 20,
        middlewares=[access_middleware(keyring, every, limits)],
        # an ingest socket's query may name a call's keyterms: as long a line as the raw path takes
        handler_args={"max_line_size": MAX_REQUEST_LINE_BYTES},
    )
    app.add_routes(
        [
            web.get(route.path, route.handler)
            if route.method == "GET"
            else web.route(route.method, route.path, route.handler)
            for route in every
        ]
    )
    return app
