"""A server that speaks Deepgram's live `/v1/listen` protocol on top of any provider of ours, and
Flux's `/v2/listen` (`flux.py`).

What a Deepgram client sees, it gets here: the handshake (query parameters, `Authorization:
Token`/`Bearer` or `Sec-WebSocket-Protocol: token, KEY`, `dg-request-id` on every answer, a
refusal as `dg-error` plus a JSON body), binary audio, the JSON text messages KeepAlive,
Finalize, CloseStream and Configure (answered with ConfigureSuccess or ConfigureFailure),
`Results` with every field present, `SpeechStarted` and `UtteranceEnd` when asked for,
`Metadata` then close 1000 after CloseStream, and the 10-second idle close 1011 with
Deepgram's NET-0001 reason. Every `/v1/listen` option is honoured or refused with a 400 that
says why (docs/deepgram.md has the table): the engine ends utterances at the stream's
`endpointing`; results are written as the stream's formatting options ask
(`core/formatting.py`), then redacted, then searched. A stream's `language` is the call's (its
results name it, `multi` the one detected), one the engine cannot transcribe is refused with
Deepgram's 400; its `callback` gets every response POSTed as well, then the stream's transcript
document (`callback.py`). Only JSON text frames are ever sent (unless a garbage fault is on):
strict clients end their listen loop on anything else.

Both routes share the handshake (the key, the refusals, the handshake faults) and what a
connection has in common (`connection.py`). Every connection is recorded (bounded) for tests:
query, headers, audio, the text messages in order, the close. `Faults` make it misbehave on
demand.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from ..core.formatting import Formatter
from ..core.provider_events import ProviderEvent, SpeechStarted, TranscriptResult, UtteranceEnd, Word
from ..core.redact import Redactor
from ..core.search import searched
from ..credentials import Secret, token_matches
from ..deepgram import configure as configure_message
from ..deepgram import protocol
from ..deepgram.flux import LISTEN_V2_PATH, FluxParams
from ..deepgram.protocol import ListenParams, ModelInfo, Refusal
from ..errors import ParamError, ProtocolError, ProtocolViolation, ProviderError
from ..http.options import MAX_REQUEST_LINE_BYTES
from ..providers.base import KeytermUpdates, LanguageAware, Provider, ProviderStream, StreamRequest
from ..transcripts.webhooks import WebhookSender
from .callback import StreamCallback
from .connection import ServedConnection, StreamRecord
from .faults import Faults
from .flux import FluxConnection, FluxRecord

log = logging.getLogger("asr_worker.dgserver")

MAX_MESSAGE_BYTES = 1 << 22


@dataclass
class HandshakeRecord:
    request_id: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    at: float  # loop time of arrival
    status: int = 0  # 101 when accepted


@dataclass(kw_only=True)
class ConnectionRecord(StreamRecord):
    """What one accepted `/v1/listen` connection received and how it ended."""

    params: ListenParams
    options: CallOptions = field(default_factory=CallOptions)  # the call's: keyterms, language, callback


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
        self.flux_connections: deque[FluxRecord] = deque(maxlen=max_records)
        self.accepted = 0
        self.handshakes_total = 0  # `handshakes` keeps the last `max_records`
        self.injected: Counter[str] = Counter()  # faults applied, by kind (drop, stall, reject_429...)
        self.port = 0
        self._live: set[ServedConnection] = set()
        self._before_outage: tuple[int, int, int] = (0, 0, 0)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{protocol.LISTEN_PATH}"

    @property
    def flux_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{LISTEN_V2_PATH}"

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
        app.add_routes(
            [
                web.get(protocol.LISTEN_PATH, self._listen),
                web.get(LISTEN_V2_PATH, self._listen_v2),
                web.get("/health", self._health),
            ]
        )
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
        """`/v1/listen`: Deepgram's live results."""
        record, answer, via_subprotocol = await self._handshake(request)
        if answer is not None:
            return answer
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
        ws = await self._upgrade(request, record, via_subprotocol)
        if not isinstance(ws, web.WebSocketResponse):
            return ws
        conn_record = ConnectionRecord(
            index=self._next_index(),
            request_id=record.request_id,
            query=record.query,
            headers=record.headers,
            params=params,
            options=options,
            record_audio=self.record_audio,
        )
        self.connections.append(conn_record)
        if params.tags:  # Deepgram keeps a request's tags with its usage record; this is ours
            log.info(
                "dg-server stream tagged",
                extra={"dg_request_id": record.request_id, "tags": list(params.tags)},
            )
        await self._serve(_Connection(self, request, ws, conn_record))
        return ws

    async def _listen_v2(self, request: web.Request) -> web.StreamResponse:
        """`/v2/listen`: Flux, Deepgram's turn-taking API for voice agents."""
        record, answer, via_subprotocol = await self._handshake(request)
        if answer is not None:
            return answer
        try:
            params = FluxParams.from_query(request.query.items())
        except ParamError as exc:
            return self._refuse(record, Refusal(400, "Bad Request", f"Bad Request: {exc}"))
        ws = await self._upgrade(request, record, via_subprotocol)
        if not isinstance(ws, web.WebSocketResponse):
            return ws
        conn_record = FluxRecord(
            index=self._next_index(),
            request_id=record.request_id,
            query=record.query,
            headers=record.headers,
            params=params,
            record_audio=self.record_audio,
        )
        self.flux_connections.append(conn_record)
        await self._serve(FluxConnection(self, request, ws, conn_record))
        return ws

    async def _handshake(self, request: web.Request) -> tuple[HandshakeRecord, web.Response | None, bool]:
        """What every route checks first, in Deepgram's order: the handshake faults, then the key.
        Returns the record, a refusal (or None), and whether the key came as a subprotocol."""
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
            return record, self._refuse(record, protocol.refusal_for(status), faults.retry_after_s), False
        key, via_subprotocol = protocol.credentials(request.headers)
        if self.api_key is not None and (key is None or not token_matches(Secret(self.api_key), [key])):
            return record, self._refuse(record, protocol.refusal_for(401)), False
        return record, None, via_subprotocol

    async def _upgrade(
        self, request: web.Request, record: HandshakeRecord, via_subprotocol: bool
    ) -> web.WebSocketResponse | web.Response:
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
        ws.headers["dg-request-id"] = record.request_id
        await ws.prepare(request)
        record.status = 101
        return ws

    def _next_index(self) -> int:
        """Connections of both routes are counted together: the faults aim at the first ones."""
        index = self.accepted
        self.accepted += 1
        return index

    async def _serve(self, conn: ServedConnection) -> None:
        self._live.add(conn)
        try:
            await conn.run()
        finally:
            self._live.discard(conn)
            conn.record.ended.set()

    def _refuse(self, record: HandshakeRecord, refusal: Refusal, retry_after_s: int = 0) -> web.Response:
        record.status = refusal.status
        headers = {"dg-request-id": record.request_id, "dg-error": refusal.err_msg}
        if refusal.status == 401:
            headers["WWW-Authenticate"] = 'Token realm="Deepgram"'
        if retry_after_s and refusal.status in (429, 503):
            headers["Retry-After"] = str(retry_after_s)
        log.info("handshake refused", extra={"status": refusal.status, "err_code": refusal.err_code})
        return web.json_response(refusal.body(record.request_id), status=refusal.status, headers=headers)


