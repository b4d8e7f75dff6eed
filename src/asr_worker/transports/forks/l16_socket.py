"""One media fork's WebSocket feeding one call: a metadata text frame, then raw audio.

FreeSWITCH (mod_audio_fork, mod_audio_stream), jambonz `listen`, Vonage and Asterisk's
chan_websocket all open a WebSocket to the worker, say once in a text frame which call it is
(and, for some, its audio format), then send the call's audio in binary frames; a call with
two legs comes as one two-channel stream (channel 0 the caller, 1 the callee). Each platform is
a `ForkPlatform`: its name, the subprotocols it offers (the worker selects the one offered;
Node's `ws` client, which mod_audio_fork's users test with, refuses a server that selects none)
and its pure parsers (`*_messages.py`).

The end of a call is the platform's: a close frame (the fork stopped or the call hung up), a
hangup message, or mod_audio_fork's zero-length frame ends the call at once with reason `end`:
the last finals, then `session_ended`. A connection that is lost without a close frame only
leaves: the session waits `ASR_SESSION_GRACE_S` for the same call to come back.

Bad input never crashes anything. Before the call is known (no metadata, a wrong sample rate,
no call id) the worker logs one line and closes the socket with 1008 and the reason. After it,
a bad message is an `error` event for the call's watchers, the first of each socket logged, and
the stream goes on. The worker sends nothing else on these sockets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import WSCloseCode, WSMsgType, web

from ...core.ids import CallKey, check_id
from ...core.session import Phase
from ...errors import AccessDenied, BadRequest, ProtocolError, SessionRefused
from ...http.auth import principal_of
from ...runtime.source import CallSource
from ...tenancy import Principal
from ..common import (
    CLOSE_BAD_INPUT,
    CLOSE_NORMAL,
    REFUSAL_CLOSE_CODES,
    close_reason,
    first_within,
    socket_error,
    upgrade_refusal,
)
from ..host import CallHost
from .messages import ForkControl, ForkStart, Hangup, Keypress, Notice

log = logging.getLogger("asr_worker.forks")

CLOSE_GOING_AWAY: Final = int(WSCloseCode.GOING_AWAY)
# A frame of audio is 20-100 ms (at most 19 KB at 48 kHz stereo); a metadata frame a few KB.
MAX_MESSAGE_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class ForkPlatform:
    name: str  # metric label and log field: "freeswitch", "jambonz", ...
    # The metadata frame (None: audio came first) and the URL's query to the call; raises
    # ProtocolError (or BadRequest for an option) with the reason the socket is closed with.
    start: Callable[[str | None, Mapping[str, str]], ForkStart]
    control: Callable[[str], ForkControl]  # a later text frame; raises ProtocolError
    subprotocols: tuple[str, ...] = ()
    empty_frame_ends: bool = False  # a zero-length binary frame is the end of the call


async def fork_socket(host: CallHost, request: web.Request, platform: ForkPlatform) -> web.StreamResponse:
    """Serve one fork's WebSocket until the call ends or the socket goes away."""
    ws = web.WebSocketResponse(
        protocols=platform.subprotocols, max_msg_size=MAX_MESSAGE_BYTES, heartbeat=None, compress=False
    )
    refusal = upgrade_refusal(request, ws, host.draining)
    if refusal is not None:
        return refusal
    await ws.prepare(request)
    stream = ForkStream(host, ws, platform, request.query, principal_of(request))
    try:
        await stream.run()
    finally:
        stream.release()
    return ws


