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

The circuit breaker, the handshake and its bookkeeping, the key scrubber, the stall watchdog
and the connection's end are the remote providers' skeleton (`providers.remote`); this module
is Deepgram's protocol mapping and options.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosedError
from websockets.http11 import Response
from websockets.protocol import State

from ..core.audio import AudioFormat
from ..core.call_options import ENDPOINTING_OFF, FORMAT_FLAGS, MULTI, NO_OPTIONS, CallOptions
from ..core.clock import Clock
from ..core.provider_events import ProviderEvent, StreamMetadata, TranscriptResult
from ..deepgram import protocol
from ..deepgram.protocol import ListenParams, ServerError
from ..errors import ProtocolViolation, ProviderError
from ..settings import Section, Setting, text, url
from ..wsframes import MaskKeys, binary_frame
from .base import ProviderKind, StreamRequest
from .connection_metrics import ConnectionMetrics
from .remote import (
    STATUS_CODES,
    Opened,
    RemoteOptions,
    RemoteProvider,
    RemoteStream,
    cloud_key_missing,
    key_setting,
)
from .ws_push import PushingConnection

_MASK_KEYS: Final = MaskKeys()  # one pool for every connection: the loop is single-threaded

log = logging.getLogger("asr_worker.deepgram")

# Query keys that describe the audio: they always come from the call, never from configuration.
AUDIO_KEYS: Final = frozenset({"encoding", "sample_rate", "channels", "multichannel"})

_VARIANT: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
_MAX_VARIANTS: Final = 20

_STATUS_CODES: Final = {**STATUS_CODES, 402: "payment_required"}


@dataclass(frozen=True, slots=True)
class DeepgramOptions(RemoteOptions):
    url: str = "wss://api.deepgram.com/v1/listen"
    model: str = protocol.DEFAULT_MODEL
    language: str = protocol.DEFAULT_LANGUAGE
    extra_params: tuple[tuple[str, str], ...] = ()  # DEEPGRAM_PARAMS, override the defaults
    stall_timeout_s: float = 10.0  # audio sent, nothing back for this long: the connection is stalled
    finalize_stall_timeout_s: float = 2.0  # Finalize sent, its final not back for this long: stalled
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


