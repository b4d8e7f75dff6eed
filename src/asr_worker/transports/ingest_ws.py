"""`GET /v1/audio/{interaction_id}`: the generic audio ingest WebSocket (contract section 4).

Binary messages are audio in the declared format; `{"type": "end"}` ends the call. The call's
events come back as JSON text messages; after `session_ended` the socket is closed with 1000.
A second socket for the same call feeds the same session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Final

from aiohttp import WSMsgType, web

from ..core.audio import AudioFormat, AudioFormatError
from ..http.keys import WORKER
from ..runtime.hub import Subscription
from ..runtime.manager import SessionRefused
from ..runtime.runner import SessionRunner
from .common import (
    CLOSE_BAD_INPUT,
    CLOSE_NORMAL,
    REFUSAL_CLOSE_CODES,
    BadRequest,
    check_id,
    check_optional_id,
    dumps,
    refuse,
    socket_error,
    upgrade_refusal,
)

log = logging.getLogger("asr_worker.ingest")

_END_TYPES: Final = frozenset({"end", "closestream"})
_IGNORED_TYPES: Final = frozenset({"keepalive"})


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/audio/{interaction_id}", audio_socket)]


async def audio_socket(request: web.Request) -> web.StreamResponse:
    worker = request.app[WORKER]
    ws = web.WebSocketResponse(max_msg_size=worker.settings.max_message_bytes, heartbeat=None)
    refusal = upgrade_refusal(request, ws, worker.draining)
    if refusal is not None:
        return refusal
    await ws.prepare(request)
    try:
        interaction_id = check_id(request.match_info.get("interaction_id"), "interaction_id")
        query = request.query
        tenant_id = check_optional_id(query.get("tenant_id"), "tenant_id")
        fmt = AudioFormat.parse(
            query.get("encoding", "linear16"), query.get("sample_rate", "8000"), query.get("channels", "1")
        )
    except (BadRequest, AudioFormatError) as exc:
        log.info("ingest refused", extra={"reason": str(exc), "path": request.path[:200]})
        await refuse(ws, "bad_request", str(exc), CLOSE_BAD_INPUT)
        return ws
    try:
        runner = worker.manager.open_session(interaction_id, tenant_id, fmt)
    except SessionRefused as exc:
        log.info("ingest refused", extra={"interaction_id": interaction_id, "reason": exc.code})
        await refuse(ws, exc.code, exc.message, REFUSAL_CLOSE_CODES.get(exc.code, CLOSE_BAD_INPUT))
        return ws
    # Subscribe before anything can yield, so a new call's socket sees its session_started.
    subscription = worker.hub.subscribe(interaction_id)
    source_id = runner.attach()
    try:
        async with asyncio.TaskGroup() as tg:
            pump = tg.create_task(_send_events(ws, subscription))
            await _receive(ws, runner)
            subscription.close()  # the client is gone: no one to send to
            await pump
    finally:
        subscription.close()
        runner.detach(source_id)
    return ws


async def _receive(ws: web.WebSocketResponse, runner: SessionRunner) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            runner.feed(msg.data)
        elif msg.type is WSMsgType.TEXT:
            _control(msg.data, runner)
        elif msg.type is WSMsgType.ERROR:
            code, message = socket_error(ws, msg.data)
            runner.error(code, message)
            return


class ControlError(ValueError):
    """A text message the ingest socket does not take; `code` and `message` go in the error event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_control(text: str) -> str:
    """A text message to the command it carries ("end" or "keepalive"), or ControlError."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise ControlError(
            "bad_message", 'a text message must be JSON such as {"type": "end"}; ignored'
        ) from None
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str):
        raise ControlError(
            "bad_message", "a text message must be a JSON object with a string `type`; ignored"
        )
    if kind.lower() in _END_TYPES:
        return "end"
    if kind.lower() in _IGNORED_TYPES:
        return "keepalive"
    raise ControlError("unknown_message", f"unknown message type {kind[:40]!r}; known: end; ignored")


def _control(text: str, runner: SessionRunner) -> None:
    try:
        command = parse_control(text)
    except ControlError as exc:
        runner.error(exc.code, exc.message)
        return
    if command == "end":
        runner.end("end")


async def _send_events(ws: web.WebSocketResponse, subscription: Subscription) -> None:
    """Forward the call's events; close the socket normally once the session has ended."""
    async for event in subscription:
        if ws.closed:
            return
        try:
            await ws.send_str(dumps(event))
        except ConnectionError:
            return
        if event.get("type") == "session_ended":
            with contextlib.suppress(ConnectionError):
                await ws.close(code=CLOSE_NORMAL, message=b"session ended")
            return
