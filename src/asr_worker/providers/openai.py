"""The `openai` provider: one OpenAI Realtime transcription WebSocket per provider stream, to
OpenAI or any compatible server (`OPENAI_BASE_URL`, e.g. another asr-worker's `/v1/realtime`).

The session core decides when to open, send, finalize, reconnect and replay; this module
speaks the Realtime protocol (`openai_realtime.protocol`, shared with the worker's own
server) for it:

* on open, a GA `session.update`: transcription session, the call's format (`audio/pcm` 24 kHz
  as it is, `audio/pcmu` / `audio/pcma` at 8 kHz as they are; any other mono format is
  resampled to 24 kHz pcm16 here), `server_vad` turn detection, the configured model, and
  the call's keyterms (if any) listed in the transcription `prompt`;
* audio goes out continuously as `input_audio_buffer.append`;
* `...transcription.delta` events become interims (the item's text so far), `.completed`
  becomes the final of its item, covering the stream's audio up to the item's end
  (`speech_stopped.audio_end_ms`, or where a commit of ours cut it), so the core knows what
  no longer needs replaying after a drop; the silence before a `speech_started` (with no item
  pending) gets an empty final for the same reason;
* finalize commits the buffer; its item's `completed` is the `from_finalize` final (a commit
  of too little audio is answered by an empty one); close finalizes, waits for every item
  still transcribing, then closes the socket;
* failures become `ProviderError`s whose `retryable` is the decision the core needs:
  handshake 401/403/400/404 not retryable, 429/5xx/network retryable; a drop, an unasked
  close, an item whose transcription failed, or a server that stops answering (a commit or
  an item not completed within its time: `stalled`) are retryable, and the core replays what
  no final covered on a new connection.

A circuit breaker shared by all calls fails new calls at once while the endpoint fails for
everyone. The key goes into the `Authorization` header and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np
import soxr
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .. import jsonwire
from ..core.audio import AudioFormat, Encoding
from ..core.clock import Clock, SystemClock
from ..core.codecs import to_linear16
from ..core.provider_events import ProviderError, ProviderEvent, SpeechStarted, TranscriptResult
from ..credentials import Secret
from ..openai_realtime import protocol
from ..openai_realtime.protocol import (
    G711_ALAW,
    G711_ULAW,
    MAX_PROMPT_CHARS,
    PCM16,
    InputFormat,
    ProtocolViolation,
    SessionConfig,
    Transcription,
    TurnDetection,
)
from .base import ProviderHealth, StreamRequest
from .breaker import CircuitBreaker
from .connection_metrics import ConnectionMetrics
from .handshake import Refused, Unreachable, open_websocket

log = logging.getLogger("asr_worker.openai")
# websockets logs handshake headers at DEBUG, the Authorization header among them.
_wire_log = logging.getLogger("asr_worker.openai.wire")
_wire_log.setLevel(logging.INFO)

_HIDDEN: Final = "<OPENAI_API_KEY>"
SESSION_UPDATE_ID: Final = "asr_worker_session_update"  # an error naming it: the session was refused
# Error types as metric labels (the server chooses them: anything else counts as `other`).
_ERROR_TYPES: Final = frozenset(
    {"invalid_request_error", "server_error", "rate_limit_error", "authentication_error", "error"}
)
_NOT_RETRYABLE_STATUSES: Final = frozenset({400, 401, 402, 403, 404, 405, 410, 413, 414, 415, 422})
_STATUS_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
}


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    base_url: str = "https://api.openai.com/v1"
    api_key: Secret | None = field(default=None, repr=False)  # never printed
    model: str = protocol.DEFAULT_MODEL
    language: str | None = None
    open_timeout_s: float = 5.0
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 10.0
    close_timeout_s: float = 1.0
    item_timeout_s: float = 10.0  # an item committed (by VAD or us) must be completed within this
    finalize_timeout_s: float = 3.0  # a commit of ours must be completed (or refused as empty) within this
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 10.0


def realtime_url(base_url: str) -> str:
    """OPENAI_BASE_URL (http(s) or ws(s)) to its realtime transcription WebSocket URL."""
    parts = urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws", "wss": "wss", "ws": "ws"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError("must be an http(s) or ws(s) URL such as https://api.openai.com/v1")
    path = parts.path.rstrip("/") + "/realtime"
    return urlunsplit((scheme, parts.netloc, path, urlencode({"intent": "transcription"}), ""))


def wire_format(fmt: AudioFormat) -> InputFormat | None:
    """The Realtime format the call's audio goes out in as it is, or None (resampled to pcm16)."""
    if fmt.channels != 1:
        return None
    if fmt.encoding is Encoding.LINEAR16 and fmt.sample_rate == 24000:
        return PCM16
    if fmt.sample_rate == 8000 and fmt.encoding is Encoding.MULAW:
        return G711_ULAW
    if fmt.sample_rate == 8000 and fmt.encoding is Encoding.ALAW:
        return G711_ALAW
    return None


