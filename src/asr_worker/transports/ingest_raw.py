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
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Final, cast

from websockets.datastructures import Headers
from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol
from yarl import URL

from ..core.events import SessionEnded
from ..credentials import TOKEN_SUBPROTOCOL, UNAUTHORIZED_HEADERS, presented_credentials
from ..errors import AccessDenied, CodedError
from ..http.options import MAX_REQUEST_LINE_BYTES
from ..jsonwire import dumps_event
from ..tenancy import Principal, Scope
from ..wsframes import FrameSplitter
from .common import (
    CLOSE_BAD_INPUT,
    CLOSE_NORMAL,
    CLOSE_TOO_BIG,
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
# A message may come in at most this many frames: a client that splits one message into a
# flood of tiny fragments costs a parse and a callback each, so past this it is refused (1009).
MAX_FRAGMENTS: Final = 1024
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110)

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
        # Opened before the handshake: the head is parsed here (`parse_head`), websockets keeps
        # the frames, the close handshake and the limits; Deepgram's browser clients offer
        # their key as `token, KEY`, and a server selects `token`.
        self._ws = ServerProtocol(
            max_size=max_bytes, logger=_PROTOCOL_LOG, select_subprotocol=_select_subprotocol, state=State.OPEN
        )
        self._transport: asyncio.Transport | None = None
        self._call: IngestCall | None = None
        self._splitter: FrameSplitter | None = None
        self._max_bytes = max_bytes
        self._message = bytearray()  # a fragmented message's frames so far (websockets caps the size)
        self._fragments = 0
        self._fragments_text = False
        self._principal: Principal | None = None  # once the handshake authenticated it
        self._first_deadline: asyncio.TimerHandle | None = None
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
        self._first_deadline = asyncio.get_running_loop().call_later(
            self._host.http.first_message_timeout_s, self._silent
        )

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
        request = parse_head(head)
        if request is None:
            self._answer(400, {"error": "bad_request", "message": "not an HTTP/1.1 GET request head"})
            return
        self._handshake(request)
        if rest and self._transport is not None and not self._transport.is_closing():
            self.data_received(rest)

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._no_deadline()
        if self._principal is not None:
            self._host.limits.leave_key(self._principal.key_id)
            self._principal = None
        self._splitter = None
        self._writable.set()
        self._lost.set()
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._call is not None:  # a dropped socket: the call's grace period decides its end
            self._call.close()

    def pause_writing(self) -> None:
        """The client is not reading what it is sent (events, pongs): stop reading from it until
        it does, as aiohttp does, so neither side's buffer grows without bound."""
        self._writable.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._writable.set()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _no_deadline(self) -> None:
        if self._first_deadline is not None:
            self._first_deadline.cancel()
            self._first_deadline = None

    def _silent(self) -> None:
        """No message within the first-message deadline (a socket that holds a connection and
        a call while saying nothing): refused, counted, closed."""
        if self._lost.is_set():
            return
        self._host.limits.refuse("first_message_timeout", self._peer())
        if self._head is not None:
            self._head = None
            self._answer(408, {"error": "head_timeout", "message": "the request did not arrive in time"})
            return
        if self._call is not None:
            self._call.source.error("first_message_timeout", "no message within the first-message deadline")
        self._drop_call()
        self._close(CLOSE_BAD_INPUT, "no message within the first-message deadline")

    def abort(self) -> None:
        """Drop the connection (shutdown, after every call has ended)."""
        if self._transport is not None:
            self._transport.abort()

    # --- the opening handshake ---------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        host, ws = self._host, self._ws
        url = URL(request.path)
        presented = presented_credentials(
            "GET",
            request.headers.get("Authorization", ""),
            url.query,
            request.headers.get("Sec-WebSocket-Protocol", ""),
        )
        try:
            principal = host.keyring.authorize(presented, Scope.STREAM)
        except AccessDenied as exc:
            log.info(
                "access denied", extra={"path": url.path[:200], "reason": exc.code, "peer": self._peer()}
            )
            headers = UNAUTHORIZED_HEADERS if exc.status == 401 else ()
            self._answer(exc.status, {"error": exc.code, "message": exc.message}, headers)
            return
        response = ws.accept(request)
        if response.status_code != 101:
            self._answer(*NOT_AN_UPGRADE)
            return
        if host.draining:
            self._answer(*DRAINING)
            return
        if not host.limits.enter_key(principal.key_id):
            self._answer(
                429, {"error": "too_many_connections", "message": "this key holds its most connections"}
            )
            return
        self._principal = principal
        self._write(response.serialize())
        interaction_id = url.path[len(PATH_PREFIX) :] or None
        try:
            self._call = IngestCall.open(host, principal, interaction_id, url.query, url.path)
        except CodedError as exc:
            ws.send_text(dumps_event(error_event(exc.code, exc.message)))
            self._close(close_code_for(exc), close_reason(exc.message).decode())
            return
        self._splitter = FrameSplitter(self._max_bytes, self._audio, self._other_frame)
        self._spawn(self._send_events(self._call))

    def _audio(self, data: bytes) -> object:
        """An audio frame: the first message ends the first-message deadline."""
        if self._call is None:
            return False
        self._no_deadline()
        assert self._splitter is not None
        feed = self._call.source.feed
        self._splitter.audio = feed  # from now on audio goes straight to the call
        return feed(data)

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
        self._write(response.serialize())
        if self._transport is not None:
            self._transport.close()

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

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
        self._no_deadline()
        if frame.opcode is Opcode.CONT:
            self._message += frame.data
            self._fragments += 1
            if self._fragments > MAX_FRAGMENTS:
                self._message = bytearray()
                call.source.error(
                    "too_large", f"a message in more than {MAX_FRAGMENTS} frames; the socket is closed"
                )
                self._drop_call()
                self._close(CLOSE_TOO_BIG, "message too fragmented")
                return
        else:
            self._message = bytearray(frame.data)
            self._fragments = 1
            self._fragments_text = frame.opcode is Opcode.TEXT
        if not frame.fin:
            return
        message = bytes(self._message)
        self._message = bytearray()
        if self._fragments_text:
            call.text(message.decode(errors="replace"))  # websockets has failed invalid UTF-8
        else:
            call.source.feed(message)

    def _socket_failed(self, exc: Exception) -> None:
        assert self._call is not None
        self._call.source.error(*socket_failure(exc, isinstance(exc, PayloadTooBig)))
        self._drop_call()
        self._expect_close()

    def _drop_call(self) -> None:
        """This socket leaves its call (which goes on, or ends after its grace period)."""
        self._splitter = None
        if self._call is not None:
            self._call.close()
            self._call = None

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