class ForkStream:
    def __init__(
        self,
        host: CallHost,
        ws: web.WebSocketResponse,
        platform: ForkPlatform,
        query: Mapping[str, str],
        principal: Principal,
    ) -> None:
        self._host = host
        self._ws = ws
        self._platform = platform
        self._query = query
        self._principal = principal  # whose calls this socket may open: its key's tenant
        self._messages = host.metrics.telephony_messages
        self._source: CallSource | None = None
        self._complained = False  # the first bad message after the start is logged, the rest counted

    async def run(self) -> None:
        async for msg in first_within(self._ws, self._host, with_close=True):
            if msg.type is WSMsgType.CLOSE:
                self._closed_by_platform()
                return
            if msg.type is WSMsgType.ERROR:
                code, message = socket_error(self._ws, msg.data)
                await self._problem(code, message, fatal=True)
                return
            if self._source is None:
                text = msg.data if msg.type is WSMsgType.TEXT else None
                if not await self._start(text):
                    return
                if text is not None:
                    continue
            if msg.type is WSMsgType.BINARY:
                if await self._audio(msg.data):
                    return
            elif msg.type is WSMsgType.TEXT and await self._text(msg.data):
                return

    def release(self) -> None:
        """The socket is gone: leave the call (it goes on, or waits its grace period)."""
        if self._source is not None:
            self._source.leave()

    # --- the call ------------------------------------------------------------------------

    async def _start(self, metadata: str | None) -> bool:
        """Join the call the metadata names; False when the socket is done."""
        platform = self._platform.name
        try:
            start = self._platform.start(metadata, self._query)
            interaction_id = check_id(start.interaction_id, "interaction_id")
            key = CallKey(self._principal.tenant_of_call(start.tenant_id), interaction_id)
        except (BadRequest, AccessDenied) as exc:
            self._messages.labels(platform, "invalid").inc()
            await self._problem(exc.code, exc.message)
            return False
        self._messages.labels(platform, "metadata" if metadata is not None else "audio_first").inc()
        try:
            # A socket continuing a call under way leaves its options as they are.
            source = self._host.manager.join(key, start.fmt, options=start.options)
        except SessionRefused as exc:
            log.info(
                "fork refused",
                extra={"platform": platform, "interaction_id": interaction_id, "reason": exc.code},
            )
            await self._close(REFUSAL_CLOSE_CODES.get(exc.code, CLOSE_BAD_INPUT), exc.message)
            return False
        self._source = source
        log.info(
            "fork started",
            extra={
                "platform": platform,
                "interaction_id": interaction_id,
                "call_ref": start.call_ref,
                "subprotocol": self._ws.ws_protocol,
                "encoding": str(start.fmt.encoding),
                "sample_rate": start.fmt.sample_rate,
                "channels": start.fmt.channels,
                "legs": ",".join(f"{channel}={role}" for channel, role in enumerate(start.legs)),
                "keyterms": len(start.options.keyterms),
                "resumed": source.runner.status.resumed,
            },
        )
        return True

    async def _audio(self, data: bytes) -> bool:
        """One binary frame; True when the socket is done."""
        source = self._source
        if source is None:
            return True
        if not data:
            if self._platform.empty_frame_ends:
                await self._end("the fork's last frame")
                return True
            return False
        status = source.runner.status
        if status.phase is not Phase.ACTIVE:
            # The call ended without this socket saying so (shutdown, a provider that refused
            # it): close rather than answer every frame with an error.
            going_away = self._host.draining or status.end_reason == "shutdown"
            await self._close(CLOSE_GOING_AWAY if going_away else CLOSE_NORMAL, "the call has ended")
            return True
        source.feed(data)  # a frame that is not whole samples is reported to the call's watchers
        return False

    async def _text(self, text: str) -> bool:
        """A text frame after the metadata; True when the socket is done."""
        source = self._source
        if source is None:
            return True
        try:
            control = self._platform.control(text)
        except ProtocolError as exc:
            self._messages.labels(self._platform.name, "invalid").inc()
            return await self._problem(exc.code, exc.message)
        if isinstance(control, Keypress):
            self._messages.labels(self._platform.name, "dtmf").inc()
            source.dtmf(control.digit, control.channel)
        elif isinstance(control, Hangup):
            self._messages.labels(self._platform.name, "hangup").inc()
            await self._end("the platform's hangup")
            return True
        elif isinstance(control, Notice):
            self._messages.labels(self._platform.name, control.name).inc()
        return False

    def _closed_by_platform(self) -> None:
        """The platform closed the socket (its fork stopped, the call hung up): the call is over."""
        source = self._source
        if source is None:
            log.info("fork closed before its metadata", extra={"platform": self._platform.name})
            return
        source.leave()
        source.end("end")
        log.info(
            "fork ended",
            extra={"platform": self._platform.name, "interaction_id": source.interaction_id, "by": "close"},
        )

    async def _end(self, why: str) -> None:
        source = self._source
        if source is not None:
            source.leave()
            source.end("end")
            log.info(
                "fork ended",
                extra={"platform": self._platform.name, "interaction_id": source.interaction_id, "by": why},
            )
        await self._close(CLOSE_NORMAL, "end")

    # --- helpers -------------------------------------------------------------------------

    async def _problem(self, code: str, message: str, *, fatal: bool = False) -> bool:
        """Bad input. With a call: an `error` event to its watchers (and go on unless fatal),
        the socket's first one logged. Without: one log line and a close that says why. True
        when the socket is done."""
        source = self._source
        if source is not None:
            source.error(code, message)
            if not self._complained:
                self._complained = True
                log.info(
                    "fork sent bad input; the call goes on, more of it is only counted",
                    extra={
                        "platform": self._platform.name,
                        "interaction_id": source.interaction_id,
                        "code": code,
                        "reason": message,
                    },
                )
            if fatal:
                await self._close(CLOSE_BAD_INPUT, message)
            return fatal
        log.info("fork refused", extra={"platform": self._platform.name, "code": code, "reason": message})
        await self._close(CLOSE_BAD_INPUT, message)
        return True

    async def _close(self, code: int, reason: str) -> None:
        if not self._ws.closed:
            await self._ws.close(code=code, message=close_reason(reason))