class _Connection(ServedConnection):
    """One accepted `/v1/listen` connection: audio and control messages in, Deepgram messages out."""

    def __init__(
        self,
        server: DeepgramServer,
        request: web.Request,
        ws: web.WebSocketResponse,
        record: ConnectionRecord,
    ) -> None:
        self.params = record.params
        super().__init__(
            server,
            request,
            ws,
            record,
            AudioFormat.parse(self.params.encoding, self.params.sample_rate, self.params.channels),
        )
        self.record: ConnectionRecord = record
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
        self._speaking: dict[int, bool] = {}
        self._last_word_end: dict[int, float] = {}
        self._stream: ProviderStream | None = None
        # `redact=pci|ssn|numbers|true`: every result is redacted before it is sent, as Deepgram's are.
        self._redactor = Redactor.of(frozenset(self.params.redact))
        # The formatting options (Deepgram's defaults where the query names none), which a
        # Configure may change mid-stream.
        self._format = self.params.format
        self._formatter = Formatter.of(self._format)
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
            await self._serve_stream()
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._callback.run(), name="dg-callback")
            try:
                await self._serve_stream()
            finally:
                end_reason = "close_stream" if self._close_requested else "disconnected"
                self._callback.close(end_reason, self.fmt.seconds(self.record.bytes_received))

    async def _serve_stream(self) -> None:
        params = self.params
        options = CallOptions(  # formatting is the server's own (Configure changes it), never the engine's
            keyterms=params.keyterms,
            language=self.record.options.language,
            redact=frozenset(params.redact),
            # Named: as asked (`false`: off). Not named: the engine's own, not Deepgram's 10 ms,
            # which is its model's and cuts this engine's utterances at the gaps between words.
            endpointing_ms=self.record.options.endpointing_ms,
            utterance_end_ms=params.utterance_end_ms,
        )
        request = StreamRequest(f"dg-{self.record.request_id}", None, self.fmt, options=options)
        try:
            self._stream = await self.server.provider.open(request)
        except ProviderError as exc:
            await self._send_json(protocol.error_message("ProviderError", exc.message))
            await self.close(protocol.CLOSE_INTERNAL, exc.message)
            return
        await self._pump(self._stream)

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
                if kind == protocol.CONFIGURE:
                    await self._configure(msg.data, stream)
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

    async def _configure(self, text: str, stream: ProviderStream) -> None:
        """A mid-stream Configure: new keyterms for the engine, formatting features on or off,
        all or nothing; answered with ConfigureSuccess, or ConfigureFailure (the stream keeps
        its settings), or an Error for one that is not Deepgram's shape. The stream goes on."""
        if self._stalled:
            return
        request_id = self.record.request_id
        try:
            configure = configure_message.parse_configure(text)
        except ProtocolError as exc:
            await self._send_json(protocol.error_message("SchemaError", exc.message, text[:200]))
            return
        except ParamError as exc:
            await self._send_json(
                configure_message.configure_failure(
                    request_id, "CONFIGURE_KEYTERM_LIMIT_EXCEEDED", exc.message
                )
            )
            return
        if configure.keyterms is not None and not (
            isinstance(stream, KeytermUpdates) and stream.update_keyterms(configure.keyterms)
        ):
            await self._send_json(
                configure_message.configure_failure(
                    request_id,
                    "CONFIGURE_KEYTERMS_NOT_SUPPORTED",
                    f"the {self.server.provider.name} engine behind this server takes no keyterms "
                    "(the local engine's Whisper does; its Moonshine does not)",
                )
            )
            return
        if configure.features:
            self._format = self._format.with_flags(dict(configure.features))
            self._formatter = Formatter.of(self._format)
        await self._send_json(configure_message.configure_success(request_id, configure.keyterms))

    # --- output ---------------------------------------------------------------------------

    async def _write(self, stream: ProviderStream) -> None:
        try:
            async for event in stream.events():
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
            event = self._written(event)
            if self._callback is not None:  # the document says what the socket said: redacted too
                self._callback.keep(event)
            out: list[dict[str, object]] = []
            ch = event.channel
            if event.words and not self._speaking.get(ch) and params.vad_events:
                out.append(protocol.speech_started_message(ch, channels, event.words[0].start))
            if event.words:
                self._speaking[ch] = True
            if event.is_final or params.interim_results:
                out.append(
                    protocol.results_message(
                        event,
                        channels=channels,
                        request_id=self.record.request_id,
                        model=self.model,
                        extra=params.extra,
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

    def _written(self, result: TranscriptResult) -> TranscriptResult:
        """A result as the stream asked for it: formatted, redacted, searched, and with its
        channel as the speaker of every word under `diarize` (a two-channel stream's sides)."""
        if self._formatter is not None:
            result = self._formatter.result(result)
        if self._redactor is not None:
            result = self._redactor.result(result)
        if self._format.search:
            result = searched(result, self._format.search)
        if self.params.diarize and result.words:
            ch = result.channel
            result = TranscriptResult(
                result.channel,
                result.is_final,
                result.speech_final,
                result.text,
                result.confidence,
                result.start,
                result.duration,
                tuple(
                    Word(w.word, w.start, w.end, w.confidence, w.punctuated_word, ch) for w in result.words
                ),
                result.from_finalize,
                result.channels,
                result.language,
                result.languages,
                result.search,
                result.entities,
            )
        return result

    async def _reply(self, message: dict[str, object]) -> None:
        await super()._reply(message)
        if self._callback is not None and not self._stalled:
            self._callback.post(message)


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