def keyterms_prompt(keyterms: tuple[str, ...]) -> str | None:
    """The call's keyterms as a transcription `prompt`: the words listed, comma-separated (as
    OpenAI's guidance has it for spellings the model should expect), as many whole terms as
    fit the prompt limit; None when the call names none."""
    prompt = ""
    for term in keyterms:
        longer = f"{prompt}, {term}" if prompt else term
        if len(longer) > MAX_PROMPT_CHARS:
            break
        prompt = longer
    return prompt or None


class OpenAIMetrics(ConnectionMetrics):
    def __init__(self, breaker_state: Callable[[], float]) -> None:
        super().__init__(
            "openai",
            "the Realtime server",
            breaker_state,
            error_label="type",
            stall_help="Connections given up because a commit or an item was not answered in time.",
        )


class OpenAIProvider:
    name = "openai"

    def __init__(self, options: OpenAIOptions, clock: Clock | None = None) -> None:
        self.options = options
        self.url = realtime_url(options.base_url)
        self._clock = clock or SystemClock()
        self.breaker = CircuitBreaker(options.breaker_threshold, options.breaker_cooldown_s)
        self.metrics = OpenAIMetrics(lambda: float(self.breaker.state(self._clock.monotonic())))
        key = "" if options.api_key is None else options.api_key.reveal()
        self._headers = [("Authorization", f"Bearer {key}")] if key else []
        self.scrub: Callable[[str], str] = (
            (lambda text: text.replace(key, _HIDDEN)) if key and len(key) >= 4 else str
        )
        self._refusal: str | None = None
        self._last_failure = ""

    async def open(self, request: StreamRequest) -> OpenAIStream:
        now = self._clock.monotonic()
        refused = (
            self.breaker.refuse_new_call(now, "the OpenAI endpoint", self._last_failure)
            if request.attempt == 1
            else None
        )
        if refused is not None:
            self.metrics.failed_fast.inc()
            raise refused
        if request.fmt.channels != 1:
            raise ProviderError(
                "unsupported_format",
                "the openai provider takes one channel; this call has two",
                retryable=False,
            )
        started = self._clock.monotonic()
        conn = await open_websocket(self.url, self._headers, self.options, max_queue=256, logger=_wire_log)
        if isinstance(conn, Refused):
            raise self._refused(conn.response.status_code, bytes(conn.response.body or b""))
        if isinstance(conn, Unreachable):
            if conn.kind == "bad_url":
                raise ProviderError("bad_url", "OPENAI_BASE_URL is not a usable URL", retryable=False)
            raise self._network_failure(conn.kind, self.scrub(conn.detail))
        self.metrics.handshakes.labels("101").inc()
        self.metrics.handshake_seconds.observe(self._clock.monotonic() - started)
        self.breaker.success()
        self._refusal = None
        stream = OpenAIStream(conn, request, self.options, self.metrics, self.scrub)
        await stream.start()
        return stream

    def _refused(self, status: int, body: bytes) -> ProviderError:
        self.metrics.handshakes.labels(str(status)).inc()
        message = ""
        try:
            data = jsonwire.loads(body.decode("utf-8", "replace")) if body else None
        except ValueError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = str(error["message"])
        shown = self.scrub(message)[:200] or f"HTTP {status}"
        code = _STATUS_CODES.get(status, f"http_{status}")
        if status in _NOT_RETRYABLE_STATUSES:
            self._refusal = f"the endpoint refused the connection: {status} {shown}"
            return ProviderError(
                code,
                f"the OpenAI endpoint refused the connection ({status}: {shown})",
                retryable=False,
                status=status,
            )
        return self._network_failure(code, f"{status}: {shown}", status)

    def _network_failure(self, code: str, detail: str, status: int | None = None) -> ProviderError:
        if status is None:
            self.metrics.handshakes.labels(code).inc()
        self._last_failure = f"{code}: {detail}"
        now = self._clock.monotonic()
        self.breaker.failure(now)
        return ProviderError(
            code,
            f"could not reach the OpenAI endpoint ({detail})",
            retryable=True,
            status=status,
            outage=self.breaker.is_open(now),
        )

    def taking_new_calls(self) -> bool:
        """New calls fail at once while the breaker is open (a fallback takes them meanwhile)."""
        return not self.breaker.is_open(self._clock.monotonic())

    def health(self) -> ProviderHealth:
        return self.breaker.health(self._clock.monotonic(), self._last_failure, self._refusal)

    async def aclose(self) -> None:
        return None

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(self.metrics.registry)


