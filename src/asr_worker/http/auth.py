"""Who may use each route: every route declares what it needs, and nothing is open by accident.

A `Route` names its method, path and handler and how it is guarded: a scope (`stream`,
`watch`, `operate`) that the request's key must carry, a route's own guard where its platform
authenticates another way (Twilio's signature), or `OPEN` (health, metrics, the page's shell)
or `SELF_CHECKED` (AudioHook, whose handler checks Genesys's API key and signature itself). The
middleware checks the key in the forms `credentials.presented_credentials` reads (a bearer or
Deepgram `Token` header, HTTP Basic with the key as the password, `?token=` on GET, OpenAI's
and Deepgram's WebSocket subprotocols), in constant time against every configured key, and
hands the handler the request's `Principal` (`principal_of`). A refusal is one log line
(rate-limited) and a 401 or 403 with a JSON reason.

A key may hold only so many long-lived connections at once (WebSockets and event streams,
`ASR_MAX_CONNECTIONS_PER_KEY`): past that a new one is refused with 429.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..credentials import UNAUTHORIZED_HEADERS, presented_credentials
from ..errors import AccessDenied
from ..tenancy import Keyring, Principal, Scope
from .limits import ConnectionLimits

log = logging.getLogger("asr_worker.auth")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Guard = Callable[[web.Request], Principal]  # raises AccessDenied


class _Open:
    """A route anyone may use (health, metrics, the page's shell)."""


class _SelfChecked:
    """A route whose handler checks its platform's own credentials (AudioHook)."""


class _AnyKey:
    """A route any valid key may use, whatever its scopes (`/ready`, for a load balancer)."""


OPEN: Final = _Open()
SELF_CHECKED: Final = _SelfChecked()
ANY_KEY: Final = _AnyKey()
Access = Scope | Guard | _Open | _SelfChecked | _AnyKey


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    access: Access
    long_lived: bool = False  # a WebSocket or an event stream: counts toward its key's cap


_PRINCIPAL: Final = web.RequestKey("principal", Principal)


def principal_of(request: web.Request) -> Principal:
    """The principal the middleware authenticated this request as."""
    principal: object = request.get(_PRINCIPAL)
    if not isinstance(principal, Principal):
        raise AccessDenied("unauthorized", "this route was reached without authentication")
    return principal


def presented_tokens(request: web.Request) -> list[str]:
    """Every credential the request carries, in the accepted forms."""
    return presented_credentials(
        request.method,
        request.headers.get("Authorization", ""),
        request.query,
        request.headers.get("Sec-WebSocket-Protocol", ""),
    )


def key_guard(keyring: Keyring, scope: Scope) -> Guard:
    """A guard that wants a key carrying `scope`."""

    def guard(request: web.Request) -> Principal:
        return keyring.authorize(presented_tokens(request), scope)

    return guard


def denied(error: AccessDenied, path: str, peer: str | None) -> web.Response:
    """The answer to a refused request, with one log line (no query: it may hold a key)."""
    log.info("access denied", extra={"path": path[:200], "reason": error.code, "peer": peer})
    headers = dict(UNAUTHORIZED_HEADERS) if error.status == 401 else {}
    return web.json_response(
        {"error": error.code, "message": error.message}, status=error.status, headers=headers
    )


def access_middleware(keyring: Keyring, routes: list[Route], limits: ConnectionLimits) -> Middleware:
    """Check every request against its route's declared access; refuse a route that declared
    none (deny by default)."""
    guards: dict[tuple[str, str], Route] = {(route.method, route.path): route for route in routes}

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = guards.get((request.method, resource.canonical)) if resource is not None else None
        if route is None and request.method == "HEAD" and resource is not None:
            route = guards.get(("GET", resource.canonical))
        # No such route (aiohttp answers 404 or 405): only for a key, so that nobody learns
        # without one what the worker serves.
        access = ANY_KEY if route is None else route.access
        if isinstance(access, _Open | _SelfChecked):
            return await handler(request)
        try:
            if isinstance(access, _AnyKey):
                principal = keyring.authorize_any(presented_tokens(request))
            elif isinstance(access, Scope):
                principal = keyring.authorize(presented_tokens(request), access)
            else:
                principal = access(request)
        except AccessDenied as exc:
            return denied(exc, request.path, request.remote)
        request[_PRINCIPAL] = principal
        if route is None or not route.long_lived:
            return await handler(request)
        if not limits.enter_key(principal.key_id):
            return web.json_response(
                {"error": "too_many_connections", "message": "this key holds its most connections at once"},
                status=429,
            )
        try:
            return await handler(request)
        finally:
            limits.leave_key(principal.key_id)

    return check