class DeepgramProvider(RemoteProvider[DeepgramOptions, DeepgramMetrics, "DeepgramStream"]):
    """Deepgram's side of the skeleton: the listen URL for each call's format and keyterms,
    Deepgram's refusals (its err_code and err_msg, Retry-After, which holds back every call:
    rate limits are per project), and streams on a connection that pushes each result to the
    session as it is parsed."""

    name = "deepgram"
    peer = "Deepgram"
    auth_scheme = "Token"
    bad_url_message = "DEEPGRAM_URL is not a usable WebSocket URL"
    max_queue = 64
    connection = PushingConnection

    def __init__(self, options: DeepgramOptions, clock: Clock | None = None) -> None:
        super().__init__(options, DeepgramMetrics, clock)
        self._urls: dict[AudioFormat, str] = {}
        self._not_before = 0.0  # monotonic time before which no handshake is tried (Retry-After)

    def url_for(self, fmt: AudioFormat, options: CallOptions = NO_OPTIONS) -> str:
        """DEEPGRAM_URL with the call's audio format, the configured options and the call's own
        as its query: its keyterms (one `keyterm` each, as Nova-3 takes them, added to the
        configured ones), its language (over the configured one), its `redact` values (added;
        the worker redacts too: Deepgram's is not the guarantee), its `endpointing`,
        `utterance_end_ms` and formatting flags (over the configured ones) and its `search`
        and `replace` values (added)."""
        if options != NO_OPTIONS:
            return self._build_url(fmt, options)  # once per stream opened: no cache
        url = self._urls.get(fmt)
        if url is None:
            url = self._urls[fmt] = self._build_url(fmt, NO_OPTIONS)
        return url

    def language_for(self, language: str | None) -> str | None:
        """The language a stream asked for a call's `language` transcribes in: the call's, else
        the configured one (DEEPGRAM_LANGUAGE, or a `language` in DEEPGRAM_PARAMS or the URL);
        None for `multi`, where Deepgram names the language it hears in each result."""
        if language is None:
            configured = [v for k, v in self._configured_params() if k == "language"]
            language = configured[-1] if configured else self.options.language
        return None if language.lower() == MULTI else language

    # --- the protocol mapping -------------------------------------------------------------

    def _url_for(self, request: StreamRequest) -> str:
        return self.url_for(request.fmt, request.options)

    async def _before_handshake(self, request: StreamRequest, now: float) -> None:
        wait_s = self._not_before - now
        if wait_s > 0:  # Deepgram said Retry-After: rate limits are per project, so every call waits
            await asyncio.sleep(min(wait_s, self.options.max_retry_after_s))

    async def _start_stream(self, opened: Opened[DeepgramMetrics]) -> DeepgramStream:
        response = opened.conn.response
        request_id = self.scrub(response.headers.get("dg-request-id", "")) if response is not None else ""
        log.debug(
            "deepgram stream opened",
            extra={"interaction_id": opened.request.interaction_id, "dg_request_id": request_id},
        )
        return DeepgramStream(
            opened,
            request_id,
            stall_timeout_s=self.options.stall_timeout_s,
            finalize_stall_timeout_s=self.options.finalize_stall_timeout_s,
            language=self.language_for(opened.request.options.language),
        )

    def _configured_params(self) -> list[tuple[str, str]]:
        """DEEPGRAM_URL's own query and DEEPGRAM_PARAMS, which override the worker's defaults."""
        overrides = [(k, v) for k, v in parse_qsl(urlsplit(self.options.url).query) if k not in AUDIO_KEYS]
        return overrides + list(self.options.extra_params)

    def _build_url(self, fmt: AudioFormat, call: CallOptions) -> str:
        opts = self.options
        parts = urlsplit(opts.url)
        overrides = self._configured_params()
        language = call.language
        if language is not None:  # the call's language is over every configured one
            overrides = [(k, v) for k, v in overrides if k != "language"]
        # A configured `keyterm` (DEEPGRAM_PARAMS or DEEPGRAM_URL's query) is for every call:
        # the call's own are added to it, not replaced by it, and a term is sent once.
        configured_terms = {v for k, v in overrides if k == "keyterm"}
        configured_redact = {v for k, v in overrides if k == "redact"}  # the same for `redact`
        ours = ListenParams(
            encoding=str(fmt.encoding),
            sample_rate=fmt.sample_rate,
            channels=fmt.channels,
            model=opts.model,
            language=language or opts.language,
            keyterms=tuple(t for t in call.keyterms if t not in configured_terms),
            redact=tuple(sorted(call.redact - configured_redact)),
        ).query()
        own = call_params(call)  # the call's own options are over every configured one
        added = {"search", "replace"}  # ...but these add to the configured ones, as keyterms do
        mine = {k for k, _ in own} - added
        configured_pairs = {(k, v) for k, v in overrides if k in added}
        overrides = [(k, v) for k, v in overrides if k not in mine]
        own = [(k, v) for k, v in own if (k, v) not in configured_pairs]
        replaced = ({k for k, _ in overrides} | mine) - {"keyterm", "redact"} - added
        query = [(k, v) for k, v in ours if k not in replaced] + overrides + own
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))

    def _refused(self, response: Response) -> ProviderError:
        status = response.status_code
        # What the server says is scrubbed of the key before it is read: a proxy or a
        # misconfigured DEEPGRAM_URL may echo the request's Authorization header back.
        scrub = self.scrub
        body = self.scrub_body(bytes(response.body or b""))
        dg_error = {"dg-error": scrub(response.headers.get("dg-error", ""))}
        err_code, err_msg = protocol.read_refusal(status, dg_error, body)
        request_id = scrub(response.headers.get("dg-request-id", ""))
        detail = f"Deepgram refused the connection: HTTP {status} {err_code}: {err_msg}"
        if request_id:
            detail += f" (dg-request-id {request_id[:80]})"
        code = _STATUS_CODES.get(status, f"http_{status}")
        if status in protocol.NON_RETRYABLE_STATUSES:
            log.error("deepgram refused the connection", extra={"status": status, "err_code": err_code})
            return self._lasting_refusal(code, detail, detail, status)
        retry_after = _retry_after_s(response.headers.get("Retry-After"))
        if retry_after is not None:
            self._not_before = max(
                self._not_before, self._clock.monotonic() + min(retry_after, self.options.max_retry_after_s)
            )
        return self._retryable_failure(code, detail, f"HTTP {status} {err_code}", status)

    def _unreachable(self, kind: str, detail: str) -> ProviderError:
        code = "connect_failed" if kind == "network" else "connect_timeout"
        return self._retryable_failure(code, f"could not connect to Deepgram: {detail}", detail)

    def _circuit_opened(self, last_failure: str) -> None:
        log.error(
            "deepgram circuit open: failing new calls",
            extra={
                "failures": self.breaker.failures,
                "cooldown_s": self.breaker.cooldown_s,
                "last": last_failure,
            },
        )