@dataclass(slots=True)
class _Item:
    id: str
    start_s: float
    end_s: float | None = None  # where its audio ends (speech_stopped, or our commit)
    text: str = ""  # the deltas so far
    from_finalize: bool = False
    due: float | None = None  # loop time by which it must be completed


class OpenAIStream:
    """One Realtime connection. Its methods map every socket failure to a ProviderError."""

    def __init__(
        self,
        conn: ClientConnection,
        request: StreamRequest,
        options: OpenAIOptions,
        metrics: OpenAIMetrics,
        scrub: Callable[[str], str],
    ) -> None:
        self._conn = conn
        self._options = options
        self._metrics = metrics
        self._scrub = scrub
        self._interaction_id = request.interaction_id
        self._fmt = request.fmt
        self._prompt = keyterms_prompt(request.keyterms)
        self._wire = wire_format(request.fmt)
        self._resampler = (
            None
            if self._wire is not None
            else soxr.ResampleStream(request.fmt.sample_rate, 24000, 1, dtype="int16")
        )
        # The events one server message makes (a few at most), until `events()` yields them.
        self._out: deque[ProviderEvent] = deque()
        self._error: ProviderError | None = None
        self._sent_bytes = 0  # of the call's format, on this stream
        self._committed_bytes = 0  # `_sent_bytes` at our last commit
        self._items: dict[str, _Item] = {}
        self._speech: dict[str, float] = {}  # item -> speech start, until committed
        self._stopped: dict[str, float] = {}  # item -> speech end, until committed
        self._finalizes: deque[tuple[float, float]] = deque()  # (stream seconds, due loop time)
        self._final_end = 0.0
        self._done: deque[str] = deque(maxlen=64)  # the items completed last
        self._closing = False
        self._warned = False
        self._loop = asyncio.get_running_loop()
        self._watchdog: asyncio.TimerHandle | None = None
        self._stalled = False

    async def start(self) -> None:
        config = SessionConfig(
            format=self._wire or PCM16,
            transcription=Transcription(self._options.model, self._options.language, self._prompt),
            turn_detection=TurnDetection(),
        )
        update = protocol.session_update_event(config)
        update["event_id"] = SESSION_UPDATE_ID
        await self._send(update)

    # --- ProviderStream -------------------------------------------------------------------

    async def send_audio(self, data: bytes) -> None:
        self._sent_bytes += len(data)
        if self._wire is None and self._resampler is None:
            return  # the stream is closing: its resampler has given its last samples
        if self._resampler is not None:
            pcm = to_linear16(data, self._fmt)
            data = np.asarray(self._resampler.resample_chunk(pcm), dtype="<i2").tobytes()
            if not data:
                return
        await self._send(protocol.append_event(data))

    async def keepalive(self) -> None:
        return None  # the Realtime API has no idle timeout on a silent input buffer

    async def finalize(self) -> None:
        self._committed_bytes = self._sent_bytes
        self._finalizes.append(
            (self._fmt.seconds(self._sent_bytes), self._loop.time() + self._options.finalize_timeout_s)
        )
        self._arm()
        await self._send(protocol.commit_event())

    async def close_stream(self) -> None:
        self._closing = True
        tail = b""
        if self._resampler is not None:  # what the resampler still holds: the end of the audio
            last = self._resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
            tail = np.asarray(last, dtype="<i2").tobytes()
            self._resampler = None
            if tail:
                await self._send(protocol.append_event(tail))
        if tail or self._sent_bytes > self._committed_bytes:
            await self.finalize()  # (the core's Finalize just before has usually committed it all)
        elif self._idle():
            await self._conn.close()

    async def abort(self) -> None:
        self._stop_watchdog()
        self._closing = True
        try:
            await self._conn.close()
        except Exception:
            self._conn.transport.abort()

    async def events(self) -> AsyncIterator[ProviderEvent]:
        out = self._out
        try:
            async for message in self._conn:
                self._handle(message)
                while out:
                    yield out.popleft()
                if self._error is not None:
                    break
                if self._closing and self._idle():
                    await self._conn.close()  # every item is in: the stream's clean end
                    return
        except ConnectionClosed as exc:
            while out:
                yield out.popleft()
            raise (self._error or self._closed_error(exc)) from None
        finally:
            self._stop_watchdog()
        if self._error is not None:
            raise self._error
        rcvd = self._conn.protocol.close_rcvd
        code = rcvd.code if rcvd is not None else 1006
        self._metrics.closes.labels(str(code)).inc()
        if not self._closing:
            raise ProviderError(
                "closed",
                f"the OpenAI endpoint closed the stream ({code}) before it was asked to",
                retryable=True,
            )

    # --- server events --------------------------------------------------------------------

    def _handle(self, message: str | bytes) -> None:
        try:
            event = protocol.parse_server_event(message)
        except ProtocolViolation as exc:
            self._metrics.garbage.labels(exc.kind).inc()
            if not self._warned:
                self._warned = True
                log.warning(
                    "the OpenAI endpoint sent a message that is not valid protocol; skipping such messages",
                    extra={
                        "interaction_id": self._interaction_id,
                        "kind": exc.kind,
                        "detail": self._scrub(exc.detail)[:200],
                    },
                )
            return
        if isinstance(event, protocol.SpeechStarted):
            start = event.audio_start_ms / 1000
            self._speech[event.item_id] = start
            if not self._items and not self._finalizes and start > self._final_end:
                # Nothing is being transcribed, and the server heard no speech before `start`:
                # an empty final covers that silence, so it is not kept (or replayed) any more.
                self._put(TranscriptResult(0, True, False, "", 0.0, self._final_end, start - self._final_end))
                self._final_end = start
            self._put(SpeechStarted(0, start))
        elif isinstance(event, protocol.SpeechStopped):
            self._stopped[event.item_id] = event.audio_end_ms / 1000
        elif isinstance(event, protocol.Committed):
            self._committed(event.item_id)
        elif isinstance(event, protocol.TranscriptionDelta):
            if event.item_id in self._done:
                return  # a late delta of an item already completed: its final is out
            item = self._items.get(event.item_id)
            if item is None:  # deltas before the commit (a server that streams during speech)
                item = self._items[event.item_id] = _Item(
                    event.item_id, self._speech.get(event.item_id, self._final_end)
                )
            item.text += event.delta
            end = item.end_s if item.end_s is not None else self._fmt.seconds(self._sent_bytes)
            self._put(self._result(item, end, is_final=False))
        elif isinstance(event, protocol.TranscriptionCompleted):
            self._completed(event.item_id, event.transcript)
        elif isinstance(event, protocol.TranscriptionFailed):
            self._fail(
                ProviderError(
                    "transcription_failed",
                    f"the OpenAI endpoint could not transcribe an item ({self._scrub(event.code)[:60]}: "
                    f"{self._scrub(event.message)[:160]})",
                    retryable=True,
                )
            )
        elif isinstance(event, protocol.ServerError):
            self._server_error(event)
        self._arm()

    def _committed(self, item_id: str) -> None:
        item = self._items.get(item_id) or _Item(item_id, self._speech.pop(item_id, self._final_end))
        self._items[item_id] = item
        if item_id in self._stopped:
            item.end_s = self._stopped.pop(item_id)
        elif self._finalizes:  # no speech_stopped: the commit was ours
            # Its `completed` is due when the commit's answer was: the call's end waits for it.
            item.end_s, item.due = self._finalizes.popleft()
            item.from_finalize = True
            return
        else:
            item.end_s = self._fmt.seconds(self._sent_bytes)
        item.due = self._loop.time() + self._options.item_timeout_s

    def _completed(self, item_id: str, transcript: str) -> None:
        if item_id in self._done:
            return  # a second `completed` for one item: its final is out already
        self._done.append(item_id)
        item = self._items.pop(item_id, None)
        if item is None:
            item = _Item(item_id, self._final_end, self._stopped.pop(item_id, None))
        end = item.end_s if item.end_s is not None else self._fmt.seconds(self._sent_bytes)
        item.text = transcript
        self._put(self._result(item, end, is_final=True))
        self._final_end = max(self._final_end, end)

    def _server_error(self, event: protocol.ServerError) -> None:
        if event.code == "input_audio_buffer_commit_empty" and self._finalizes:
            # Our commit found nothing left to commit: everything sent is in items already.
            at, _ = self._finalizes.popleft()
            if not self._items:
                end = max(self._final_end, at)
                self._put(
                    TranscriptResult(
                        0, True, True, "", 0.0, self._final_end, end - self._final_end, from_finalize=True
                    )
                )
                self._final_end = end
            return
        if event.event_id == SESSION_UPDATE_ID:
            # The endpoint refused the session (its format, its model): the same again would fail.
            self._fail(
                ProviderError(
                    "provider_rejected",
                    f"the OpenAI endpoint refused the session ({self._scrub(event.code)[:60]}: "
                    f"{self._scrub(event.message)[:160]})",
                    retryable=False,
                )
            )
        self._metrics.server_errors.labels(event.type if event.type in _ERROR_TYPES else "other").inc()
        log.warning(
            "the OpenAI endpoint sent an error event",
            extra={
                "interaction_id": self._interaction_id,
                "code": self._scrub(event.code)[:60],
                "detail": self._scrub(event.message)[:200],
            },
        )

    def _result(self, item: _Item, end: float, *, is_final: bool) -> TranscriptResult:
        # A final covers the stream from the previous final's end (finals tile the timeline).
        start = self._final_end if is_final else max(self._final_end, item.start_s)
        return TranscriptResult(
            channel=0,
            is_final=is_final,
            speech_final=is_final,
            text=item.text.strip(),
            confidence=0.9 if item.text.strip() else 0.0,
            start=start,
            duration=max(0.0, end - start),
            from_finalize=is_final and item.from_finalize,
        )

    def _put(self, event: ProviderEvent) -> None:
        self._out.append(event)

    def _fail(self, error: ProviderError) -> None:
        if self._error is None:
            self._error = error

    def _idle(self) -> bool:
        return not self._items and not self._finalizes

    # --- the stall watchdog ---------------------------------------------------------------

    def _arm(self) -> None:
        dues = [i.due for i in self._items.values() if i.due is not None] + [d for _, d in self._finalizes]
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if dues:
            self._watchdog = self._loop.call_at(min(dues), self._check_stall)

    def _check_stall(self) -> None:
        self._watchdog = None
        now = self._loop.time()
        dues = [i.due for i in self._items.values() if i.due is not None] + [d for _, d in self._finalizes]
        if not dues:
            return
        if min(dues) > now + 1e-3:
            self._arm()
            return
        self._stalled = True
        self._metrics.stalls.inc()
        self._conn.transport.abort()

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    # --- internals ------------------------------------------------------------------------

    async def _send(self, event: dict[str, object]) -> None:
        try:
            await self._conn.send(protocol.dumps(event))
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None

    def _closed_error(self, exc: ConnectionClosed) -> ProviderError:
        if self._stalled:
            return ProviderError(
                "stalled",
                "the OpenAI endpoint did not complete a commit or an item in time; "
                "the connection is given up",
                retryable=True,
            )
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        reason = self._scrub(exc.rcvd.reason)[:200] if exc.rcvd is not None else ""
        self._metrics.closes.labels(str(code)).inc()
        if code in (1002, 1003, 1007, 1008, 1009, 1010):
            return ProviderError(
                "provider_rejected",
                f"the OpenAI endpoint refused the stream ({code} {reason})",
                retryable=False,
                status=code,
            )
        if code == 1006:
            return ProviderError(
                "connection_lost", "the connection to the OpenAI endpoint dropped", retryable=True
            )
        return ProviderError(
            "provider_closed", f"the OpenAI endpoint closed the stream ({code} {reason})", retryable=True
        )


def create(options: OpenAIOptions) -> OpenAIProvider:
    return OpenAIProvider(options)
