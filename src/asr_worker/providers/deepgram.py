"""The Deepgram provider: one live WebSocket (`/v1/listen`) per provider stream.

The session core decides when to open, send, keep alive, finalize, reconnect and replay;
this module speaks Deepgram's protocol for it and turns every failure into a `ProviderError`
whose `retryable` flag is the decision the core needs:

* handshake 400/401/402/403 (bad request, bad key, no credit, not allowed): not retryable, with
  Deepgram's own err_code/err_msg read from the JSON body or the `dg-error` header;
* handshake 429/5xx, a network error or timeout, a drop without a close frame (1006), 1011
  (NET-0000, NET-0001): retryable; a Retry-After holds back every call's next attempt;
* close 1008 (DATA-0000: undecodable audio) and other protocol refusals: not retryable, since
  the replay would send the very same audio;
* a server message that is not valid protocol (not JSON, unknown type, missing fields):
  counted, logged once per stream, skipped;
* a connection that stops answering (it takes audio, even answers pings, but sends nothing):
  given up as `stalled` (retryable) when audio went out and nothing came back for
  `stall_timeout_s`, or a Finalize went out and its final did not come for
  `finalize_stall_timeout_s`. Deepgram answers audio with a result about every second, speech
  or silence, and a Finalize at once; the session then replays what no final covered on a new
  connection, as after a drop. Without this, pings alone would keep such a connection, and
  every word said into it, forever.

A circuit breaker shared by all calls fails *new* calls at once while Deepgram is failing for
everyone (and `/health` says so): a call's first connection attempt (`StreamRequest.attempt`
1) is refused; calls already admitted keep retrying with their own backoff, and those
attempts are the probes that close it again. While it is open every failure says so
(`ProviderError.outage`) and `taking_new_calls` is False: with a fallback provider, the
session core moves such calls there, and new calls start there.
The API key goes into the `Authorization` header and nowhere else: no message, log line or
metric label built here contains a request header.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.frames import DATA_OPCODES, CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import Event, State

from ..core.audio import AudioFormat
from ..core.clock import Clock, SystemClock
from ..core.provider_events import ProviderError, ProviderEvent, StreamMetadata, TranscriptResult
from ..credentials import Secret
from ..deepgram import protocol
from ..deepgram.protocol import ListenParams, ProtocolViolation, ServerError
from ..wsframes import MaskKeys, binary_frame
from .base import ProviderHealth, StreamRequest
from .breaker import CircuitBreaker
from .connection_metrics import ConnectionMetrics
from .handshake import Refused, Unreachable, open_websocket

_MASK_KEYS: Final = MaskKeys()  # one pool for every connection: the loop is single-threaded

log = logging.getLogger("asr_worker.deepgram")
# websockets logs every handshake header at DEBUG, the Authorization header (the key) among
# them: its logger for our connections never goes below INFO, whatever ASR_LOG_LEVEL says.
_wire_log = logging.getLogger("asr_worker.deepgram.wire")
_wire_log.setLevel(logging.INFO)

# Query keys that describe the audio: they always come from the call, never from configuration.
AUDIO_KEYS: Final = frozenset({"encoding", "sample_rate", "channels", "multichannel"})

_VARIANT: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
_MAX_VARIANTS: Final = 20

_STATUS_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
}


@dataclass(frozen=True, slots=True)
class DeepgramOptions:
    url: str = "wss://api.deepgram.com/v1/listen"
    api_key: Secret | None = field(default=None, repr=False)  # never printed
    model: str = "nova-3"
    language: str = "en-US"
    extra_params: tuple[tuple[str, str], ...] = ()  # DEEPGRAM_PARAMS, override the defaults
    open_timeout_s: float = 5.0
    # websockets' own pings find a dead TCP connection (and a send blocked on it) in <= 20 s.
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 10.0
    close_timeout_s: float = 1.0
    stall_timeout_s: float = 10.0  # audio sent, nothing back for this long: the connection is stalled
    finalize_stall_timeout_s: float = 2.0  # Finalize sent, its final not back for this long: stalled
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 10.0
    max_retry_after_s: float = 30.0


def parse_extra_params(text: str) -> tuple[tuple[str, str], ...]:
    """`DEEPGRAM_PARAMS`: `k=v&k=v` query parameters added to (or replacing) the worker's own.
    The audio's own keys are refused: they must describe the audio actually sent."""
    text = text.strip().lstrip("?")
    if not text:
        return ()
    try:
        pairs = parse_qsl(text, keep_blank_values=False, strict_parsing=True)
    except ValueError:
        raise ValueError("must be query parameters such as smart_format=true&endpointing=500") from None
    fixed = sorted({k for k, _ in pairs} & AUDIO_KEYS)
    if fixed:
        raise ValueError(f"may not set {', '.join(fixed)}: those come from each call's audio format")
    return tuple(pairs)


