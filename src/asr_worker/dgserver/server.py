"""A server that speaks Deepgram's live `/v1/listen` protocol on top of any provider of ours.

What a Deepgram client sees, it gets here: the handshake (query parameters, `Authorization:
Token`/`Bearer` or `Sec-WebSocket-Protocol: token, KEY`, `dg-request-id` on every answer, a
refusal as `dg-error` plus a JSON body), binary audio, the JSON text messages KeepAlive,
Finalize and CloseStream, `Results` with every field present, `SpeechStarted` and
`UtteranceEnd` when asked for, `Metadata` then close 1000 after CloseStream, and the 10-second
idle close 1011 with Deepgram's NET-0001 reason. A stream's `language` is the call's (its
results name it, `multi` the one detected), one the engine cannot transcribe is refused with
Deepgram's 400; its `callback` gets every response POSTed as well, then the stream's transcript
document (`callback.py`). Only JSON
text frames are ever sent (unless a garbage fault is on): strict clients end their listen loop
on anything else.

Every connection is recorded (bounded) for tests: query, headers, audio, the text messages in
order, the close. `Faults` make it misbehave on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from .. import __version__
from ..core.audio import AudioFormat
from ..core.call_options import CallOptions
from ..core.provider_events import ProviderEvent, SpeechStarted, TranscriptResult, UtteranceEnd
from ..credentials import Secret, token_matches
from ..deepgram import protocol
from ..deepgram.protocol import ListenParams, ModelInfo, Refusal
from ..errors import ParamError, ProtocolViolation, ProviderError
from ..http.options import MAX_REQUEST_LINE_BYTES
from ..providers.base import LanguageAware, Provider, ProviderStream, StreamRequest
from ..transcripts.webhooks import WebhookSender
from .callback import StreamCallback
from .faults import GARBAGE_MESSAGES, ConnectionFault, Faults

log = logging.getLogger("asr_worker.dgserver")

MAX_MESSAGE_BYTES = 1 << 22


@dataclass
class HandshakeRecord:
    request_id: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    at: float  # loop time of arrival
    status: int = 0  # 101 when accepted


@dataclass
class ConnectionRecord:
    """What one accepted connection received and how it ended."""

    index: int
    request_id: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    params: ListenParams
    options: CallOptions = field(default_factory=CallOptions)  # the call's: keyterms, language, callback
    record_audio: bool = True
    audio: bytearray = field(default_factory=bytearray)
    bytes_received: int = 0
    messages: list[tuple[str, object]] = field(default_factory=list)  # ("audio", n) / ("text", str)
    sent: list[str] = field(default_factory=list)  # text frames sent, in order
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str = ""  # "server", "client" or "abort"
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def texts(self) -> list[str]:
        return [m for kind, m in self.messages if kind == "text" and isinstance(m, str)]

    def control_types(self) -> list[str]:
        """The `type` of each text message received, in order."""
        out = []
        for text in self.texts:
            try:
                out.append(str(json.loads(text).get("type")))
            except (ValueError, AttributeError):
                out.append("<not json>")
        return out

    def sent_of(self, kind: str) -> list[dict[str, object]]:
        out = []
        for text in self.sent:
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("type") == kind:
                out.append(message)
        return out


AudioHook = Callable[[ConnectionRecord, bytes], None]


class DeepgramServer:
    def __init__(
        self,
        provider: Provider,
        *,
        api_key: str | None = None,
        idle_timeout_s: float = 10.0,
        faults: Faults | None = None,
        record_audio: bool = True,
        max_records: int = 1000,
        audio_hook: AudioHook | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        """`webhooks`: what sends a stream's `callback` (None: a stream that names one is refused)."""
        self.provider = provider
        self.webhooks = webhooks
        self.api_key = api_key
        self.idle_timeout_s = idle_timeout_s
        self.faults = faults or Faults()
        self.record_audio = record_audio
        self.audio_hook = audio_hook
        self.handshakes: deque[HandshakeRecord] = deque(maxlen=max_records)
        self.connections: deque[ConnectionRecord] = deque(maxlen=max_records)
        self.accepted = 0
        self.handshakes_total = 0  # `handshakes` keeps the last `max_records`
        self.injected: Counter[str] = Counter()  # faults applied, by kind (drop, stall, reject_429...)
        self.port = 0
        self._live: set[_Connection] = set()
        self._before_outage: tuple[int, int, int] = (0, 0, 0)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{protocol.LISTEN_PATH}"

    @property
    def live_connections(self) -> int:
        return len(self._live)

    def begin_outage(self, status: int = 503) -> None:
        """Deepgram goes down: every live connection drops without a close frame, and every
        handshake is refused with `status` until `end_outage` (the drill's outage phase)."""
        faults = self.faults
        self._before_outage = (faults.reject_status, faults.reject_count, faults.reject_percent)
        faults.reject_status, faults.reject_count, faults.reject_percent = status, 0, 0
        faults.accept_first = 0
        for connection in list(self._live):
            self.injected["outage_drop"] += 1
            connection.abort()

    def end_outage(self) -> None:
        """Deepgram is back: handshakes are refused only as the faults said before the outage."""
        faults = self.faults
        faults.reject_status, faults.reject_count, faults.reject_percent = self._before_outage

    def app(self) -> web.Application:
        app = web.Application(handler_args={"max_line_size": MAX_REQUEST_LINE_BYTES})
        app.add_routes([web.get(protocol.LISTEN_PATH, self._listen), web.get("/health", self._health)])
        app.on_shutdown.append(self._on_shutdown)
        return app

    @asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[DeepgramServer]:
        """Serve until the block ends; `port` 0 picks a free one (see `self.port`)."""
        runner = web.AppRunner(self.app(), handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, backlog=1024)
            await site.start()
            self.port = _bound_port(runner, port)
            yield self
        finally:
            await runner.cleanup()

    async def _on_shutdown(self, _app: web.Application) -> None:
        for conn in list(self._live):
            await conn.close(protocol.CLOSE_GOING_AWAY, "server shutting down")

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "service": "asr-worker dg-server",
                "provider": self.provider.name,
                "connections": len(self._live),
            }
        )

    # --- the handshake --------------------------------------------------------------------

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        record = HandshakeRecord(
            request_id, list(request.query.items()), dict(request.headers), asyncio.get_running_loop().time()
        )
        self.handshakes.append(record)
        self.handshakes_total += 1
        faults = self.faults
        if faults.handshake_delay_ms:
            await asyncio.sleep(faults.handshake_delay_ms / 1000)
        status = faults.take_rejection()
        if status:
            self.injected[f"reject_{status}"] += 1
            return self._refuse(record, protocol.refusal_for(status), faults.retry_after_s)
        key, via_subprotocol = protocol.credentials(request.headers)
        if self.api_key is not None and (key is None or not token_matches(Secret(self.api_key), [key])):
            return self._refuse(record, protocol.refusal_for(401))
        try:
            params = ListenParams.from_query(request.query)
            options = CallOptions.from_query(request.query)
        except ParamError as exc:
            return self._refuse(record, Refusal(400, "Bad Request", f"Bad Request: {exc}"))
        if isinstance(self.provider, LanguageAware):
            unspoken = self.provider.language_refusal(options.language)
            if unspoken is not None:
                return self._refuse(record, protocol.unsupported_language(unspoken))
        if options.callback is not None and (self.webhooks is None or self.webhooks.options.secret is None):
            return self._refuse(
                record,
                Refusal(
                    400, "Bad Request", "Bad Request: callback needs ASR_WEBHOOK_SECRET set on this server"
                ),
            )
        ws = web.WebSocketResponse(
            protocols=("token", "bearer") if via_subprotocol else (),
            compress=False,  # audio does not deflate; Deepgram clients send it as it is
            max_msg_size=MAX_MESSAGE_BYTES,
            heartbeat=None,
        )
        if not ws.can_prepare(request).ok:
            return self._refuse(
                record, Refusal(426, "UPGRADE_REQUIRED", "This endpoint takes a WebSocket upgrade.")
            )
        ws.headers["dg-request-id"] = request_id
        await ws.prepare(request)
        record.status = 101
        conn_record = ConnectionRecord(
            index=self.accepted,
            request_id=request_id,
            query=record.query,
            headers=record.headers,
            params=params,
            options=options,
            record_audio=self.record_audio,
        )
        self.accepted += 1
        self.connections.append(conn_record)
        conn = _Connection(self, request, ws, conn_record)
        self._live.add(conn)
        try:
            await conn.run()
        finally:
            self._live.discard(conn)
            conn_record.ended.set()
        return ws

    def _refuse(self, record: HandshakeRecord, refusal: Refusal, retry_after_s: int = 0) -> web.Response:
        record.status = refusal.status
        headers = {"dg-request-id": record.request_id, "dg-error": refusal.err_msg}
        if refusal.status == 401:
            headers["WWW-Authenticate"] = 'Token realm="Deepgram"'
        if retry_after_s and refusal.status in (429, 503):
            headers["Retry-After"] = str(retry_after_s)
        log.info("handshake refused", extra={"status": refusal.status, "err_code": refusal.err_code})
        return web.json_response(refusal.body(record.request_id), status=refusal.status, headers=headers)


