"""What every WebSocket transport needs: id rules, JSON framing, refusals that say why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

from aiohttp import WebSocketError, WSCloseCode, WSMessage, WSMsgType, web

from ..core.events import Refusal
from ..core.ids import ANY_TENANT, CallKey
from ..errors import CodedError
from ..jsonwire import dumps_event_text

if TYPE_CHECKING:
    from ..tenancy import Principal
    from .host import CallHost

# Close codes: 1008 policy (bad input), 1013 try again later (capacity, draining, ending).
CLOSE_BAD_INPUT: Final = int(WSCloseCode.POLICY_VIOLATION)
CLOSE_TOO_BIG: Final = int(WSCloseCode.MESSAGE_TOO_BIG)
CLOSE_TRY_LATER: Final = int(WSCloseCode.TRY_AGAIN_LATER)
CLOSE_NORMAL: Final = int(WSCloseCode.OK)
REFUSAL_CLOSE_CODES: Final = {
    "capacity": CLOSE_TRY_LATER,
    "overloaded": CLOSE_TRY_LATER,
    "engine_full": CLOSE_TRY_LATER,
    "too_many_sources": CLOSE_TRY_LATER,
    "draining": CLOSE_TRY_LATER,
    "session_ending": CLOSE_TRY_LATER,
}


# The HTTP answers before a call's socket opens: 426 when the request is no WebSocket upgrade,
# 503 while the worker drains (so the platform retries another worker before a socket opened).
NOT_AN_UPGRADE: Final = (
    426,
    {"error": "websocket_required", "message": "this endpoint takes a WebSocket upgrade"},
)
DRAINING: Final = (
    503,
    {"error": "draining", "message": "the worker is shutting down; use another worker"},
)


def close_code_for(error: CodedError) -> int:
    """The WebSocket close code a refusal goes with: 1013 (try again later) for what may pass
    (capacity, draining, a call ending), 1008 for what was wrong with the request."""
    return REFUSAL_CLOSE_CODES.get(error.code, CLOSE_BAD_INPUT)


def upgrade_refusal(request: web.Request, ws: web.WebSocketResponse, draining: bool) -> web.Response | None:
    """Why this request cannot become a call's WebSocket, as the HTTP answer to give, or None."""
    refusal = NOT_AN_UPGRADE if not ws.can_prepare(request).ok else DRAINING if draining else None
    if refusal is None:
        return None
    status, body = refusal
    return web.json_response(body, status=status)


def error_event(code: str, message: str, interaction_id: str | None = None) -> Refusal:
    return Refusal(code, message, interaction_id)


def close_reason(message: str) -> bytes:
    """A WebSocket close reason: at most 123 bytes of UTF-8, so cut on a character boundary."""
    return message.encode()[:120].decode(errors="ignore").encode()


async def refuse(ws: web.WebSocketResponse, code: str, message: str, close_code: int) -> None:
    """Tell the client why (an `error` event), then close with a code and a short reason."""
    if not ws.closed:
        await ws.send_str(dumps_event_text(error_event(code, message)))
        await ws.close(code=close_code, message=close_reason(message))


def socket_error(ws: web.WebSocketResponse, data: object) -> tuple[str, str]:
    """What went wrong on a socket that failed mid-call (the ERROR message's data), as an error
    code and message."""
    exc = data if isinstance(data, BaseException) else ws.exception()
    return socket_failure(exc, isinstance(exc, WebSocketError) and exc.code == WSCloseCode.MESSAGE_TOO_BIG)


def socket_failure(exc: object, too_large: bool) -> tuple[str, str]:
    """A call's socket failed (on aiohttp or the raw ingest path): the error code and message
    its call is told."""
    if too_large:
        return "too_large", f"{exc!s:.160}; the socket is closed, the call goes on"
    return "socket_error", f"the socket failed: {exc!s:.160}"


async def first_within(
    ws: web.WebSocketResponse, host: CallHost, *, with_close: bool = False
) -> AsyncIterator[WSMessage]:
    """A call socket's messages, the first of which must come within
    `ASR_FIRST_MESSAGE_TIMEOUT_S` of the upgrade: a socket that says nothing is closed (1008)
    and counted, so silent sockets cannot hold the worker's connections. After the first
    message, a quiet socket is a call on hold, and stays.

    `with_close`: the client's close frame is yielded too (a CLOSE message, the last), for the
    platforms whose way to end a call is to close the socket; a connection that is merely lost
    ends the iteration as always."""
    timeout_s = host.http.first_message_timeout_s
    try:
        first = await ws.receive(timeout=timeout_s)
    except TimeoutError:
        host.limits.refuse("first_message_timeout")
        why = f"no message within {timeout_s:g} s of the upgrade"
        await refuse(ws, "first_message_timeout", why, CLOSE_BAD_INPUT)
        return
    if not with_close:
        if first.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return  # as aiohttp's own iteration ends
        yield first
        async for later in ws:
            yield later
        return
    msg = first
    while msg.type not in (WSMsgType.CLOSING, WSMsgType.CLOSED):
        yield msg
        if msg.type is WSMsgType.CLOSE:
            return
        msg = await ws.receive()


def call_named(host: CallHost, principal: Principal, interaction_id: str, claimed: str | None) -> CallKey:
    """The call a watcher or operator means by an interaction id: in its key's tenant. A key
    that names tenants and names none (the worker token, a keyless development worker) means
    the call with this id in whichever tenant has one; with none yet (or several), the
    `ANY_TENANT` key, which a watcher's subscription matches in any tenant."""
    if (claimed is None or claimed == "") and principal.names_tenant:
        tenants = {
            runner.key.tenant for runner in host.manager.sessions if runner.interaction_id == interaction_id
        }
        tenants |= set(host.hub.tenants_of(interaction_id)) if not tenants else set()
        return CallKey(tenants.pop() if len(tenants) == 1 else ANY_TENANT, interaction_id)
    return CallKey(principal.tenant_of_call(claimed), interaction_id)