class DeepgramMetrics(ConnectionMetrics):
    def __init__(self, breaker_state: Callable[[], float]) -> None:
        super().__init__(
            "deepgram",
            "Deepgram",
            breaker_state,
            error_label="variant",
            stall_help="Connections given up because Deepgram answered nothing in time "
            "(audio or Finalize sent).",
        )
        self._variants: set[str] = set()

    def variant_label(self, variant: str) -> str:
        """An Error message's variant as a metric label: the server chooses it, so only a
        short identifier is taken, and only the first few distinct ones (each is a series)."""
        if variant in self._variants:
            return variant
        if not _VARIANT.fullmatch(variant) or len(self._variants) >= _MAX_VARIANTS:
            return "other" if variant else "unknown"
        self._variants.add(variant)
        return variant


class DeepgramProvider:
    name = "deepgram"

    def __init__(self, options: DeepgramOptions, clock: Clock | None = None) -> None:
        self.options = options
        self._clock = clock or SystemClock()
        self.breaker = CircuitBreaker(options.breaker_threshold, options.breaker_cooldown_s)
        self.metrics = DeepgramMetrics(lambda: float(self.breaker.state(self._clock.monotonic())))
        key = "" if options.api_key is None else options.api_key.reveal()
        self._headers: list[tuple[str, str]] = [("Authorization", f"Token {key}")] if key else []
        self.scrub = _scrubber(key)
        self._urls: dict[AudioFormat, str] = {}
        self._not_before = 0.0  # monotonic time before which no handshake is tried (Retry-After)
        self._refusal: str | None = None  # the last non-retryable refusal, for /health
        self._last_failure = ""

    # --- the Provider interface -----------------------------------------------------------

    async def open(self, request: StreamRequest) -> DeepgramStream:
        now = self._clock.monotonic()
        refused = (
            self.breaker.refuse_new_call(now, "Deepgram", self._last_failure)
            if request.attempt == 1
            else None
        )
        if refused is not None:
            self.metrics.failed_fast.inc()
            raise refused
        wait_s = self._not_before - now
        if wait_s > 0:  # Deepgram said Retry-After: rate limits are per project, so every call waits
            await asyncio.sleep(min(wait_s, self.options.max_retry_after_s))
        started = self._clock.monotonic()
        conn = await open_websocket(
            self.url_for(request.fmt, request.keyterms),
            self._headers,
            self.options,
            max_queue=64,
            logger=_wire_log,
            connection=_PushingConnection,
        )
        if isinstance(conn, Refused):
            raise self._refused(conn.response)
        if isinstance(conn, Unreachable):
            if conn.kind == "bad_url":
                raise ProviderError("bad_url", "DEEPGRAM_URL is not a usable WebSocket URL", retryable=False)
            raise self._network_failure(conn.kind, self.scrub(conn.detail))
        self.metrics.handshakes.labels("101").inc()
        self.metrics.handshake_seconds.observe(self._clock.monotonic() - started)
        self.breaker.success()
        self._refusal = None
        response = conn.response
        request_id = self.scrub(response.headers.get("dg-request-id", "")) if response is not None else ""
        log.debug(
            "deepgram stream opened",
            extra={"interaction_id": request.interaction_id, "dg_request_id": request_id},
        )
        return DeepgramStream(
            conn,
            request,
            request_id,
            self.metrics,
            self.scrub,
            stall_timeout_s=self.options.stall_timeout_s,
            finalize_stall_timeout_s=self.options.finalize_stall_timeout_s,
        )

    def taking_new_calls(self) -> bool:
        """New calls fail at once while the breaker is open (a fallback takes them meanwhile)."""
        return not self._outage()

    def health(self) -> ProviderHealth:
        return self.breaker.health(self._clock.monotonic(), self._last_failure, self._refusal)

    async def aclose(self) -> None:
        return None  # every connection belongs to a stream, which its session closes

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(self.metrics.registry)

    # --- helpers --------------------------------------------------------------------------

    def url_for(self, fmt: AudioFormat, keyterms: tuple[str, ...] = ()) -> str:
        """DEEPGRAM_URL with the call's audio format, the configured options and the call's
        keyterms (one `keyterm` each, as Nova-3 takes them) as its query."""
        if keyterms:
            return self._build_url(fmt, keyterms)  # once per stream opened: not worth a cache
        url = self._urls.get(fmt)
        if url is None:
            url = self._urls[fmt] = self._build_url(fmt, ())
        return url

    def _build_url(self, fmt: AudioFormat, keyterms: tuple[str, ...]) -> str:
        opts = self.options
        parts = urlsplit(opts.url)
        overrides = [(k, v) for k, v in parse_qsl(parts.query) if k not in AUDIO_KEYS]
        overrides += list(opts.extra_params)
        # A configured `keyterm` (DEEPGRAM_PARAMS or DEEPGRAM_URL's query) is for every call:
        # the call's own are added to it, not replaced by it, and a term is sent once.
        configured_terms = {v for k, v in overrides if k == "keyterm"}
        ours = ListenParams(
            encoding=str(fmt.encoding),
            sample_rate=fmt.sample_rate,
            channels=fmt.channels,
            model=opts.model,
            language=opts.language,
            keyterms=tuple(t for t in keyterms if t not in configured_terms),
        ).query()
        replaced = {k for k, _ in overrides} - {"keyterm"}
        query = [(k, v) for k, v in ours if k not in replaced] + overrides
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))

    def _refused(self, response: Response) -> ProviderError:
        status = response.status_code
        self.metrics.handshakes.labels(str(status)).inc()
        # What the server says is scrubbed of the key before it is read: a proxy or a
        # misconfigured DEEPGRAM_URL may echo the request's Authorization header back.
        scrub = self.scrub
        body = bytes(response.body or b"")
        key = "" if self.options.api_key is None else self.options.api_key.reveal()
        if len(key) >= 4:
            body = body.replace(key.encode(), _HIDDEN.encode())
        dg_error = {"dg-error": scrub(response.headers.get("dg-error", ""))}
        err_code, err_msg = protocol.read_refusal(status, dg_error, body)
        request_id = scrub(response.headers.get("dg-request-id", ""))
        detail = f"Deepgram refused the connection: HTTP {status} {err_code}: {err_msg}"
        if request_id:
            detail += f" (dg-request-id {request_id[:80]})"
        code = _STATUS_CODES.get(status, f"http_{status}")
        if status in protocol.NON_RETRYABLE_STATUSES:
            self._refusal = detail
            log.error("deepgram refused the connection", extra={"status": status, "err_code": err_code})
            return ProviderError(code, detail, retryable=False, status=status)
        retry_after = _retry_after_s(response.headers.get("Retry-After"))
        if retry_after is not None:
            self._not_before = max(
                self._not_before, self._clock.monotonic() + min(retry_after, self.options.max_retry_after_s)
            )
        self._count_failure(f"HTTP {status} {err_code}")
        return ProviderError(code, detail, retryable=True, status=status, outage=self._outage())

    def _network_failure(self, kind: str, detail: str) -> ProviderError:
        self.metrics.handshakes.labels(kind).inc()
        self._count_failure(detail)
        return ProviderError(
            "connect_failed" if kind == "network" else "connect_timeout",
            f"could not connect to Deepgram: {detail}",
            retryable=True,
            outage=self._outage(),
        )

    def _outage(self) -> bool:
        """The breaker is open: Deepgram is failing for every call, not only this one."""
        return self.breaker.is_open(self._clock.monotonic())

    def _count_failure(self, what: str) -> None:
        self._last_failure = what
        was_open = self._outage()
        self.breaker.failure(self._clock.monotonic())
        if not was_open and self._outage():
            log.error(
                "deepgram circuit open: failing new calls",
                extra={
                    "failures": self.breaker.failures,
                    "cooldown_s": self.breaker.cooldown_s,
                    "last": what,
                },
            )


