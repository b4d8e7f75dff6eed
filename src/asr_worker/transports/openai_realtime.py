"""`GET /v1/realtime?intent=transcription`: OpenAI's Realtime API in transcription mode, served
by the configured provider, so a client written for OpenAI transcribes through the worker.

One socket is one call (`?interaction_id=` names it, else the worker makes an id). The
session answers `session.created` at once, then `session.updated` to each update (the beta
schema's `transcription_session.*` names once a client speaks it, or sends `OpenAI-Beta:
realtime=v1`). The call starts at the first `input_audio_buffer.append`, in the session's
format then: `pcm16` 24 kHz goes to the session as it is (linear16 at 24 kHz), G.711 u-law
and A-law at 8 kHz. `commit` asks the session for its final now (the ingest socket's
`finalize`); `clear` drops the text of what was sent before it. The call's results become
conversation items (`openai_items`). When the client closes the socket the call ends.

The transcription `prompt` in effect at the first append names the call's keyterms: its
comma-separated pieces (how the OpenAI provider lists a call's keyterms in its own prompt)
that are terms by the keyterm limits. OpenAI takes any prompt, so none is refused: a piece
over 100 characters is prose rather than a term and is left out, as are pieces past the
100th. A prompt set after the call started is echoed; the call keeps the terms it started with.
The session's `transcription.language` then is the call's `language` (one that is no language
code is none, never an error).

Bad input (not JSON, an unknown event, an unsupported format, an append too large, an audio
format change after audio has flowed) gets OpenAI's `error`
event and one log line; the session goes on. Watchers (SSE, the page, the bus) see the call
like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from typing import Final

from aiohttp import WSCloseCode, WSMsgType, web

from ..core.audio import AudioFormat, Encoding
from ..core.call_options import CallOptions, check_language
from ..core.events import CallError, SessionEnded, Transcript
from ..core.ids import CallKey, check_optional_id
from ..core.keyterms import MAX_KEYTERM_CHARS, MAX_KEYTERMS, check_keyterms
from ..core.session import Phase
from ..errors import AccessDenied, BadRequest, ParamError, ProtocolError, SessionRefused
from ..http.auth import Route, principal_of
from ..jsonwire import dumps_text
from ..openai_realtime import protocol
from ..openai_realtime.protocol import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    Schema,
    SessionConfig,
    SessionUpdate,
)
from ..runtime.hub import Subscription
from ..runtime.source import CallSource
from ..tenancy import Scope
from .common import CLOSE_NORMAL, close_reason, first_within, upgrade_refusal
from .host import CallHost, bind
from .openai_items import ItemTracker

log = logging.getLogger("asr_worker.realtime")

# One append may carry this much audio (about 20 s of pcm16 at 24 kHz); the socket takes a
# message a little over its base64 size, so a larger append gets an `error`, not a closed socket.
MAX_APPEND_BYTES: Final = 1 << 20
MAX_MESSAGE_CHARS: Final = (MAX_APPEND_BYTES // 3 + 1) * 4 * 2 + 64 * 1024
MAX_OUTBOX: Final = 2000  # server events waiting to be sent on one socket
_NORMAL_ENDS: Final = frozenset({"end", "client_closed", "shutdown", "grace_timeout", "stop"})


def routes(host: CallHost) -> list[Route]:
    """Bearer keys, as OpenAI's SDKs send them (or the browser clients' key subprotocol)."""
    return [Route("GET", protocol.REALTIME_PATH, bind(host, realtime_socket), Scope.STREAM, long_lived=True)]


async def realtime_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    # Browsers offer `realtime` and the key as subprotocols; the server selects `realtime`.
    chosen = (protocol.SUBPROTOCOL_REALTIME,) if protocol.SUBPROTOCOL_REALTIME in offered else ()
    ws = web.WebSocketResponse(
        max_msg_size=MAX_MESSAGE_CHARS, heartbeat=None, compress=False, protocols=chosen
    )
    refusal = upgrade_refusal(request, ws, host.draining)
    if refusal is not None:
        return refusal
    intent = request.query.get("intent", "transcription")
    try:
        interaction_id = check_optional_id(request.query.get("interaction_id"), "interaction_id")
        tenant = principal_of(request).tenant_of_call(request.query.get("tenant_id"))
    except (BadRequest, AccessDenied) as exc:
        status = exc.status if isinstance(exc, AccessDenied) else 400
        return web.json_response(
            {"error": {"type": "invalid_request_error", "message": exc.message}}, status=status
        )
    if intent != "transcription":
        return web.json_response(
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": "unsupported_intent",
                    "message": "this server runs transcription sessions only: use ?intent=transcription",
                }
            },
            status=400,
        )
    await ws.prepare(request)
    beta = request.headers.get("OpenAI-Beta", "").strip().lower().startswith("realtime") or (
        "openai-beta.realtime-v1" in offered
    )
    key = CallKey(tenant, interaction_id or f"rt_{secrets.token_hex(8)}")
    session = RealtimeSession(host, ws, key, beta)
    try:
        await session.run()
    finally:
        session.release()
    return ws


class RealtimeSession:
    def __init__(
        self,
        host: CallHost,
        ws: web.WebSocketResponse,
        key: CallKey,
        beta: bool,
    ) -> None:
        self._host = host
        self._ws = ws
        self.key = key
        self.interaction_id = key.interaction_id
        self._schema: Schema = "beta" if beta else "ga"
        self._config = SessionConfig()
        self._keyterms: tuple[str, ...] = ()  # the prompt's terms, the call's once it starts
        self._session_id = f"sess_{secrets.token_hex(8)}"
        self._source: CallSource | None = None
        self._subscription: Subscription | None = None
        self._fmt: AudioFormat | None = None
        self._fed = 0  # bytes of audio fed to the call
        self._since_commit = 0  # bytes appended since the last commit or clear
        self._items = ItemTracker(self._send, lambda: self._schema)
        self._ended = asyncio.Event()
        self._metrics = host.metrics
        self._appends = host.metrics.realtime_events.labels("input_audio_buffer.append")  # 50 a second
        # Server events wait here for the writer task: bounded; a client that lets it fill
        # (it stopped reading) has its socket closed.
        self._outbox: deque[str] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._close_with: tuple[int, str] | None = None

    async def run(self) -> None:
        self._send(
            protocol.session_event("created", self._schema, self._config, self._session_id, self._event_id())
        )
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(self._write())
            async for msg in first_within(self._ws, self._host):
                if msg.type is WSMsgType.TEXT:
                    self._text(msg.data, tg)
                elif msg.type is WSMsgType.BINARY:
                    self._error(
                        ProtocolError("invalid_event", "binary messages are not part of this protocol")
                    )
                elif msg.type is WSMsgType.ERROR:
                    failure = self._ws.exception()
                    log.info(
                        "realtime socket failed",
                        extra={"interaction_id": self.interaction_id, "reason": f"{failure!s:.200}"},
                    )
                    break
                if self._ended.is_set():
                    break
            self._end("client_closed")
            if self._subscription is not None:
                self._subscription.close()
            self._closing = True
            self._wake.set()
            await writer

    def release(self) -> None:
        """The socket is gone: end the call if it was started here, stop its events, leave."""
        self._end("client_closed")
        if self._subscription is not None:
            self._subscription.close()
        if self._source is not None:
            self._source.leave()

    # --- client events --------------------------------------------------------------------

    def _text(self, text: str, tg: asyncio.TaskGroup) -> None:
        try:
            event = protocol.parse_client_event(text, MAX_APPEND_BYTES)
        except ProtocolError as exc:
            self._metrics.realtime_events.labels("invalid").inc()
            self._error(exc)
            return
        if isinstance(event, AudioAppend):
            self._appends.inc()
            self._append(event, tg)
        elif isinstance(event, SessionUpdate):
            self._metrics.realtime_events.labels(f"{event.schema}.session.update").inc()
            self._update(event)
        elif isinstance(event, AudioCommit):
            self._metrics.realtime_events.labels("input_audio_buffer.commit").inc()
            self._commit(event)
        elif isinstance(event, AudioClear):
            self._metrics.realtime_events.labels("input_audio_buffer.clear").inc()
            self._since_commit = 0
            self._items.clear(self._audio_s())

    def _update(self, event: SessionUpdate) -> None:
        config = event.patch.apply(self._config)
        if self._fmt is not None and config.format != self._config.format:
            self._error(
                ProtocolError(
                    "format_locked",
                    "the audio format cannot change once audio has been appended; open a new session",
                    param="session.audio.input.format"
                    if event.schema == "ga"
                    else "session.input_audio_format",
                    event_id=event.event_id,
                )
            )
            return
        self._schema = event.schema
        self._config = config
        self._keyterms = prompt_keyterms(config.transcription.prompt)
        self._send(
            protocol.session_event("updated", self._schema, config, self._session_id, self._event_id())
        )

    def _append(self, event: AudioAppend, tg: asyncio.TaskGroup) -> None:
        audio = event.audio
        fmt = self._config.format
        if fmt.name == "pcm16" and len(audio) % 2:
            self._error(
                ProtocolError(
                    "invalid_value",
                    f"pcm16 audio comes in whole 2-byte samples; {len(audio)} bytes dropped",
                    param="audio",
                    event_id=event.event_id,
                )
            )
            return
        if not audio:
            return
        source = self._source or self._join(event, tg)
        if source is None:
            return
        if source.feed(audio):
            self._fed += len(audio)
            self._since_commit += len(audio)

    def _join(self, event: AudioAppend, tg: asyncio.TaskGroup) -> CallSource | None:
        fmt = self._config.format
        self._fmt = AudioFormat(Encoding(fmt.encoding), fmt.sample_rate, 1)
        # Subscribe before joining, so the call's first events are seen.
        subscription = self._host.hub.subscribe(self.key)
        try:
            options = CallOptions(
                keyterms=self._keyterms, language=session_language(self._config.transcription.language)
            )
            source = self._host.manager.join(self.key, self._fmt, options=options)
        except SessionRefused as exc:
            subscription.close()
            self._fmt = None
            log.info(
                "realtime call refused", extra={"interaction_id": self.interaction_id, "reason": exc.code}
            )
            self._error(ProtocolError(exc.code, exc.message, event_id=event.event_id, type="server_error"))
            return None
        self._source, self._subscription = source, subscription
        log.info(
            "realtime call started",
            extra={
                "interaction_id": self.interaction_id,
                "format": fmt.name,
                "schema": self._schema,
                "model": self._config.transcription.model[:60],
                "keyterms": len(self._keyterms),
            },
        )
        tg.create_task(self._pump(subscription))
        return source

    def _commit(self, event: AudioCommit) -> None:
        fmt = self._config.format
        if self._source is None or self._since_commit * 1000 < protocol.MIN_COMMIT_MS * fmt.bytes_per_second:
            ms = self._since_commit * 1000 // fmt.bytes_per_second
            self._error(
                ProtocolError(
                    "input_audio_buffer_commit_empty",
                    f"buffer too small: expected at least {protocol.MIN_COMMIT_MS} ms of audio, "
                    f"but the buffer holds {ms} ms",
                    event_id=event.event_id,
                )
            )
            return
        self._since_commit = 0
        self._items.commit(self._config.turn_detection is not None, self._audio_s())
        self._source.finalize()

    # --- the call's events ----------------------------------------------------------------

    async def _pump(self, subscription: Subscription) -> None:
        async for event in subscription:
            if isinstance(event, Transcript):
                if event.channel == 0:
                    self._items.transcript(event, self._config.turn_detection is not None)
            elif isinstance(event, CallError):
                self._send(
                    protocol.error_event(
                        ProtocolError(event.code, event.message, type="server_error"), self._event_id()
                    )
                )
            elif isinstance(event, SessionEnded):
                ok = event.reason in _NORMAL_ENDS
                self._items.ended(ok, event.reason, f"the call ended: {event.reason}")
                self._ended.set()
                # The writer closes the socket once the last items are out.
                if not ok:
                    self._close_with = (int(WSCloseCode.INTERNAL_ERROR), event.reason)
                else:
                    self._close_with = (CLOSE_NORMAL, "session ended")
                self._wake.set()
                return
            elif event.type == "events_dropped":
                self._send(
                    protocol.error_event(
                        ProtocolError(
                            "events_dropped",
                            "results were lost: the client reads too slowly",
                            type="server_error",
                        ),
                        self._event_id(),
                    )
                )

    # --- helpers --------------------------------------------------------------------------

    def _end(self, reason: str) -> None:
        source = self._source
        if source is not None and source.attached and source.runner.status.phase is Phase.ACTIVE:
            source.end(reason)

    def _audio_s(self) -> float:
        return self._fed / self._config.format.bytes_per_second

    def _event_id(self) -> str:
        return self._items.event_id()

    def _error(self, error: ProtocolError) -> None:
        log.info(
            "realtime client event refused",
            extra={"interaction_id": self.interaction_id, "code": error.code, "reason": error.message[:200]},
        )
        self._send(protocol.error_event(error, self._event_id()))

    def _send(self, event: dict[str, object]) -> None:
        if self._ws.closed or self._closing:
            return
        if len(self._outbox) >= MAX_OUTBOX:
            self._metrics.realtime_events.labels("outbox_overflow").inc()
            self._closing = True  # the writer closes the socket
        else:
            self._outbox.append(dumps_text(event))
            self._metrics.realtime_outbox.inc()
        self._wake.set()

    async def _write(self) -> None:
        """Send the outbox in order until the session closes; close a socket whose client
        stopped reading."""
        ws, outbox, gauge = self._ws, self._outbox, self._metrics.realtime_outbox
        try:
            while True:
                while outbox and not ws.closed and len(outbox) < MAX_OUTBOX:
                    text = outbox.popleft()
                    gauge.dec()
                    try:
                        await ws.send_str(text)
                    except ConnectionError:
                        return
                if len(outbox) >= MAX_OUTBOX:
                    log.info(
                        "realtime client too slow; closing", extra={"interaction_id": self.interaction_id}
                    )
                    with contextlib.suppress(ConnectionError):
                        await ws.close(code=int(WSCloseCode.TRY_AGAIN_LATER), message=b"client too slow")
                    return
                if self._close_with is not None and not ws.closed:
                    code, reason = self._close_with
                    with contextlib.suppress(ConnectionError):
                        await ws.close(code=code, message=close_reason(reason))
                    return
                if self._closing or ws.closed:
                    return
                self._wake.clear()
                await self._wake.wait()
        finally:
            gauge.dec(len(outbox))
            outbox.clear()


def session_language(language: str | None) -> str | None:
    """The call's `language` from the session's `transcription.language` (`en`): OpenAI takes
    any text there, so one that is no language code is no language, never an error."""
    try:
        return check_language(language, "transcription.language")
    except ParamError:
        return None


def prompt_keyterms(prompt: str | None) -> tuple[str, ...]:
    """The keyterms a transcription prompt names (see the module's notes): never an error."""
    pieces = [" ".join(piece.split()) for piece in (prompt or "").split(",")]
    terms = tuple(dict.fromkeys(p for p in pieces if p and len(p) <= MAX_KEYTERM_CHARS))
    return check_keyterms(terms[:MAX_KEYTERMS], "prompt")
