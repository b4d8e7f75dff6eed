"""`GET /v1/jambonz/transcribe`: the worker as a jambonz custom speech vendor (speech-to-text).

In the jambonz portal, add a custom speech vendor whose STT URL is
`wss://HOST/v1/jambonz/transcribe` and whose API key is a worker key with `stream` scope
(jambonz sends it as `Authorization: Bearer KEY`); then any recognizer that names the vendor
(`gather`, `transcribe`, the agent verbs) transcribes through whichever provider the worker
runs. Each socket is one call: jambonz's `callSid` names it when jambonz sends it (in `start`'s
`options`), else the URL's `?interaction_id=`, else an id of the worker's own
(`jambonz-<random>`). Interim results go back when `start` asks for them, finals always, in
jambonz's `transcription` shape; `stop` asks for the last results, which come before the
worker closes the socket (1000). A call's errors go back as jambonz's `error` messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping

from aiohttp import WSMsgType, web

from ...core.events import CallError, Refusal, SessionEnded, Transcript
from ...core.ids import CallKey, check_id
from ...errors import AccessDenied, BadRequest, ProtocolError, SessionRefused
from ...http.auth import Route, principal_of
from ...runtime.hub import Subscription
from ...runtime.source import CallSource
from ...tenancy import Principal, Scope
from ..common import (
    CLOSE_BAD_INPUT,
    CLOSE_NORMAL,
    REFUSAL_CLOSE_CODES,
    close_reason,
    first_within,
    socket_error,
    upgrade_refusal,
)
from ..host import CallHost, bind
from . import jambonz_stt_messages as jb
from .l16_socket import MAX_MESSAGE_BYTES

log = logging.getLogger("asr_worker.forks")

PLATFORM = "jambonz_stt"


def routes(host: CallHost) -> list[Route]:
    return [
        Route("GET", "/v1/jambonz/transcribe", bind(host, transcribe_socket), Scope.STREAM, long_lived=True)
    ]


async def transcribe_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=None, compress=False)
    refusal = upgrade_refusal(request, ws, host.draining)
    if refusal is not None:
        return refusal
    await ws.prepare(request)
    principal = principal_of(request)
    recognition: _Recognition | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            async for msg in first_within(ws, host, with_close=True):
                if msg.type is WSMsgType.CLOSE:
                    if recognition is not None:
                        recognition.stop("close")
                    break
                if msg.type is WSMsgType.ERROR:
                    if recognition is not None:
                        recognition.source.error(*socket_error(ws, msg.data))
                    break
                if recognition is None:
                    text = msg.data if msg.type is WSMsgType.TEXT else None
                    recognition = await _open(host, ws, request.query, principal, text)
                    if recognition is None:
                        break
                    tg.create_task(recognition.send_results(), name="jambonz-stt-results")
                elif msg.type is WSMsgType.BINARY:
                    recognition.source.feed(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    recognition.text(msg.data)
            if recognition is not None and ws.closed:
                recognition.subscription.close()  # no one to send the rest to
    finally:
        if recognition is not None:
            recognition.subscription.close()
            recognition.source.leave()
    return ws


async def _open(
    host: CallHost,
    ws: web.WebSocketResponse,
    query: Mapping[str, str],
    principal: Principal,
    text: str | None,
) -> _Recognition | None:
    """Join the call `start` names; None when refused (jambonz was told why in its own
    `error` message, one line was logged and the socket closed)."""
    messages = host.metrics.telephony_messages
    try:
        if text is None:
            raise ProtocolError("bad_message", "the first message must be jambonz's start; audio came first")
        start = jb.parse_start(text, query)
        interaction_id = check_id(
            start.interaction_id or f"jambonz-{uuid.uuid4().hex[:24]}", "interaction_id"
        )
        key = CallKey(principal.tenant_of_call(start.tenant_id), interaction_id)
        source = host.manager.join(key, start.fmt, options=start.options)
    except (BadRequest, AccessDenied, SessionRefused) as exc:
        messages.labels(PLATFORM, "invalid").inc()
        log.info("fork refused", extra={"platform": PLATFORM, "code": exc.code, "reason": exc.message})
        with contextlib.suppress(ConnectionError):
            await ws.send_str(jb.error(exc.message))
            await ws.close(
                code=REFUSAL_CLOSE_CODES.get(exc.code, CLOSE_BAD_INPUT), message=close_reason(exc.message)
            )
        return None
    messages.labels(PLATFORM, "start").inc()
    log.info(
        "fork started",
        extra={
            "platform": PLATFORM,
            "interaction_id": interaction_id,
            "call_ref": start.call_ref,
            "encoding": str(start.fmt.encoding),
            "sample_rate": start.fmt.sample_rate,
            "channels": start.fmt.channels,
            "language": start.language,
            "interim": start.interim,
            "keyterms": len(start.options.keyterms),
        },
    )
    # Subscribed before anything can yield, so no result of the call is missed.
    return _Recognition(host, ws, source, host.hub.subscribe(key), start)


class _Recognition:
    """One jambonz recognition: its call's source and its subscription to the call's results."""

    def __init__(
        self,
        host: CallHost,
        ws: web.WebSocketResponse,
        source: CallSource,
        subscription: Subscription,
        start: jb.SttStart,
    ) -> None:
        self._host = host
        self._ws = ws
        self.source = source
        self.subscription = subscription
        self._start = start
        self._complained = False
        self._stopped = False

    def text(self, text: str) -> None:
        messages = self._host.metrics.telephony_messages
        try:
            command = jb.parse_control(text)
        except ProtocolError as exc:
            messages.labels(PLATFORM, "invalid").inc()
            self.source.error(exc.code, exc.message)
            if not self._complained:
                self._complained = True
                log.info(
                    "fork sent bad input; the call goes on, more of it is only counted",
                    extra={
                        "platform": PLATFORM,
                        "interaction_id": self.source.interaction_id,
                        "reason": exc.message,
                    },
                )
            return
        messages.labels(PLATFORM, command).inc()
        self.stop(command)

    def stop(self, by: str) -> None:
        """jambonz wants the last results (`stop`) or went away (a close): the call ends; its
        last finals go back while the socket is open, then the worker closes it."""
        if self._stopped:
            return
        self._stopped = True
        self.source.leave()
        self.source.end("end")
        log.info(
            "fork ended", extra={"platform": PLATFORM, "interaction_id": self.source.interaction_id, "by": by}
        )

    async def send_results(self) -> None:
        """The call's results in jambonz's shape, until the session ends (then close 1000)."""
        start = self._start
        async for event in self.subscription:
            if self._ws.closed:
                return
            try:
                if isinstance(event, Transcript) and event.text and (event.is_final or start.interim):
                    await self._ws.send_str(
                        jb.transcription(
                            event.text,
                            is_final=event.is_final,
                            confidence=event.confidence,
                            channel=event.channel,
                            language=start.language,
                        )
                    )
                elif isinstance(event, CallError | Refusal):
                    await self._ws.send_str(jb.error(f"{event.code}: {event.message}"))
                elif isinstance(event, SessionEnded):
                    await self._ws.close(code=CLOSE_NORMAL, message=b"end")
                    return
            except ConnectionError:
                return