class _PushingConnection(ClientConnection):
    """websockets' client connection, which can hand each complete data message to a callback
    as its frames are parsed, instead of queueing it for a reader task to await.

    At 500 calls Deepgram sends about 1,250 results a second, and the queue, the future and the
    task switch behind each were a large part of what a result cost. websockets still parses
    every frame, enforces max_size and answers pings and closes; only where a data message goes
    changes, and only if nothing was queued before, so messages keep their order."""

    _sink: Callable[[str | bytes], None] | None = None
    _queued_messages = 0  # data frames websockets' own queue took (before a sink was set)
    _fragments: list[bytes] | None = None  # a fragmented message's frames so far
    _text = True  # the message being received is text (its first frame said so)

    def push_to(self, sink: Callable[[str | bytes], None]) -> bool:
        """Messages go to `sink` from now on: text as str, binary as bytes, as `recv` gives."""
        if self._queued_messages:
            return False  # a reader must drain the queue first, or the order would change
        self._sink = sink
        return True

    def stop_pushing(self) -> None:
        """Drop the callback (the stream has ended): it refers back to the stream and its
        session, and this cycle would otherwise wait for a full garbage collection."""
        self._sink = None

    def process_event(self, event: Event) -> None:
        sink = self._sink
        if sink is None or not isinstance(event, Frame) or event.opcode not in DATA_OPCODES:
            if self.response is not None and isinstance(event, Frame) and event.opcode in DATA_OPCODES:
                self._queued_messages += 1
            super().process_event(event)
            return
        if event.opcode is not Opcode.CONT:
            self._text = event.opcode is Opcode.TEXT
        if not event.fin:
            if self._fragments is None:
                self._fragments = []
            self._fragments.append(bytes(event.data))
            return
        data = bytes(event.data)
        if self._fragments is not None:
            self._fragments.append(data)
            data, self._fragments = b"".join(self._fragments), None
        if not self._text:
            sink(data)
            return
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:  # as websockets' own recv answers it
            self.protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            self.send_data()
            return
        sink(text)


