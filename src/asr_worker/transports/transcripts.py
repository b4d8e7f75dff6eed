"""A call's transcript document: `GET /v1/calls/{interaction_id}/transcript`, while the call
runs and for `ASR_TRANSCRIPT_KEEP_S` after it ended, from any worker on the bus path.

JSON by default; `?format=vtt`, `srt` or `txt` writes it as WebVTT, SubRip or plain text
(`transcripts/formats.py`). A key with `watch` sees its tenant's calls; one that names tenants
(the worker token) picks the tenant with `?tenant_id=`, as the call's events do. 404 when the
worker keeps no document of the call (never started, expired, or another tenant's).
"""

from __future__ import annotations

from aiohttp import web

from ..core.ids import check_id
from ..errors import AccessDenied, BadRequest
from ..http.auth import Route, principal_of
from ..tenancy import Scope
from ..transcripts.formats import FORMATS, render
from .common import call_named
from .host import CallHost, bind


def routes(host: CallHost) -> list[Route]:
    return [Route("GET", "/v1/calls/{interaction_id}/transcript", bind(host, transcript), Scope.WATCH)]


async def transcript(host: CallHost, request: web.Request) -> web.Response:
    fmt = request.query.get("format", "json").strip().lower()
    try:
        if fmt not in FORMATS:
            raise BadRequest(f"format must be one of {', '.join(FORMATS)}")
        interaction_id = check_id(request.match_info.get("interaction_id"), "interaction_id")
        call = call_named(host, principal_of(request), interaction_id, request.query.get("tenant_id"))
    except BadRequest as exc:
        return web.json_response({"error": "bad_request", "message": exc.message}, status=400)
    except AccessDenied as exc:
        return web.json_response({"error": exc.code, "message": exc.message}, status=exc.status)
    document = await host.transcripts.document(call)
    if document is None:
        return web.json_response(
            {"error": "not_found", "message": f"no transcript of call {interaction_id} is kept here"},
            status=404,
        )
    return web.Response(
        body=render(document, fmt), headers={"Content-Type": FORMATS[fmt], "Cache-Control": "no-store"}
    )
