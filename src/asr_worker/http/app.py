"""The HTTP edge: health, readiness, metrics and session listing, plus every transport's routes.

Transports (ingest WebSocket, telephony media streams, event streams) each contribute a
list of routes from their own module; adding one is one module and one line in TRANSPORTS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from aiohttp import web

from ..metrics import CONTENT_TYPE
from .auth import auth_middleware
from .keys import WORKER

if TYPE_CHECKING:
    from ..worker import Worker

# One line per transport; each module has `routes() -> list[web.RouteDef]`.
TRANSPORTS: Final = (
    "asr_worker.transports.ingest_ws",
    "asr_worker.transports.twilio",
    "asr_worker.transports.exotel",
    "asr_worker.transports.sse",
    "asr_worker.http.page",
)


async def health(request: web.Request) -> web.Response:
    return web.json_response(request.app[WORKER].health())


async def ready(request: web.Request) -> web.Response:
    is_ready, reason = request.app[WORKER].readiness()
    return web.json_response({"ready": is_ready, "reason": reason}, status=200 if is_ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[WORKER].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def sessions(request: web.Request) -> web.Response:
    worker = request.app[WORKER]
    now = worker.clock.monotonic()
    listing = [runner.core.snapshot(now) for runner in worker.manager.sessions]
    return web.json_response({"sessions": listing, "count": len(listing)})


def build_app(worker: Worker) -> web.Application:
    app = web.Application(
        client_max_size=1 << 20, middlewares=[auth_middleware(worker.settings.worker_token)]
    )
    app[WORKER] = worker
    app.add_routes(
        [
            web.get("/health", health),
            web.get("/ready", ready),
            web.get("/metrics", metrics),
            web.get("/v1/sessions", sessions),
        ]
    )
    for name in TRANSPORTS:
        app.add_routes(importlib.import_module(name).routes())
    return app
