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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from aiohttp import WSMsgType, web

from ..core.audio import AudioFormat, AudioFormatError
from ..core.events import SessionEnded
from ..http.keys import WORKER
from ..jsonwire import dumps_event_text
from ..runtime.hub import Subscription
from ..runtime.manager import SessionRefused
from ..runtime.runner import SessionRunner

if TYPE_CHECKING:
    from ..worker import Worker

from .common import (
    CLOSE_BAD_INPUT,
    CLOSE_NORMAL,
    REFUSAL_CLOSE_CODES,
    BadRequest,
    check_id,
    check_optional_id,
    refuse,
    socket_error,
    upgrade_refusal,
)

log = logging.getLogger("asr_worker.ingest")

_END_TYPES: Final = frozenset({"end", "closestream"})
_IGNORED_TYPES: Final = frozenset({"keepalive"})


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/audio/{interaction_id}", audio_socket)]


class Refused(Exception):
    """Why a socket cannot join a call; sent as an `error` event, then a close with `close_code`."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code, self.message, self.close_code = code, message, close_code


class IngestCall:
    """One ingest socket's part in its call, whichever socket implementation carries it:
    aiohttp's (`audio_socket`) or the raw one served on the loop's transport (`ingest_raw`)."""

    def __init__(self, runner: SessionRunner, subscription: Subscription) -> None:
        self.runner = runner
        self.subscription = subscription
        self._source_id: str | None = runner.attach()

    @classmethod
    def open(
        cls, worker: Worker, interaction_id: str | None, query: Mapping[str, str], path: str
    ) -> IngestCall:
        """Join (or start) the call the socket's path and query name, or raise Refused."""
        try:
            checked_id = check_id(interaction_id, "interaction_id")
            tenant_id = check_optional_id(query.get("tenant_id"), "tenant_id")
            fmt = AudioFormat.parse(
                query.get("encoding", "linear16"),
                query.get("sample_rate", "8000"),
                query.get("channels", "1"),
            )
        except (BadRequest, AudioFormatError) as exc:
            log.info("ingest refused", extra={"reason": str(exc), "path": path[:200]})
            raise Refused("bad_request", str(exc), CLOSE_BAD_INPUT) from None
        try:
            runner = worker.manager.open_session(checked_id, tenant_id, fmt)
        except SessionRefused as exc:
            log.info("ingest refused", extra={"interaction_id": checked_id, "reason": exc.code})
            raise Refused(exc.code, exc.message, REFUSAL_CLOSE_CODES.get(exc.code, CLOSE_BAD_INPUT)) from None
        # Subscribe before anything can yield, so a new call's socket sees its session_started.
        return cls(runner, worker.hub.subscribe(checked_id))

    def text(self, text: str) -> None:
        """A control message: `end` ends the call; anything unknown is an `error` event."""
        try:
            command = parse_control(text)
        except ControlError as exc:
            self.runner.error(exc.code, exc.message)
            return
        if command == "end":
            self.runner.end("end")

    def close(self) -> None:
        """The socket is gone: stop its events and leave the call (which goes on, or ends
        after its grace period if this was its last source). Idempotent."""
        self.subscription.close()
        if self._source_id is not None:
            self.runner.detach(self._source_id)
            self._source_id = None


async def audio_socket(request: web.Request) -> web.StreamResponse:
    """The ingest socket on aiohttp: for a client whose upgrade came on a kept-alive connection
    (aiohttp's client reuses them), which the connection router has already given to aiohttp."""
    worker = request.app[WORKER]
    # no permessage-deflate, like the raw path: audio hardly compresses and deflate costs CPU
    ws = web.WebSocketResponse(max_msg_size=worker.settings.max_message_bytes, heartbeat=None, compress=False)
    refusal = upgrade_refusal(request, ws, worker.draining)
    if refusal is not None:
        return refusal
    await ws.prepare(request)
    try:
        call = IngestCall.open(worker, request.match_info.get("interaction_id"), request.query, request.path)
    except Refused as exc:
        await refuse(ws, exc.code, exc.message, exc.close_code)
        return ws
    try:
        async with asyncio.TaskGroup() as tg:
            pump = tg.create_task(_send_events(ws, call.subscription))
            await _receive(ws, call)
            call.subscription.close()  # the client is gone: no one to send to
            await pump
    finally:
        call.close()
    return ws


async def _receive(ws: web.WebSocketResponse, call: IngestCall) -> None:
    feed = call.runner.feed
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            feed(msg.data)
        elif msg.type is WSMsgType.TEXT:
            call.text(msg.data)
        elif msg.type is WSMsgType.ERROR:
            code, message = socket_error(ws, msg.data)
            call.runner.error(code, message)
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
