"""Asterisk ARI `externalMedia`: plain RTP to a port the worker hands out, one call per port.

    POST /v1/rtp/{interaction_id}?format=ulaw      -> 201 {"host", "port", "format", ...}
    DELETE /v1/rtp/{interaction_id}                -> 200 when the call is ended

An ARI application asks for a port for the call it is about to fork, then creates the
externalMedia channel with `external_host=HOST:PORT` and `format=ulaw` (or `alaw`); the RTP
that Asterisk sends there becomes the call's audio (mono), from the first address that sends
(which must be in `ASR_SIPREC_ALLOW`), and no other. The call ends on DELETE (the app's
`StasisEnd`), or when no RTP came for `ASR_SIPREC_RTP_TIMEOUT_S`.

Access: `stream` scope. Asking for a port starts a call and says where its audio comes from,
which is what a key that opens an ingest socket may do; a key that may only watch or operate
calls cannot start one this way.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from ...core.audio import AudioFormat, Encoding
from ...core.call_options import CallOptions
from ...core.ids import CallKey, check_id
from ...errors import AccessDenied, BadRequest, SessionRefused
from ...http.auth import Route, principal_of
from ...tenancy import Scope
from ..host import CallHost
from .media import CallMedia, Leg
from .rtp import RtpReceiver
from .server import SiprecServer

FORMATS: Final = {"ulaw": (Encoding.MULAW, 0), "alaw": (Encoding.ALAW, 8)}
_REFUSAL_STATUS: Final = {"capacity": 503, "overloaded": 503, "draining": 503}


def routes(host: CallHost, server: SiprecServer) -> list[Route]:
    async def allocate(request: web.Request) -> web.StreamResponse:
        return await _allocate(host, server, request)

    async def release(request: web.Request) -> web.StreamResponse:
        return await _release(host, server, request)

    return [
        Route("POST", "/v1/rtp/{interaction_id}", allocate, Scope.STREAM),
        Route("DELETE", "/v1/rtp/{interaction_id}", release, Scope.STREAM),
    ]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def _allocate(host: CallHost, server: SiprecServer, request: web.Request) -> web.StreamResponse:
    try:
        interaction_id = check_id(request.match_info.get("interaction_id"), "interaction_id")
        key = CallKey(principal_of(request).tenant_of_call(request.query.get("tenant_id")), interaction_id)
        options = CallOptions.from_query(request.query)
    except (BadRequest, AccessDenied) as exc:
        return _error(exc.status if isinstance(exc, AccessDenied) else 400, exc.code, exc.message)
    name = request.query.get("format", "ulaw").lower()
    if name not in FORMATS:
        return _error(400, "bad_request", f"format must be one of {', '.join(FORMATS)}, not {name[:20]!r}")
    if host.draining:
        return _error(503, "draining", "the worker is shutting down; send the call to another worker")
    if key in server.external:
        return _error(409, "conflict", f"call {interaction_id} already has an RTP port")
    law, payload_type = FORMATS[name]
    sockets = server.ports.open(1)
    if sockets is None:
        return _error(503, "no_ports", "no free RTP port")
    fmt = AudioFormat(law, 8000, 1)
    try:
        source = host.manager.join(key, fmt, options=options)
    except SessionRefused as exc:
        server.ports.release(sockets[0])
        return _error(_REFUSAL_STATUS.get(exc.code, 409), exc.code, exc.message)
    media = CallMedia(source, fmt, server.now())
    receiver = RtpReceiver(
        law=law, payloads={payload_type: law}, telephone_event=None, jitter_ms=server.options.jitter_ms
    )
    leg = Leg(0, None, sockets[0], receiver, None, 0)
    media.add(leg, server.now)
    allow = server.options.allowed
    handler = leg.socket.handler
    assert handler is not None

    def guarded(data: bytes, address: tuple[str, int]) -> None:
        if leg.latched is None and not allow(address[0]):
            media.counts.foreign += 1
            return
        handler(data, address)

    leg.socket.handler = guarded
    server.external[key] = media
    server.wake()
    address = server.options.media_address or _local_address(request, server.ports.host)
    return web.json_response(
        {
            "interaction_id": interaction_id,
            "tenant_id": key.tenant,
            "host": address,
            "port": leg.socket.port,
            "external_host": f"{address}:{leg.socket.port}",
            "format": name,
        },
        status=201,
    )


async def _release(host: CallHost, server: SiprecServer, request: web.Request) -> web.StreamResponse:
    try:
        interaction_id = check_id(request.match_info.get("interaction_id"), "interaction_id")
        key = CallKey(principal_of(request).tenant_of_call(request.query.get("tenant_id")), interaction_id)
    except (BadRequest, AccessDenied) as exc:
        return _error(exc.status if isinstance(exc, AccessDenied) else 400, exc.code, exc.message)
    if not server.end_external(key, "end"):
        return _error(404, "not_found", f"no externalMedia call {interaction_id}")
    return web.json_response({"interaction_id": interaction_id, "ended": True})


def _local_address(request: web.Request, bound: str) -> str:
    if bound not in ("0.0.0.0", "::", ""):
        return bound
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return str(sockname[0]) if sockname else "127.0.0.1"
