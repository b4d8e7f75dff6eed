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

The circuit breaker, the handshake and its bookkeeping, the key scrubber, the stall watchdog
and the connection's end are the remote providers' skeleton (`providers.remote`); this module
is the Realtime protocol mapping and its options.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np
import soxr
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from .. import jsonwire
from ..core.audio import AudioFormat, Encoding
from ..core.call_options import MULTI
from ..core.clock import Clock
from ..core.codecs import to_linear16
from ..core.provider_events import ProviderEvent, SpeechStarted, TranscriptResult
from ..errors import ProtocolViolation, ProviderError
from ..openai_realtime import protocol
from ..openai_realtime.protocol import (
    G711_ALAW,
    G711_ULAW,
    MAX_PROMPT_CHARS,
    PCM16,
    InputFormat,
    SessionConfig,
    Transcription,
    TurnDetection,
)
from ..settings import Section, Setting, text, url
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

log = logging.getLogger("asr_worker.openai")

SESSION_UPDATE_ID: Final = "asr_worker_session_update"  # an error naming it: the session was refused
# Error types as metric labels (the server chooses them: anything else counts as `other`).
_ERROR_TYPES: Final = frozenset(
    {"invalid_request_error", "server_error", "rate_limit_error", "authentication_error", "error"}
)
_NOT_RETRYABLE_STATUSES: Final = frozenset({400, 401, 402, 403, 404, 405, 410, 413, 414, 415, 422})
# A close with one of these codes refuses what was sent: the same again would fail the same way.
_NOT_RETRYABLE_CLOSE_CODES: Final = frozenset({1002, 1003, 1007, 1008, 1009, 1010})


@dataclass(frozen=True, slots=True)
class OpenAIOptions(RemoteOptions):
    base_url: str = "https://api.openai.com/v1"
    model: str = protocol.DEFAULT_MODEL
    language: str | None = None
    item_timeout_s: float = 10.0  # an item committed (by VAD or us) must be completed within this
    finalize_timeout_s: float = 3.0  # a commit of ours must be completed (or refused as empty) within this


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


def transcription_language(call_language: str | None, configured: str | None) -> str | None:
    """The session's `transcription.language` for a call: OpenAI takes ISO-639-1 codes (`en`),
    so a Deepgram-style code gives its primary language (`en-US` is `en`); `multi` gives none,
    and the model detects the language itself."""
    language = call_language or configured
    if language is None or language.lower() == MULTI:
        return None
    return language.split("-", 1)[0].lower()


# The provider's series (`asr_openai_...`), from the breaker's state.
_metrics: Final = partial(
    ConnectionMetrics,
    "openai",
    "the Realtime server",
    error_label="type",
    stall_help="Connections given up because a commit or an item was not answered in time.",
)


class OpenAIProvider(RemoteProvider[OpenAIOptions, ConnectionMetrics, "OpenAIStream"]):
    """The Realtime endpoint's side of the skeleton: one URL for every call (the
    transcription intent), mono calls only, the endpoint's refusals (the message of its JSON
    error), and streams that configure their session before the call's audio."""

    name = "openai"
    peer = "the OpenAI endpoint"
    auth_scheme = "Bearer"
    bad_url_message = "OPENAI_BASE_URL is not a usable URL"
    max_queue = 256

    def __init__(self, options: OpenAIOptions, clock: Clock | None = None) -> None:
        self.url = realtime_url(options.base_url)
        super().__init__(options, _metrics, clock)

    # --- the protocol mapping -------------------------------------------------------------

    def _url_for(self, request: StreamRequest) -> str:
        return self.url

    async def _before_handshake(self, request: StreamRequest, now: float) -> None:
        if request.fmt.channels != 1:
            raise ProviderError(
                "unsupported_format",
                "the openai provider takes one channel; this call has two",
                retryable=False,
            )

    async def _start_stream(self, opened: Opened[ConnectionMetrics]) -> OpenAIStream:
        stream = OpenAIStream(opened, self.options)
        await stream.start()
        return stream

    def _refused(self, response: Response) -> ProviderError:
        status, body = response.status_code, bytes(response.body or b"")
        message = ""
        try:
            data = jsonwire.loads(body.decode("utf-8", "replace")) if body else None
        except ValueError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = str(error["message"])
        shown = self.scrub(message)[:200] or f"HTTP {status}"
        code = STATUS_CODES.get(status, f"http_{status}")
        if status in _NOT_RETRYABLE_STATUSES:
            return self._lasting_refusal(
                code,
                f"the OpenAI endpoint refused the connection ({status}: {shown})",
                f"the endpoint refused the connection: {status} {shown}",
                status,
            )
        detail = f"{status}: {shown}"
        return self._retryable_failure(
            code, f"could not reach the OpenAI endpoint ({detail})", f"{code}: {detail}", status
        )

    def _unreachable(self, kind: str, detail: str) -> ProviderError:
        return self._retryable_failure(
            kind, f"could not reach the OpenAI endpoint ({detail})", f"{kind}: {detail}"
        )