class DeepgramStream:
    """One live connection. Its methods map every socket failure to a ProviderError."""

    def __init__(
        self,
        conn: ClientConnection,
        request: StreamRequest,
        request_id: str,
        metrics: DeepgramMetrics,
        scrub: Callable[[str], str] = str,
        *,
        stall_timeout_s: float = 10.0,
        finalize_stall_timeout_s: float = 2.0,
    ) -> None:
        self._conn = conn
        self._scrub = scrub  # what the server sends may echo the key: never repeat it
        self._send = conn.send
        self._channels = request.fmt.channels
        self._interaction_id = request.interaction_id
        self.request_id = request_id
        self._metrics = metrics
        self._closing = False
        self._warned = False
        # The stall watchdog: loop times by which Deepgram must have answered, one timer.
        self._loop = asyncio.get_running_loop()
        self._stall_timeout_s = stall_timeout_s
        self._finalize_stall_timeout_s = finalize_stall_timeout_s
        self._answer_due: float | None = None  # audio went out, nothing came back since
        self._final_due: float | None = None  # a Finalize went out, its final has not come
        self._watchdog: asyncio.TimerHandle | None = None
        self._stalled_for_s = 0.0  # set when the watchdog gave the connection up
        self._sink_error: Exception | None = None  # what the pushed-to sink raised, if anything

    async def send_audio(self, data: bytes) -> None:
        if self.send_audio_now(data):
            return
        if self._answer_due is None:
            self._answer_due = self._expect_by(self._stall_timeout_s)
        try:
            await self._send(data)  # websockets' own path, which waits for the transport to drain
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None

    def send_audio_now(self, data: bytes) -> bool:
        """Frame the message (`wsframes.binary_frame`) and hand it to the transport directly.
        websockets' asyncio `send` wraps the same in a context manager and a drain per message,
        which at 500 calls cost an eighth of the worker's CPU. Only while the
        transport takes more: when it is paused (or the connection is not open) the caller
        awaits `send_audio`, which waits for the drain (or raises the close)."""
        if not data:
            return True  # an empty binary frame is Deepgram's legacy end-of-stream signal
        conn = self._conn
        if conn.protocol.state is not State.OPEN or conn.paused:
            return False
        if self._answer_due is None:
            self._answer_due = self._expect_by(self._stall_timeout_s)
        try:
            # Framed here rather than by protocol.send_binary: the same bytes, but websockets
            # draws each mask key with a system call. Safe to interleave with its own writes:
            # it keeps no state for a complete data frame, and flushes its own at once.
            conn.transport.write(binary_frame(data, _MASK_KEYS.take()))
        except Exception as exc:  # the transport broke under us; the reader sees it too
            raise ProviderError(
                "connection_lost", f"writing to Deepgram failed: {type(exc).__name__}", retryable=True
            ) from None
        return True

    async def keepalive(self) -> None:
        await self._text(protocol.KEEPALIVE)

    async def finalize(self) -> None:
        if self._final_due is None:
            self._final_due = self._expect_by(self._finalize_stall_timeout_s)
        await self._text(protocol.FINALIZE)

    async def close_stream(self) -> None:
        self._closing = True
        if self._final_due is None:  # answered by the last final and Metadata
            self._final_due = self._expect_by(self._finalize_stall_timeout_s)
        await self._text(protocol.CLOSE_STREAM)

    async def abort(self) -> None:
        self._stop_watchdog()
        if self._conn.state is not State.CLOSED:
            self._closing = True
            try:
                await self._conn.close(protocol.CLOSE_NORMAL)  # bounded by close_timeout
            except Exception:  # already broken: nothing to close cleanly
                self._conn.transport.abort()

    def push_events_to(self, sink: Callable[[ProviderEvent], None]) -> bool:
        conn = self._conn
        if not isinstance(conn, _PushingConnection):
            return False

        def on_message(message: str | bytes) -> None:
            if self._sink_error is not None:
                return  # the stream is ending with that error
            event = self._handle(message)
            if event is None:
                return
            try:
                sink(event)
            except Exception as exc:  # the reader's error, as if it had raised it there
                self._sink_error = exc
                conn.transport.abort()

        return conn.push_to(on_message)

    async def events(self) -> AsyncIterator[ProviderEvent]:
        try:
            async for message in self._conn:  # none once pushing: then it waits for the close
                event = self._handle(message)
                if event is not None:
                    yield event
        except ConnectionClosedError as exc:
            if self._sink_error is not None:
                raise self._sink_error from None
            raise self._closed_error(exc) from None
        finally:
            self._stop_watchdog()
            if isinstance(self._conn, _PushingConnection):
                self._conn.stop_pushing()
        if self._sink_error is not None:
            raise self._sink_error
        code, reason = _close_of(self._conn)
        self._metrics.closes.labels(str(code)).inc()
        if not self._closing:
            raise ProviderError(
                "closed",
                f"Deepgram closed the stream ({code} {self._scrub(reason)[:200]}) before it was asked to",
                retryable=True,
            )

    def _handle(self, message: str | bytes) -> ProviderEvent | None:
        """One message from Deepgram as the call's event, or None (garbage, errors, nothing
        for the call), with the stall watchdog, metrics and logs it calls for."""
        self._answer_due = None  # Deepgram is answering
        try:
            parsed = protocol.parse_server_message(message, self._channels)
        except ProtocolViolation as exc:
            self._garbage(exc)
            return None
        if parsed is None:
            return None
        if isinstance(parsed, StreamMetadata) or (
            isinstance(parsed, TranscriptResult) and parsed.from_finalize
        ):
            self._final_due = None
        if isinstance(parsed, ServerError):
            self._metrics.server_errors.labels(self._metrics.variant_label(self._scrub(parsed.variant))).inc()
            log.warning(
                "deepgram sent an error message",
                extra={
                    "interaction_id": self._interaction_id,
                    "variant": self._scrub(parsed.variant),
                    "detail": self._scrub(parsed.description),
                },
            )
            return None
        if isinstance(parsed, StreamMetadata):
            log.info(
                "deepgram stream metadata",
                extra={
                    "interaction_id": self._interaction_id,
                    "dg_request_id": self._scrub(parsed.request_id),
                    "duration_s": parsed.duration,
                },
            )
        return parsed

    # --- internals ------------------------------------------------------------------------

    async def _text(self, message: str) -> None:
        try:
            await self._send(message)
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None

    def _expect_by(self, within_s: float) -> float:
        """A due time for Deepgram's answer; the watchdog wakes for the earliest one."""
        due = self._loop.time() + within_s
        if self._watchdog is None or due < self._watchdog.when():
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._watchdog = self._loop.call_at(due, self._check_stall)
        return due

    def _check_stall(self) -> None:
        self._watchdog = None
        pending = [due for due in (self._answer_due, self._final_due) if due is not None]
        if not pending:
            return  # answered meanwhile; the next send sets a new due time
        due = min(pending)
        if due > self._loop.time() + 1e-3:
            self._watchdog = self._loop.call_at(due, self._check_stall)
            return
        self._stalled_for_s = (
            self._finalize_stall_timeout_s if due == self._final_due else self._stall_timeout_s
        )
        self._metrics.stalls.inc()
        self._conn.transport.abort()  # the reader and any blocked send see the connection end

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _closed_error(self, exc: ConnectionClosed) -> ProviderError:
        if self._stalled_for_s:
            return ProviderError(
                "stalled",
                f"Deepgram answered nothing for {self._stalled_for_s:g} s; the connection is given up",
                retryable=True,
            )
        code, reason = (
            (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else (protocol.CLOSE_ABNORMAL, "")
        )
        self._metrics.closes.labels(str(code)).inc()
        return close_error(code, self._scrub(reason))

    def _garbage(self, exc: ProtocolViolation) -> None:
        self._metrics.garbage.labels(exc.kind).inc()
        if not self._warned:  # once per stream: a broken server must not flood the log
            self._warned = True
            log.warning(
                "deepgram sent a message that is not valid protocol; skipping such messages",
                extra={
                    "interaction_id": self._interaction_id,
                    "kind": exc.kind,
                    "detail": self._scrub(exc.detail)[:200],
                },
            )


def close_error(code: int, reason: str) -> ProviderError:
    """What a close the worker did not ask for means for the call."""
    shown = f"{code} {reason[:200]}".strip()
    if code in protocol.NON_RETRYABLE_CLOSE_CODES:
        return ProviderError(
            "provider_rejected",
            f"Deepgram refused the stream ({shown}); the same audio sent again would fail the same way",
            retryable=False,
            status=code,
        )
    if code == protocol.CLOSE_ABNORMAL:
        return ProviderError(
            "connection_lost", "the connection to Deepgram dropped without a close frame", retryable=True
        )
    if code == protocol.CLOSE_INTERNAL and "net0001" in reason.lower():
        return ProviderError("idle_timeout", f"Deepgram closed an idle stream ({shown})", retryable=True)
    return ProviderError("provider_closed", f"Deepgram closed the stream ({shown})", retryable=True)


_HIDDEN: Final = "<DEEPGRAM_API_KEY>"


def _scrubber(key: str | None) -> Callable[[str], str]:
    """A function that hides `key` wherever it appears in a text from the server (a key of
    a few characters is no real key, and hiding it would garble every message)."""
    if not key or len(key) < 4:
        return str
    return lambda text: text.replace(key, _HIDDEN)


def _close_of(conn: ClientConnection) -> tuple[int, str]:
    rcvd = conn.protocol.close_rcvd
    if rcvd is None:
        return protocol.CLOSE_ABNORMAL, ""
    return rcvd.code, rcvd.reason


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: rare for Deepgram; the backoff covers it
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def create(options: DeepgramOptions) -> DeepgramProvider:
    return DeepgramProvider(options)
