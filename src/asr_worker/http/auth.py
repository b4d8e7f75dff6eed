"""Bearer-token authentication for everything but /health, /metrics and the page's shell.

The accepted forms and the comparison are `credentials`' (shared with the raw ingest socket).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..credentials import UNAUTHORIZED_HEADERS, Secret, presented_credentials, token_matches, unauthorized

# Health and metrics are for probes and scrapers; the page's shell and assets hold no call
# data (everything it shows comes from the API, which needs the token it carries along).
# Genesys AudioHook cannot send the bearer token: its socket checks its own credentials
# (ASR_AUDIOHOOK_API_KEYS and the request's signature, transports/audiohook.py).
OPEN_PATHS: Final = frozenset({"/health", "/metrics", "/", "/v1/audiohook"})
OPEN_PREFIXES: Final = ("/static/",)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def presented_tokens(request: web.Request) -> list[str]:
    """Every credential the request carries, in the accepted forms."""
    return presented_credentials(
        request.method,
        request.headers.get("Authorization", ""),
        request.query,
        request.headers.get("Sec-WebSocket-Protocol", ""),
    )


def auth_middleware(token: Secret | None) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None or request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return await handler(request)
        presented = presented_tokens(request)
        if token_matches(token, presented):
            return await handler(request)
        body = unauthorized(presented, request.path, request.remote)
        return web.json_response(body, status=401, headers=dict(UNAUTHORIZED_HEADERS))

    return check