@dataclass(slots=True)
class _Item:
    id: str
    start_s: float
    end_s: float | None = None  # where its audio ends (speech_stopped, or our commit)
    text: str = ""  # the deltas so far
    from_finalize: bool = False
    due: float | None = None  # loop time by which it must be completed


class OpenAIStream(RemoteStream[ConnectionMetrics]):
    """One Realtime connection. Its methods map every socket failure to a ProviderError."""

    _log = log
    _said_by = "the OpenAI endpoint"

    def __init__(self, opened: Opened[ConnectionMetrics], options: OpenAIOptions) -> None:
        super().__init__(opened)
        request = opened.request
        self._options = options
        self._fmt = request.fmt
        self._prompt = keyterms_prompt(request.options.keyterms)
        # The call's language over OPENAI_LANGUAGE; None (`multi`, or neither): the model detects it.
        self._language = transcription_language(request.options.language, options.language)
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

    async def start(self) -> None:
        config = SessionConfig(
            format=self._wire or PCM16,
            transcription=Transcription(self._options.model, self._language, self._prompt),
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
        self._rewatch()
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
        self._clean_close()

    # --- server events --------------------------------------------------------------------

    def _handle(self, message: str | bytes) -> None:
        try:
            event = protocol.parse_server_event(message)
        except ProtocolViolation as exc:
            self._garbage(exc.kind, exc.detail)
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
        self._rewatch()

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
            language=self._language,
        )

    def _put(self, event: ProviderEvent) -> None:
        self._out.append(event)

    def _fail(self, error: ProviderError) -> None:
        if self._error is None:
            self._error = error

    def _idle(self) -> bool:
        return not self._items and not self._finalizes

    # --- for the skeleton -----------------------------------------------------------------

    def _earliest_due(self) -> float | None:
        dues = [i.due for i in self._items.values() if i.due is not None] + [d for _, d in self._finalizes]
        return min(dues, default=None)

    def _stall_message(self, due: float) -> str:
        return "the OpenAI endpoint did not complete a commit or an item in time; the connection is given up"

    def _close_error(self, code: int, reason: str) -> ProviderError:
        shown = f"{code} {reason[:200]}"
        if code in _NOT_RETRYABLE_CLOSE_CODES:
            return ProviderError(
                "provider_rejected",
                f"the OpenAI endpoint refused the stream ({shown})",
                retryable=False,
                status=code,
            )
        if code == 1006:
            return ProviderError(
                "connection_lost", "the connection to the OpenAI endpoint dropped", retryable=True
            )
        return ProviderError(
            "provider_closed", f"the OpenAI endpoint closed the stream ({shown})", retryable=True
        )

    def _unasked_close(self, code: int, reason: str) -> ProviderError:
        return ProviderError(
            "closed", f"the OpenAI endpoint closed the stream ({code}) before it was asked to", retryable=True
        )

    async def _send(self, event: dict[str, object]) -> None:
        await self._write(protocol.dumps(event))


SETTINGS: Final = Section(
    "openai",
    "OpenAI provider",
    OpenAIOptions,
    (
        key_setting("OPENAI_API_KEY", "OpenAI"),
        Setting(
            "base_url",
            "OPENAI_BASE_URL",
            "OpenAI-compatible API base; the openai provider streams to its /realtime?intent=transcription",
            url("https", "http", "wss", "ws"),
        ),
        Setting("model", "OPENAI_TRANSCRIBE_MODEL", "transcription model for the openai provider", text),
    ),
)

# The vendor's cloud takes no call without a key (a self-hosted or test server may).
KIND: Final = ProviderKind(
    SETTINGS,
    OpenAIProvider,
    lambda options: cloud_key_missing(options.base_url, "openai.com", options.api_key, "OPENAI_API_KEY"),
)
