"""`POST /v1/calls/{interaction_id}/pause` and `/resume`: an operator (an agent desktop, a
payment IVR, a supervisor) stops the call's audio reaching the provider while a card is read
out, and restarts it after: PCI DSS's "pause and resume", on every route a call can come by.

The pause is the session core's own input, so it acts the same whichever sources feed the
call (the ingest socket, Twilio, Exotel, AudioHook, the bus): while paused no audio of the
call is sent to the provider (keep-alives hold its connection), the call's time runs on, and
the call's watchers get `paused` and `resumed` events at the call times the gap began and
ended. An AudioHook session carrying the call is asked to pause too (`transports.audiohook`
sends Genesys `pause` on the call's `paused` event).

Scope `operate`, within the key's tenant (`?tenant_id=` for a key that names tenants, as on
every call route). Answers: 200 `{"interaction_id", "paused", "changed", "at"}` (`changed`
false when the call already was in that state), 404 when the tenant has no such live call,
409 while the call is ending.
"""

from __future__ import annotations

from aiohttp import web

from ..core.ids import check_id
from ..core.session import Phase
from ..errors import AccessDenied, BadRequest
from ..http.auth import Route, principal_of
from ..tenancy import Scope
from .common import call_named
from .host import CallHost, bind


def routes(host: CallHost) -> list[Route]:
    return [
        Route("POST", "/v1/calls/{interaction_id}/pause", bind(host, pause), Scope.OPERATE),
        Route("POST", "/v1/calls/{interaction_id}/resume", bind(host, resume), Scope.OPERATE),
    ]


async def pause(host: CallHost, request: web.Request) -> web.Response:
    return _act(host, request, pausing=True)


async def resume(host: CallHost, request: web.Request) -> web.Response:
    return _act(host, request, pausing=False)


def _act(host: CallHost, request: web.Request, *, pausing: bool) -> web.Response:
    try:
        interaction_id = check_id(request.match_info.get("interaction_id"), "interaction_id")
        call = call_named(host, principal_of(request), interaction_id, request.query.get("tenant_id"))
    except BadRequest as exc:
        return web.json_response({"error": exc.code, "message": exc.message}, status=400)
    except AccessDenied as exc:
        return web.json_response({"error": exc.code, "message": exc.message}, status=exc.status)
    runner = host.manager.get(call)
    if runner is None:
        return web.json_response(
            {"error": "not_found", "message": "this tenant has no live call with that interaction_id"},
            status=404,
        )
    if pausing and runner.status.phase is not Phase.ACTIVE:
        return web.json_response(
            {"error": "session_ending", "message": "the call is ending; there is nothing to pause"},
            status=409,
        )
    changed = runner.pause() if pausing else runner.resume()
    host.metrics.call_controls.labels("pause" if pausing else "resume", str(changed).lower()).inc()
    return web.json_response(
        {
            "interaction_id": interaction_id,
            "paused": runner.status.paused,
            "changed": changed,
            "at": round(runner.status.audio_s, 3),
        }
    )
