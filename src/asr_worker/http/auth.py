"""Bearer-token authentication for everything but /health, /metrics and the page's shell.

Accepted forms (contract section 2): `Authorization: Bearer TOKEN`; HTTP Basic with TOKEN as
the password (telephony platforms such as Exotel dial `wss://KEY:TOKEN@host/...`); and
`?token=TOKEN` on GET requests, because browsers cannot set headers on WebSockets or
EventSource. Comparison is constant-time; the token is never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..config import Secret

log = logging.getLogger("asr_worker.auth")

# Health and metrics are for probes and scrapers; the page's shell and assets hold no call
# data (everything it shows comes from the API, which needs the token it carries along).
OPEN_PATHS: Final = frozenset({"/health", "/metrics", "/"})
OPEN_PREFIXES: Final = ("/static/",)
UNAUTHORIZED_HEADERS: Final = (("WWW-Authenticate", 'Bearer realm="asr-worker"'),)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def presented_tokens(request: web.Request) -> list[str]:
    """Every credential the request carries, in the accepted forms."""
    return presented_credentials(request.method, request.headers.get("Authorization", ""), request.query)


def presented_credentials(method: str, header: str, query: Mapping[str, str]) -> list[str]:
    """Every credential in a request's Authorization header and (on GET) its query."""
    tokens: list[str] = []
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        tokens.append(value.strip())
    elif scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):  # not base64, not ASCII text, or not UTF-8 inside
            decoded = ""
        _, sep, password = decoded.partition(":")
        if sep:
            tokens.append(password)
    if method == "GET" and "token" in query:
        tokens.append(query["token"])
    return tokens


def token_matches(expected: Secret, presented: list[str]) -> bool:
    # Header and query text may hold lone surrogates (undecodable bytes): surrogatepass
    # encodes anything, and such a candidate simply does not match.
    want = expected.reveal().encode("utf-8", "surrogatepass")
    # compare against every presented form, without stopping early, in constant time each
    results = [
        hmac.compare_digest(want, candidate.encode("utf-8", "surrogatepass")) for candidate in presented
    ]
    return any(results)


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


def unauthorized(presented: list[str], path: str, peer: str | None) -> dict[str, str]:
    """Log one line for a refused request and give the 401 body to answer it with."""
    reason = "a bearer token is required" if not presented else "the token is not valid"
    log.info("unauthorized", extra={"path": path[:200], "reason": reason, "peer": peer})
    return {
        "error": "unauthorized",
        "message": f"{reason}: send Authorization: Bearer TOKEN (or ?token= on GET)",
    }