class DeepgramStream(RemoteStream[DeepgramMetrics]):
    """One live connection. Its methods map every socket failure to a ProviderError."""

    _log = log
    _said_by = "deepgram"

    def __init__(
        self,
        opened: Opened[DeepgramMetrics],
        request_id: str,
        *,
        stall_timeout_s: float = 10.0,
        finalize_stall_timeout_s: float = 2.0,
        language: str | None = None,
    ) -> None:
        super().__init__(opened)
        self._channels = opened.request.fmt.channels
        self._language = language  # what the stream asked for: a result's, where Deepgram names none
        self.request_id = request_id
        # Loop times by which Deepgram must have answered, for the stall watchdog.
        self._stall_timeout_s = stall_timeout_s
        self._finalize_stall_timeout_s = finalize_stall_timeout_s
        self._answer_due: float | None = None  # audio went out, nothing came back since
        self._final_due: float | None = None  # a Finalize went out, its final has not come
        self._sink_error: Exception | None = None  # what the pushed-to sink raised, if anything

    async def send_audio(self, data: bytes) -> None:
        if self.send_audio_now(data):
            return
        if self._answer_due is None:
            self._answer_due = self._expect_by(self._stall_timeout_s)
        await self._write(data)  # websockets' own path, which waits for the transport to drain

    def send_audio_now(self, data: bytes) -> bool:
        """Frame the message (`wsframes.binary_frame`) and hand it to the transport directly.
        websockets' asyncio `send` wraps the same in a context manager and a drain per message,
        25,000 times a second at 500 calls (docs/performance.md). Only while the transport takes
        more: when it is paused (or the connection is not open) the caller
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
        await self._write(protocol.KEEPALIVE)

    async def finalize(self) -> None:
        if self._final_due is None:
            self._final_due = self._expect_by(self._finalize_stall_timeout_s)
        await self._write(protocol.FINALIZE)

    async def close_stream(self) -> None:
        self._closing = True
        if self._final_due is None:  # answered by the last final and Metadata
            self._final_due = self._expect_by(self._finalize_stall_timeout_s)
        await self._write(protocol.CLOSE_STREAM)

    def push_events_to(self, sink: Callable[[ProviderEvent], None]) -> bool:
        conn = self._conn
        if not isinstance(conn, PushingConnection):
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
            if isinstance(self._conn, PushingConnection):
                self._conn.stop_pushing()
        if self._sink_error is not None:
            raise self._sink_error
        self._clean_close()

    def _handle(self, message: str | bytes) -> ProviderEvent | None:
        """One message from Deepgram as the call's event, or None (garbage, errors, nothing
        for the call), with the stall watchdog, metrics and logs it calls for."""
        self._answer_due = None  # Deepgram is answering
        try:
            parsed = protocol.parse_server_message(message, self._channels, self._language)
        except ProtocolViolation as exc:
            self._garbage(exc.kind, exc.detail)
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

    # --- for the skeleton -----------------------------------------------------------------

    def _earliest_due(self) -> float | None:
        answer, final = self._answer_due, self._final_due
        if answer is None:
            return final
        return answer if final is None else min(answer, final)

    def _stall_message(self, due: float) -> str:
        waited_s = self._finalize_stall_timeout_s if due == self._final_due else self._stall_timeout_s
        return f"Deepgram answered nothing for {waited_s:g} s; the connection is given up"

    def _close_error(self, code: int, reason: str) -> ProviderError:
        return close_error(code, reason)

    def _unasked_close(self, code: int, reason: str) -> ProviderError:
        return ProviderError(
            "closed",
            f"Deepgram closed the stream ({code} {reason[:200]}) before it was asked to",
            retryable=True,
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


def call_params(call: CallOptions) -> list[tuple[str, str]]:
    """A call's transcription options as Deepgram's query parameters: only those it named."""
    pairs: list[tuple[str, str]] = []
    if call.endpointing_ms is not None:
        off = call.endpointing_ms == ENDPOINTING_OFF
        pairs.append(("endpointing", "false" if off else str(call.endpointing_ms)))
    if call.utterance_end_ms is not None:
        pairs.append(("utterance_end_ms", str(call.utterance_end_ms)))
    for name in FORMAT_FLAGS:
        value = call.format.flag(name)
        if value is not None:
            pairs.append((name, protocol.format_bool(value)))
    pairs += [("search", term) for term in call.format.search]
    pairs += [("replace", f"{find}:{replacement}") for find, replacement in call.format.replace]
    return pairs


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: rare for Deepgram; the backoff covers it
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


SETTINGS: Final = Section(
    "deepgram",
    "Deepgram provider",
    DeepgramOptions,
    (
        key_setting("DEEPGRAM_API_KEY", "Deepgram"),
        Setting("url", "DEEPGRAM_URL", "Deepgram live endpoint", url("ws", "wss")),
        Setting("model", "DEEPGRAM_MODEL", "Deepgram model", text),
        Setting("language", "DEEPGRAM_LANGUAGE", "Deepgram language", text),
        Setting(
            "extra_params",
            "DEEPGRAM_PARAMS",
            "extra Deepgram query parameters, e.g. smart_format=true&endpointing=500",
            parse_extra_params,
        ),
    ),
)

# The vendor's cloud takes no call without a key (a self-hosted or test server may).
KIND: Final = ProviderKind(
    SETTINGS,
    DeepgramProvider,
    lambda options: cloud_key_missing(options.url, "deepgram.com", options.api_key, "DEEPGRAM_API_KEY"),
)