def _select_subprotocol(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """`token` where a client offers its key Deepgram's way (`token, KEY`); else none."""
    return Subprotocol(TOKEN_SUBPROTOCOL) if TOKEN_SUBPROTOCOL in offered else None


def parse_head(head: bytes) -> Request | None:
    """A WebSocket upgrade's request head (line and headers, through the blank line) as
    websockets' `Request`, or None if it is not an HTTP/1.1 GET. Parsed here rather than by
    websockets, whose line limit (8192 bytes) is shorter than a query naming the most keyterms a
    call may have; the router has capped the head at 64 KiB and this line at
    MAX_REQUEST_LINE_BYTES."""
    lines = head.split(b"\r\n")
    method, _, rest = lines[0].partition(b" ")
    target, _, version = rest.partition(b" ")
    if method != b"GET" or version != b"HTTP/1.1" or not target.startswith(b"/"):
        return None
    if len(lines[0]) > MAX_REQUEST_LINE_BYTES or b" " in target:
        return None
    headers = Headers()
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            return None
        headers[name.decode("ascii")] = value.strip(b" \t").decode("ascii", "surrogateescape")
    return Request(target.decode("ascii", "surrogateescape"), headers)


_REASONS: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    408: "Request Timeout",
    429: "Too Many Requests",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