class _Connection:
    """One accepted connection: audio and control messages in, Deepgram messages out."""

    def __init__(
        self,
        server: DeepgramServer,
        request: web.Request,
        ws: web.WebSocketResponse,
        record: ConnectionRecord,
    ) -> None:
        self.server = server
        self.request = request
        self.ws = ws
        self.record = record
        self.params = record.params
        self.fmt = AudioFormat.parse(self.params.encoding, self.params.sample_rate, self.params.channels)
        self.model = ModelInfo(
            name=self.params.model,
            version=f"asr-worker-{__version__}",
            arch=server.provider.name,
            uuid=str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"asr-worker/{server.provider.name}/{self.params.model}")
            ),
        )
        self.created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z"
        self._sha = hashlib.sha256()
        self._last_input = asyncio.get_running_loop().time()
        self._close_requested = False
        self._closed = False
        self._replies = 0
        self._speaking: dict[int, bool] = {}
        self._last_word_end: dict[int, float] = {}
        self._stream: ProviderStream | None = None
        # Under `fault_percent`, this connection's fault (drawn once); `_stalled`: it stopped
        # answering; `_slow_s`: every reply waits this long.
        self._planned: ConnectionFault | None = server.faults.draw()
        self._stalled = False
        self._slow_s = 0.0
        callback, webhooks = record.options.callback, server.webhooks
        self._callback = (
            None
            if callback is None or webhooks is None
            else StreamCallback(webhooks, callback, record.request_id, self.fmt, server.provider.name)
        )

    async def run(self) -> None:
        """Serve the stream; with a `callback`, post its responses alongside, and return once
        the last is sent."""
        if self._callback is None:
            await self._serve()
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._callback.run(), name="dg-callback")
            try:
                await self._serve()
            finally:
                end_reason = "close_stream" if self._close_requested else "disconnected"
                self._callback.close(end_reason, self.fmt.seconds(self.record.bytes_received))

    async def _serve(self) -> None:
        request = StreamRequest(f"dg-{self.record.request_id}", None, self.fmt, options=self.record.options)
        try:
            self._stream = await self.server.provider.open(request)
        except ProviderError as exc:
            await self._send_json(protocol.error_message("ProviderError", exc.message))
            await self.close(protocol.CLOSE_INTERNAL, exc.message)
            return
        stream = self._stream
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self._write(stream))
                idle = tg.create_task(self._idle_watch())
                await self._read(stream)
                idle.cancel()
                if not writer.done() and not (self._closed or self.ws.closed):
                    # The socket is open but the reader stopped (CloseStream, or the engine
                    # failed): the writer sends what is left, then closes with the right code.
                    await asyncio.wait({writer}, timeout=2.0)
                writer.cancel()
            if not (self._closed or self.ws.closed):
                await self.close(protocol.CLOSE_INTERNAL, "the speech engine stopped")
        finally:
            with contextlib.suppress(Exception):
                await stream.abort()
            if self.record.close_code is None:
                self.record.close_code = self.ws.close_code
                self.record.closed_by = self.record.closed_by or "client"

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.record.close_code, self.record.close_reason, self.record.closed_by = code, reason, "server"
        with contextlib.suppress(ConnectionError, RuntimeError):
            # A close reason fits in 123 bytes; cut on a character boundary.
            await self.ws.close(code=code, message=reason.encode()[:123].decode("utf-8", "ignore").encode())

    def abort(self) -> None:
        """End the TCP connection with no close frame, as a network fault does."""
        self._closed = True
        self.record.close_code, self.record.closed_by = protocol.CLOSE_ABNORMAL, "abort"
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    # --- input ----------------------------------------------------------------------------

    async def _read(self, stream: ProviderStream) -> None:
        loop = asyncio.get_running_loop()
        record, faults, hook = self.record, self.server.faults, self.server.audio_hook
        async for msg in self.ws:
            self._last_input = loop.time()
            if msg.type is WSMsgType.BINARY:
                data: bytes = msg.data
                if not data:  # the legacy end-of-stream signal: same as CloseStream
                    if record.record_audio:
                        record.messages.append(("audio", 0))
                    await self._control("CloseStream", stream)
                    continue
                record.bytes_received += len(data)
                if record.record_audio:  # tests; a long-running server keeps nothing per message
                    record.messages.append(("audio", len(data)))
                    record.audio += data
                self._sha.update(data)
                if await self._fault_due(faults, record.bytes_received):
                    return
                if self._stalled:
                    continue  # a server that stopped answering takes audio and does nothing with it
                if hook is not None:  # the audio the engine hears
                    hook(record, data)
                try:
                    await stream.send_audio(data)
                except ProviderError:
                    return  # the writer sees the same failure from events() and closes
            elif msg.type is WSMsgType.TEXT:
                if record.record_audio:
                    record.messages.append(("text", msg.data))
                try:
                    kind = protocol.parse_client_message(msg.data)
                except ProtocolViolation as exc:
                    await self._send_json(protocol.error_message("SchemaError", exc.detail, msg.data[:200]))
                    continue
                await self._control(kind, stream)
            else:
                return

    async def _control(self, kind: str, stream: ProviderStream) -> None:
        if self._stalled:
            return
        try:
            if kind == "KeepAlive":
                return
            if kind == "Finalize":
                await stream.finalize()
            elif kind == "CloseStream":
                if not self._close_requested:
                    self._close_requested = True
                    await stream.close_stream()
            else:
                await self._send_json(
                    protocol.error_message("SchemaError", f"unknown message type {kind[:40]!r}", kind[:200])
                )
        except ProviderError:
            pass  # the writer sees the failure from events() and closes

    async def _fault_due(self, faults: Faults, received: int) -> bool:
        """Apply the connection faults once enough audio arrived. True: the connection is gone."""
        ms = self.fmt.seconds(received) * 1000
        planned = self._planned
        if planned is not None:  # fault_percent: this connection's own fault, at its own point
            if ms < planned.after_ms:
                return False
            self._planned = None
            return await self._strike(planned.kind, faults)
        if faults.fault_percent or not faults.hits(self.record.index):
            return False
        if faults.drop_after_ms and ms >= faults.drop_after_ms:
            return await self._strike("drop", faults)
        if faults.close_1011_after_ms and ms >= faults.close_1011_after_ms:
            return await self._strike("close_1011", faults)
        if faults.close_1008_after_ms and ms >= faults.close_1008_after_ms:
            return await self._strike("close_1008", faults)
        if faults.stall_after_ms and ms >= faults.stall_after_ms and not self._stalled:
            return await self._strike("stall", faults)
        return False

    async def _strike(self, kind: str, faults: Faults) -> bool:
        """Apply one connection fault now. True: the connection is gone."""
        self.server.injected[kind] += 1
        if kind == "drop":
            self.abort()
        elif kind == "close_1011":
            await self.close(protocol.CLOSE_INTERNAL, protocol.NET0000_REASON)
        elif kind == "close_1008":
            await self.close(protocol.CLOSE_POLICY, protocol.DATA0000_REASON)
        elif kind == "stall":
            self._stalled = True  # from now on nothing is sent: no result, no Metadata, no close
            return False
        else:  # slow
            self._slow_s = faults.reply_delay_ms / 1000
            return False
        return True

    async def _idle_watch(self) -> None:
        """Deepgram's idle close; and, after CloseStream, a bound on the engine's last results."""
        loop = asyncio.get_running_loop()
        timeout = self.server.idle_timeout_s
        while not self._close_requested:
            remaining = self._last_input + timeout - loop.time()
            if remaining <= 0:
                await self.close(protocol.CLOSE_INTERNAL, protocol.NET0001_REASON)
                return
            await asyncio.sleep(remaining)
        await asyncio.sleep(timeout)  # the writer closes long before this, unless the engine hangs
        await self.close(protocol.CLOSE_INTERNAL, protocol.NET0000_REASON)

    # --- output ---------------------------------------------------------------------------

    async def _write(self, stream: ProviderStream) -> None:
        try:
            async for event in stream.events():
                if self._callback is not None and isinstance(event, TranscriptResult):
                    self._callback.keep(event)
                for message in self._messages_for(event):
                    await self._reply(message)
        except ProviderError as exc:
            if exc.retryable:
                await self.close(protocol.CLOSE_INTERNAL, exc.message)
            else:
                await self.close(protocol.CLOSE_POLICY, exc.message)
            return
        if self._close_requested:
            await self._reply(
                protocol.metadata_message(
                    request_id=self.record.request_id,
                    sha256=self._sha.hexdigest(),
                    created=self.created,
                    duration_s=self.fmt.seconds(self.record.bytes_received),
                    channels=self.fmt.channels,
                    model=self.model,
                )
            )
            await self.close(protocol.CLOSE_NORMAL, "")
        else:
            await self.close(protocol.CLOSE_INTERNAL, "the speech engine ended the stream")

    def _messages_for(self, event: ProviderEvent) -> list[dict[str, object]]:
        params, channels = self.params, self.fmt.channels
        if isinstance(event, TranscriptResult):
            out: list[dict[str, object]] = []
            ch = event.channel
            if event.words and not self._speaking.get(ch) and params.vad_events:
                out.append(protocol.speech_started_message(ch, channels, event.words[0].start))
            if event.words:
                self._speaking[ch] = True
            if event.is_final or params.interim_results:
                out.append(
                    protocol.results_message(
                        event, channels=channels, request_id=self.record.request_id, model=self.model
                    )
                )
            if event.is_final and event.words:
                self._last_word_end[ch] = event.words[-1].end
            if event.speech_final:
                self._speaking[ch] = False
            last = self._last_word_end.get(ch)
            gap_s = (params.utterance_end_ms or 0) / 1000
            if (
                params.utterance_end_ms
                and params.interim_results
                and last is not None
                and not event.words
                and event.end - last >= gap_s
            ):
                out.append(protocol.utterance_end_message(ch, channels, last))
                del self._last_word_end[ch]
                self._speaking[ch] = False
            return out
        if isinstance(event, SpeechStarted):
            # Deepgram sends SpeechStarted only to a client that asked (vad_events=true), once per
            # utterance: the channel is speaking from here, so its Results add no second one.
            ch = event.channel
            if not params.vad_events or self._speaking.get(ch):
                return []
            self._speaking[ch] = True
            return [protocol.speech_started_message(ch, channels, event.timestamp)]
        if isinstance(event, UtteranceEnd):
            # Only for a client that asked (utterance_end_ms, which needs interim_results), and once
            # per utterance: the engine's and the one the Results branch makes close the same words.
            ch = event.channel
            if not (params.utterance_end_ms and params.interim_results) or ch not in self._last_word_end:
                return []
            del self._last_word_end[ch]
            self._speaking[ch] = False
            return [protocol.utterance_end_message(ch, channels, event.last_word_end)]
        return []  # StreamMetadata: the server sends its own Metadata at close

    async def _reply(self, message: dict[str, object]) -> None:
        if self._stalled:
            return
        faults = self.server.faults
        delay_s = self._slow_s if faults.fault_percent else faults.reply_delay_ms / 1000
        if delay_s:
            await asyncio.sleep(delay_s)
        self._replies += 1
        if faults.garbage_every and self._replies % faults.garbage_every == 0:
            garbage = GARBAGE_MESSAGES[(self._replies // faults.garbage_every) % len(GARBAGE_MESSAGES)]
            with contextlib.suppress(ConnectionError, RuntimeError):
                if isinstance(garbage, bytes):
                    await self.ws.send_bytes(garbage)
                else:
                    await self.ws.send_str(garbage)
        await self._send_json(message)
        if self._callback is not None:
            self._callback.post(message)

    async def _send_json(self, message: dict[str, object]) -> None:
        if self.ws.closed or self._stalled:
            return
        text = protocol.dumps(message)
        if self.record.record_audio:
            self.record.sent.append(text)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(text)


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
