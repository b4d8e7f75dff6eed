"""The ingest WebSocket served straight on the event loop's transport.

At 500 calls the ingest socket takes 25,000 audio frames a second. Through aiohttp each one
was a parse, a queue, a future and a task resume before it reached the session; here the
frame is cut out of the bytes in `data_received` (`wsframes.FrameSplitter`) and fed to the
call's session there and then. The rest of the WebSocket protocol (handshake, text, ping,
close, fragments, limits, errors) is websockets' sans-I/O `ServerProtocol`, and the call
itself is `ingest_call.IngestCall`, the same one aiohttp's route serves. One task per socket
sends the call's events, owned by the server's task group.

The connection router (`http.server`) hands this protocol every new connection whose first
request line is `GET /v1/audio/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Final, cast

from websockets import http11
from websockets.datastructures import Headers
from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from yarl import URL

from ..core.events import SessionEnded
from ..credentials import UNAUTHORIZED_HEADERS, presented_credentials, token_matches, unauthorized
from ..errors import BadRequest, SessionRefused
from ..http.options import MAX_REQUEST_LINE_BYTES
from ..jsonwire import dumps_event
from ..wsframes import FrameSplitter
from .common import (
    CLOSE_NORMAL,
    DRAINING,
    NOT_AN_UPGRADE,
    close_code_for,
    close_reason,
    error_event,
    socket_failure,
)
from .host import CallHost
from .ingest_call import IngestCall

log = logging.getLogger("asr_worker.ingest")
# websockets logs every opened and closed connection at INFO; aiohttp's socket did not.
_PROTOCOL_LOG: Final = logging.getLogger("asr_worker.ingest.websocket")
_PROTOCOL_LOG.setLevel(logging.WARNING)

PATH_PREFIX: Final = "/v1/audio/"
MAX_HEAD_BYTES: Final = 64 * 1024  # a request's line and headers
CLOSE_TIMEOUT_S: Final = 10.0  # how long a client has to answer our close frame (aiohttp's default)
FIRST_LINE: Final = b"GET " + PATH_PREFIX.encode()
# websockets reads a request line of at most 8192 bytes (WEBSOCKETS_MAX_LINE_LENGTH, read at
# each parse); a query naming the most keyterms a call may have is longer. The head as a whole
# stays capped by MAX_HEAD_BYTES before websockets sees it.
http11.MAX_LINE_LENGTH = max(http11.MAX_LINE_LENGTH, MAX_REQUEST_LINE_BYTES)

Spawn = Callable[[Coroutine[object, object, None]], asyncio.Task[None]]


class IngestServer:
    """The raw ingest sockets of one serving run: what the connection router (`http.server`)
    hands every connection whose request line starts with `first_line`."""

    first_line: Final = FIRST_LINE

    def __init__(self, host: CallHost, spawn: Spawn) -> None:
        self._host = host
        self._spawn = spawn  # the serving task group's: each socket's event sender is its task
        self._open: set[IngestProtocol] = set()

    def protocol(self) -> IngestProtocol:
        return IngestProtocol(self._host, self._spawn, self._open)

    @property
    def connections(self) -> int:
        return len(self._open)

    def close(self) -> None:
        for connection in list(self._open):
            connection.abort()


class IngestProtocol(asyncio.Protocol):
    """One ingest connection, from its HTTP request to its close."""

    def __init__(self, host: CallHost, spawn: Spawn, connections: set[IngestProtocol]) -> None:
        self._host = host
        self._spawn = spawn
        self._connections = connections
        max_bytes = host.http.max_message_bytes
        self._ws = ServerProtocol(max_size=max_bytes, logger=_PROTOCOL_LOG)
        self._transport: asyncio.Transport | None = None
        self._call: IngestCall | None = None
        self._splitter: FrameSplitter | None = None
        self._max_bytes = max_bytes
        self._fragments: list[bytes] = []  # a fragmented message's frames so far (websockets caps the total)
        self._fragments_text = False
        self._head: bytes | None = b""  # the request's head until it is complete
        self._close_timer: asyncio.TimerHandle | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._lost = asyncio.Event()

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._splitter is not None:
            self._splitter.feed(data)  # the hot path: audio goes to the session from here
        elif self._head is not None:
            self._request_bytes(data)
        else:  # refused after the upgrade, or failed: websockets finishes the close handshake
            self._other_frame(data)

    def _request_bytes(self, data: bytes) -> None:
        """Collect the request's head; give websockets exactly that, so any frame bytes sent
        right behind it start the splitter on a frame boundary."""
        assert self._head is not None
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._head = None
                self._answer(431, {"error": "bad_request", "message": "request headers too large"})
                self._flush()
            return
        head, rest = self._head[: end + 4], self._head[end + 4 :]
        self._head = None
        self._ws.receive_data(head)
        for event in self._ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
        self._flush()
        if rest:
            self.data_received(rest)

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._splitter = None
        self._writable.set()
        self._lost.set()
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._call is not None:  # a dropped socket: the call's grace period decides its end
            self._call.close()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def abort(self) -> None:
        """Drop the connection (shutdown, after every call has ended)."""
        if self._transport is not None:
            self._transport.abort()

    # --- the opening handshake ---------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        host, ws = self._host, self._ws
        url = URL(request.path)
        token = host.http.worker_token
        if token is not None:
            presented = presented_credentials("GET", request.headers.get("Authorization", ""), url.query)
            if not token_matches(token, presented):
                self._answer(401, unauthorized(presented, url.path, self._peer()), UNAUTHORIZED_HEADERS)
                return
        response = ws.accept(request)
        if response.status_code != 101:
            self._answer(*NOT_AN_UPGRADE)
            return
        if host.draining:
            self._answer(*DRAINING)
            return
        ws.send_response(response)
        interaction_id = url.path[len(PATH_PREFIX) :] or None
        try:
            self._call = IngestCall.open(host, interaction_id, url.query, url.path)
        except (BadRequest, SessionRefused) as exc:
            ws.send_text(dumps_event(error_event(exc.code, exc.message)))
            self._close(close_code_for(exc), close_reason(exc.message).decode())
            return
        self._splitter = FrameSplitter(self._max_bytes, self._call.source.feed, self._other_frame)
        self._spawn(self._send_events(self._call))

    def _answer(self, status: int, body: dict[str, str], headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Refuse the request with an HTTP status and a JSON reason, then close."""
        content = json.dumps(body).encode()
        response = Response(
            status,
            _REASONS.get(status, "Error"),
            Headers([("Content-Type", "application/json; charset=utf-8"), *headers]),
            content,
        )
        response.headers["Content-Length"] = str(len(content))
        response.headers["Connection"] = "close"
        self._ws.send_response(response)

    def _peer(self) -> str | None:
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else None

    # --- frames that are not audio -----------------------------------------------------------

    def _other_frame(self, raw: bytes) -> None:
        """A frame the splitter left whole: websockets parses it (and answers pings, closes)."""
        ws = self._ws
        ws.receive_data(raw)
        for event in ws.events_received():
            if isinstance(event, Frame):
                self._frame(event)
        if ws.parser_exc is not None and self._call is not None:
            self._socket_failed(ws.parser_exc)
        self._flush()

    def _frame(self, frame: Frame) -> None:
        call = self._call
        if call is None or frame.opcode in (Opcode.PING, Opcode.PONG, Opcode.CLOSE):
            return  # websockets has answered it
        if frame.opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
        else:
            self._fragments = [bytes(frame.data)]
            self._fragments_text = frame.opcode is Opcode.TEXT
        if not frame.fin:
            return
        message = b"".join(self._fragments)
        self._fragments = []
        if self._fragments_text:
            call.text(message.decode(errors="replace"))  # websockets has failed invalid UTF-8
        else:
            call.source.feed(message)

    def _socket_failed(self, exc: Exception) -> None:
        assert self._call is not None
        self._call.source.error(*socket_failure(exc, isinstance(exc, PayloadTooBig)))
        self._splitter = None
        self._call.close()
        self._call = None
        self._expect_close()

    # --- writing -----------------------------------------------------------------------------

    def _close(self, code: int, reason: str) -> None:
        """Start the closing handshake; drop the connection if the client never answers it."""
        self._ws.send_close(code, reason)
        self._flush()
        self._expect_close()

    def _expect_close(self) -> None:
        if self._close_timer is None and not self._lost.is_set():
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(CLOSE_TIMEOUT_S, self.abort)

    def _flush(self) -> None:
        """Write what websockets has framed, in one system call."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        chunks = self._ws.data_to_send()
        end_of_stream = b"" in chunks  # websockets' EOF: the close handshake is done, or refused
        data = b"".join(chunks)
        if data:
            transport.write(data)
        if end_of_stream:
            transport.close()

    async def _send_events(self, call: IngestCall) -> None:
        """Forward the call's events; close the socket normally once the session has ended."""
        ws = self._ws
        try:
            async for event in call.subscription:
                if ws.state is not State.OPEN:
                    return
                await self._writable.wait()
                if self._lost.is_set():
                    return
                ws.send_text(dumps_event(event))
                if isinstance(event, SessionEnded):
                    self._close(CLOSE_NORMAL, "session ended")
                    return
                if not call.subscription.queued:  # events that came together leave together
                    self._flush()
            self._flush()  # the hub closed (shutdown) behind the last event
        except Exception:  # a socket's failure is its own; the server and other calls go on
            log.exception("ingest event sender failed", extra={"interaction_id": call.source.interaction_id})
            with contextlib.suppress(Exception):
                self.abort()


_REASONS: Final = {
    401: "Unauthorized",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
