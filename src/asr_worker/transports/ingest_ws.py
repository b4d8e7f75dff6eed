"""`GET /v1/audio/{interaction_id}`: the generic audio ingest WebSocket.

Binary messages are audio in the declared format; `{"type": "end"}` ends the call. The call's
events come back as JSON text messages; after `session_ended` the socket is closed with 1000.
A second socket for the same call feeds the same session.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from ..core.events import SessionEnded
from ..errors import CodedError
from ..http.auth import Route, principal_of
from ..jsonwire import dumps_event_text
from ..runtime.hub import Subscription
from ..tenancy import Scope
from .common import CLOSE_NORMAL, close_code_for, first_within, refuse, socket_error, upgrade_refusal
from .host import CallHost, bind
from .ingest_call import IngestCall


def routes(host: CallHost) -> list[Route]:
    return [
        Route("GET", "/v1/audio/{interaction_id}", bind(host, audio_socket), Scope.STREAM, long_lived=True)
    ]


async def audio_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    """The ingest socket on aiohttp: for a client whose upgrade came on a kept-alive connection
    (aiohttp's client reuses them), which the connection router has already given to aiohttp."""
    # no permessage-deflate, like the raw path: audio hardly compresses and deflate costs CPU
    ws = web.WebSocketResponse(max_msg_size=host.http.max_message_bytes, heartbeat=None, compress=False)
    refusal = upgrade_refusal(request, ws, host.draining)
    if refusal is not None:
        return refusal
    await ws.prepare(request)
    try:
        call = IngestCall.open(
            host, principal_of(request), request.match_info.get("interaction_id"), request.query, request.path
        )
    except CodedError as exc:
        await refuse(ws, exc.code, exc.message, close_code_for(exc))
        return ws
    try:
        async with asyncio.TaskGroup() as tg:
            pump = tg.create_task(_send_events(ws, call.subscription))
            await _receive(ws, call, host)
            call.subscription.close()  # the client is gone: no one to send to
            await pump
    finally:
        call.close()
    return ws


async def _receive(ws: web.WebSocketResponse, call: IngestCall, host: CallHost) -> None:
    feed = call.source.feed
    async for msg in first_within(ws, host):
        if msg.type is WSMsgType.BINARY:
            feed(msg.data)
        elif msg.type is WSMsgType.TEXT:
            call.text(msg.data)
        elif msg.type is WSMsgType.ERROR:
            code, message = socket_error(ws, msg.data)
            call.source.error(code, message)
            return


async def _send_events(ws: web.WebSocketResponse, subscription: Subscription) -> None:
    """Forward the call's events; close the socket normally once the session has ended."""
    async for event in subscription:
        if ws.closed:
            return
        try:
            await ws.send_str(dumps_event_text(event))
        except ConnectionError:
            return
        if isinstance(event, SessionEnded):
            with contextlib.suppress(ConnectionError):
                await ws.close(code=CLOSE_NORMAL, message=b"session ended")
            return
