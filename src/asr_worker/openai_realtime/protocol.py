"""OpenAI's Realtime API in transcription mode, as data: both ends of asr-worker speak it from here.

Read from OpenAI's Realtime API reference and the official `openai` Python SDK's generated
types (`openai/types/realtime` for the GA schema, `openai/types/beta/realtime` for the beta
one). The server (`transports.openai_realtime`) parses what a client sends with
`parse_client_event` and builds its answers with the `*_event` builders; the provider
(`providers.openai`) builds what it sends with the client builders and parses what a server
answers with `parse_server_event`. So the two ends can be tested against each other and the
server against the official SDK.

A session has one configuration, set by either schema's update:
* GA: `session.update` with `session = {"type": "transcription", "audio": {"input": {"format":
  {"type": "audio/pcm", "rate": 24000} | {"type": "audio/pcmu"} | {"type": "audio/pcma"},
  "transcription": {"model", "language", "prompt"}, "turn_detection": {"type": "server_vad",
  ...} | null, "noise_reduction": {"type": "near_field" | "far_field"} | null}}}`, answered
  by `session.updated`;
* beta: `transcription_session.update` with `session = {"input_audio_format": "pcm16" |
  "g711_ulaw" | "g711_alaw", "input_audio_transcription": {...}, "turn_detection": ...,
  "input_audio_noise_reduction": ...}`, answered by `transcription_session.updated`.
Only the fields an update names change; the answer carries the whole effective configuration.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal

from .. import jsonwire
from ..errors import ProtocolError, ProtocolViolation

REALTIME_PATH: Final = "/v1/realtime"
# Browsers cannot set headers on a WebSocket: they offer the key as a subprotocol.
SUBPROTOCOL_KEY_PREFIX: Final = "openai-insecure-api-key."
SUBPROTOCOL_REALTIME: Final = "realtime"
DEFAULT_MODEL: Final = "gpt-4o-transcribe"
# OpenAI takes up to 15 MiB in one append; asr-worker takes less (the call's audio is fed
# on at once, and a client sends 20-250 ms a message): `max_audio_bytes` is the caller's.
MIN_COMMIT_MS: Final = 100  # OpenAI refuses to commit less (`input_audio_buffer_commit_empty`)
MAX_PROMPT_CHARS: Final = 4096  # a transcription `prompt`, as the server here takes it

Schema = Literal["ga", "beta"]

# --- session configuration --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputFormat:
    """The input audio format: `pcm16` 24 kHz, or G.711 u-law or A-law at 8 kHz."""

    name: Literal["pcm16", "g711_ulaw", "g711_alaw"]

    @property
    def encoding(self) -> str:
        """The worker's name for the encoding (`core.audio.Encoding`)."""
        return {"pcm16": "linear16", "g711_ulaw": "mulaw", "g711_alaw": "alaw"}[self.name]

    @property
    def sample_rate(self) -> int:
        return 24000 if self.name == "pcm16" else 8000

    @property
    def bytes_per_second(self) -> int:
        return self.sample_rate * (2 if self.name == "pcm16" else 1)

    def ga(self) -> dict[str, object]:
        if self.name == "pcm16":
            return {"type": "audio/pcm", "rate": 24000}
        return {"type": "audio/pcmu" if self.name == "g711_ulaw" else "audio/pcma"}


PCM16: Final = InputFormat("pcm16")
G711_ULAW: Final = InputFormat("g711_ulaw")
G711_ALAW: Final = InputFormat("g711_alaw")
_BETA_FORMATS: Final[dict[str, InputFormat]] = {f.name: f for f in (PCM16, G711_ULAW, G711_ALAW)}
_GA_FORMATS: Final = {"audio/pcm": PCM16, "audio/pcmu": G711_ULAW, "audio/pcma": G711_ALAW}


@dataclass(frozen=True, slots=True)
class Transcription:
    model: str = DEFAULT_MODEL
    language: str | None = None
    prompt: str | None = None

    def wire(self) -> dict[str, object]:
        out: dict[str, object] = {"model": self.model}
        if self.language is not None:
            out["language"] = self.language
        if self.prompt is not None:
            out["prompt"] = self.prompt
        return out


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """Server-side turn detection; its numbers are echoed (the configured provider's own
    endpointing decides where an utterance ends)."""

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    def wire(self) -> dict[str, object]:
        if self.type == "semantic_vad":
            return {"type": "semantic_vad"}
        return {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
        }


@dataclass(frozen=True, slots=True)
class SessionConfig:
    format: InputFormat = PCM16
    transcription: Transcription = Transcription()
    turn_detection: TurnDetection | None = TurnDetection()
    noise_reduction: str | None = None  # near_field, far_field; accepted and echoed
    include: tuple[str, ...] = ()

    def ga(self, session_id: str) -> dict[str, object]:
        """The GA transcription session object (`session.created` / `session.updated`)."""
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": session_id,
            "audio": {
                "input": {
                    "format": self.format.ga(),
                    "transcription": self.transcription.wire(),
                    "turn_detection": None if self.turn_detection is None else self.turn_detection.wire(),
                    "noise_reduction": _noise(self.noise_reduction),
                }
            },
            "include": list(self.include),
        }

    def beta(self, session_id: str) -> dict[str, object]:
        """The beta transcription session object (`transcription_session.*`)."""
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "input_audio_format": self.format.name,
            "input_audio_transcription": self.transcription.wire(),
            "turn_detection": None if self.turn_detection is None else self.turn_detection.wire(),
            "input_audio_noise_reduction": _noise(self.noise_reduction),
            "include": list(self.include),
        }

    def wire(self, schema: Schema, session_id: str) -> dict[str, object]:
        return self.ga(session_id) if schema == "ga" else self.beta(session_id)


def _noise(kind: str | None) -> dict[str, object] | None:
    return None if kind is None else {"type": kind}


@dataclass(frozen=True, slots=True)
class SessionPatch:
    """What one update changes: each field is the new value, or `UNSET` (not named)."""

    format: InputFormat | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    noise_reduction: str | None = None
    include: tuple[str, ...] | None = None
    present: frozenset[str] = frozenset()

    def apply(self, config: SessionConfig) -> SessionConfig:
        changes: dict[str, object] = {name: getattr(self, name) for name in self.present}
        return replace(config, **changes)  # type: ignore[arg-type]


# --- errors ---------------------------------------------------------------------------------


# --- client events: parsing (server side) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    event_id: str | None
    schema: Schema
    patch: SessionPatch


@dataclass(frozen=True, slots=True)
class AudioAppend:
    event_id: str | None
    audio: bytes


@dataclass(frozen=True, slots=True)
class AudioCommit:
    event_id: str | None


@dataclass(frozen=True, slots=True)
class AudioClear:
    event_id: str | None


ClientEvent = SessionUpdate | AudioAppend | AudioCommit | AudioClear

CLIENT_EVENT_TYPES: Final = (
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)


def parse_client_event(text: str | bytes, max_audio_bytes: int) -> ClientEvent:
    """One client event, or ProtocolError saying what is wrong with it (with its `event_id`
    where it had a usable one). `max_audio_bytes` bounds one append's decoded audio."""
    try:
        data = jsonwire.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("invalid_json", "the event is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_event", "an event must be a JSON object with a `type`")
    raw_id = data.get("event_id")
    event_id = raw_id[:128] if isinstance(raw_id, str) else None
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(
            "invalid_event", "an event must have a string `type`", param="type", event_id=event_id
        )
    if kind == "input_audio_buffer.append":
        return AudioAppend(event_id, _audio(data.get("audio"), max_audio_bytes, event_id))
    if kind == "input_audio_buffer.commit":
        return AudioCommit(event_id)
    if kind == "input_audio_buffer.clear":
        return AudioClear(event_id)
    if kind == "session.update":
        return SessionUpdate(event_id, "ga", _ga_patch(data.get("session"), event_id))
    if kind == "transcription_session.update":
        return SessionUpdate(event_id, "beta", _beta_patch(data.get("session"), event_id))
    raise ProtocolError(
        "unknown_event",
        f"unknown or unsupported event type {kind[:60]!r} for a transcription session; "
        f"known: {', '.join(CLIENT_EVENT_TYPES)}",
        param="type",
        event_id=event_id,
    )


def _audio(value: object, max_audio_bytes: int, event_id: str | None) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError(
            "invalid_value", "`audio` must be a base64 string", param="audio", event_id=event_id
        )
    if len(value) > (max_audio_bytes + 2) // 3 * 4:
        raise ProtocolError(
            "audio_too_large",
            f"one append may carry at most {max_audio_bytes} bytes of audio; send it in smaller events",
            param="audio",
            event_id=event_id,
        )
    try:
        return binascii.a2b_base64(value, strict_mode=True)  # validates, a little faster than b64decode
    except (binascii.Error, ValueError):
        raise ProtocolError(
            "invalid_value", "`audio` is not valid base64", param="audio", event_id=event_id
        ) from None


def _object(value: object, param: str, event_id: str | None) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ProtocolError("invalid_value", f"`{param}` must be an object", param=param, event_id=event_id)
    return value


def _ga_patch(value: object, event_id: str | None) -> SessionPatch:
    session = _object(value, "session", event_id)
    kind = session.get("type", "transcription")
    if kind != "transcription":
        raise ProtocolError(
            "unsupported_session_type",
            f"session.type {str(kind)[:40]!r} is not served here: this endpoint runs transcription sessions "
            '(session.type "transcription")',
            param="session.type",
            event_id=event_id,
        )
    fields: dict[str, object] = {}
    if "include" in session:
        fields["include"] = _include(session["include"], "session.include", event_id)
    audio = session.get("audio")
    if audio is not None:
        inp = _object(audio, "session.audio", event_id).get("input")
        if inp is not None:
            inp = _object(inp, "session.audio.input", event_id)
            if "format" in inp and inp["format"] is not None:
                fields["format"] = _ga_format(inp["format"], event_id)
            if "transcription" in inp and inp["transcription"] is not None:
                fields["transcription"] = _transcription(
                    inp["transcription"], "session.audio.input.transcription", event_id
                )
            if "turn_detection" in inp:
                fields["turn_detection"] = _turn_detection(
                    inp["turn_detection"], "session.audio.input.turn_detection", event_id
                )
            if "noise_reduction" in inp:
                fields["noise_reduction"] = _noise_reduction(
                    inp["noise_reduction"], "session.audio.input.noise_reduction", event_id
                )
    return _patch(fields)


def _beta_patch(value: object, event_id: str | None) -> SessionPatch:
    session = _object(value, "session", event_id)
    fields: dict[str, object] = {}
    if "include" in session:
        fields["include"] = _include(session["include"], "session.include", event_id)
    fmt = session.get("input_audio_format")
    if fmt is not None:
        found = _BETA_FORMATS.get(fmt) if isinstance(fmt, str) else None
        if found is None:
            raise ProtocolError(
                "unsupported_format",
                f"input_audio_format {str(fmt)[:40]!r} is not supported: "
                "use pcm16 (24 kHz), g711_ulaw or g711_alaw",
                param="session.input_audio_format",
                event_id=event_id,
            )
        fields["format"] = found
    if session.get("input_audio_transcription") is not None:
        fields["transcription"] = _transcription(
            session["input_audio_transcription"], "session.input_audio_transcription", event_id
        )
    if "turn_detection" in session:
        fields["turn_detection"] = _turn_detection(
            session["turn_detection"], "session.turn_detection", event_id
        )
    if "input_audio_noise_reduction" in session:
        fields["noise_reduction"] = _noise_reduction(
            session["input_audio_noise_reduction"], "session.input_audio_noise_reduction", event_id
        )
    return _patch(fields)


def _patch(fields: dict[str, object]) -> SessionPatch:
    return SessionPatch(**fields, present=frozenset(fields))  # type: ignore[arg-type]


def _ga_format(value: object, event_id: str | None) -> InputFormat:
    param = "session.audio.input.format"
    fmt = _object(value, param, event_id)
    kind = fmt.get("type", "audio/pcm")
    found = _GA_FORMATS.get(kind) if isinstance(kind, str) else None
    if found is None:
        raise ProtocolError(
            "unsupported_format",
            f"audio format {str(kind)[:40]!r} is not supported: "
            "use audio/pcm (24 kHz), audio/pcmu or audio/pcma",
            param=param + ".type",
            event_id=event_id,
        )
    rate = fmt.get("rate")
    if found is PCM16 and rate is not None and rate != 24000:
        raise ProtocolError(
            "unsupported_format",
            f"audio/pcm at rate {str(rate)[:20]} is not supported: only 24000 is",
            param=param + ".rate",
            event_id=event_id,
        )
    return found


def _transcription(value: object, param: str, event_id: str | None) -> Transcription:
    obj = _object(value, param, event_id)
    model = obj.get("model")
    out = Transcription(
        model=_short_text(model, param + ".model", event_id) if model is not None else DEFAULT_MODEL,
        language=_optional_text(obj.get("language"), param + ".language", event_id),
        prompt=_optional_text(obj.get("prompt"), param + ".prompt", event_id, limit=MAX_PROMPT_CHARS),
    )
    return out


def _turn_detection(value: object, param: str, event_id: str | None) -> TurnDetection | None:
    if value is None:
        return None
    obj = _object(value, param, event_id)
    kind = obj.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise ProtocolError(
            "invalid_value",
            f"turn_detection.type {str(kind)[:40]!r}: use server_vad (or null for manual commits)",
            param=param + ".type",
            event_id=event_id,
        )
    default = TurnDetection()
    threshold = _number(obj.get("threshold"), default.threshold, 0.0, 1.0, param + ".threshold", event_id)
    padding = _number(
        obj.get("prefix_padding_ms"),
        default.prefix_padding_ms,
        0,
        10_000,
        param + ".prefix_padding_ms",
        event_id,
    )
    silence = _number(
        obj.get("silence_duration_ms"),
        default.silence_duration_ms,
        0,
        10_000,
        param + ".silence_duration_ms",
        event_id,
    )
    return TurnDetection(kind, threshold, int(padding), int(silence))


def _noise_reduction(value: object, param: str, event_id: str | None) -> str | None:
    if value is None:
        return None
    kind = _object(value, param, event_id).get("type")
    if kind not in ("near_field", "far_field"):
        raise ProtocolError(
            "invalid_value",
            "noise_reduction.type must be near_field or far_field",
            param=param,
            event_id=event_id,
        )
    return str(kind)


def _include(value: object, param: str, event_id: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(value) > 8:
        raise ProtocolError(
            "invalid_value", "`include` must be a short list of strings", param=param, event_id=event_id
        )
    return tuple(str(v)[:100] for v in value)


def _number(value: object, default: float, lo: float, hi: float, param: str, event_id: str | None) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not (lo <= value <= hi):
        raise ProtocolError(
            "invalid_value", f"{param} must be a number from {lo:g} to {hi:g}", param=param, event_id=event_id
        )
    return float(value)


def _short_text(value: object, param: str, event_id: str | None, limit: int = 200) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ProtocolError(
            "invalid_value",
            f"{param} must be a string of at most {limit} characters",
            param=param,
            event_id=event_id,
        )
    return value


def _optional_text(value: object, param: str, event_id: str | None, limit: int = 200) -> str | None:
    return None if value is None else _short_text(value, param, event_id, limit)


# --- client events: building (client side) ---------------------------------------------------


def session_update_event(config: SessionConfig, schema: Schema = "ga") -> dict[str, object]:
    """The update that sets `config` whole, in either schema."""
    if schema == "beta":
        session = config.beta("")
        del session["id"], session["object"]
        return {"type": "transcription_session.update", "session": session}
    session = config.ga("")
    del session["id"], session["object"]
    return {"type": "session.update", "session": session}


def append_event(audio: bytes) -> dict[str, object]:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode("ascii")}


def commit_event() -> dict[str, object]:
    return {"type": "input_audio_buffer.commit"}


def clear_event() -> dict[str, object]:
    return {"type": "input_audio_buffer.clear"}


# --- server events: building (server side) -----------------------------------------------------


def session_event(
    kind: Literal["created", "updated"], schema: Schema, config: SessionConfig, session_id: str, event_id: str
) -> dict[str, object]:
    name = f"session.{kind}" if schema == "ga" else f"transcription_session.{kind}"
    return {"type": name, "event_id": event_id, "session": config.wire(schema, session_id)}


def error_event(error: ProtocolError, event_id: str) -> dict[str, object]:
    return {
        "type": "error",
        "event_id": event_id,
        "error": {
            "type": error.type,
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "event_id": error.event_id,
        },
    }


def speech_started_event(item_id: str, audio_start_ms: int, event_id: str) -> dict[str, object]:
    return {
        "type": "input_audio_buffer.speech_started",
        "event_id": event_id,
        "audio_start_ms": audio_start_ms,
        "item_id": item_id,
    }


def speech_stopped_event(item_id: str, audio_end_ms: int, event_id: str) -> dict[str, object]:
    return {
        "type": "input_audio_buffer.speech_stopped",
        "event_id": event_id,
        "audio_end_ms": audio_end_ms,
        "item_id": item_id,
    }


def committed_event(item_id: str, previous_item_id: str | None, event_id: str) -> dict[str, object]:
    return {
        "type": "input_audio_buffer.committed",
        "event_id": event_id,
        "previous_item_id": previous_item_id,
        "item_id": item_id,
    }


def cleared_event(event_id: str) -> dict[str, object]:
    return {"type": "input_audio_buffer.cleared", "event_id": event_id}


def item_event(
    schema: Schema, item_id: str, previous_item_id: str | None, event_id: str
) -> dict[str, object]:
    """The user message item a commit makes: `conversation.item.added` in GA,
    `conversation.item.created` in beta."""
    return {
        "type": "conversation.item.added" if schema == "ga" else "conversation.item.created",
        "event_id": event_id,
        "previous_item_id": previous_item_id,
        "item": {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        },
    }


def delta_event(item_id: str, delta: str, event_id: str) -> dict[str, object]:
    return {
        "type": "conversation.item.input_audio_transcription.delta",
        "event_id": event_id,
        "item_id": item_id,
        "content_index": 0,
        "delta": delta,
    }


def completed_event(item_id: str, transcript: str, audio_s: float, event_id: str) -> dict[str, object]:
    return {
        "type": "conversation.item.input_audio_transcription.completed",
        "event_id": event_id,
        "item_id": item_id,
        "content_index": 0,
        "transcript": transcript,
        "usage": {"type": "duration", "seconds": round(audio_s, 3)},
    }


def failed_event(item_id: str, code: str, message: str, event_id: str) -> dict[str, object]:
    return {
        "type": "conversation.item.input_audio_transcription.failed",
        "event_id": event_id,
        "item_id": item_id,
        "content_index": 0,
        "error": {"type": "server_error", "code": code, "message": message, "param": None},
    }


def dumps(event: Mapping[str, object]) -> str:
    return jsonwire.dumps_text(event)


# --- server events: parsing (client side) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class Committed:
    item_id: str
    previous_item_id: str | None


@dataclass(frozen=True, slots=True)
class TranscriptionDelta:
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class TranscriptionCompleted:
    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class TranscriptionFailed:
    item_id: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ServerError:
    type: str
    code: str
    message: str
    event_id: str | None


@dataclass(frozen=True, slots=True)
class SessionAck:
    """`session.created` / `.updated` (or the beta names): the server's effective session."""

    created: bool


ServerEvent = (
    SpeechStarted
    | SpeechStopped
    | Committed
    | TranscriptionDelta
    | TranscriptionCompleted
    | TranscriptionFailed
    | ServerError
    | SessionAck
)

# Server events a transcription client has nothing to do with.
_IGNORED_SERVER_EVENTS: Final = frozenset(
    {
        "input_audio_buffer.cleared",
        "conversation.item.added",
        "conversation.item.created",
        "conversation.item.done",
        "conversation.item.retrieved",
        "conversation.created",
        "rate_limits.updated",
        "input_audio_buffer.timeout_triggered",
        "conversation.item.input_audio_transcription.segment",
    }
)
_MAX_MS: Final = 10**10  # no session lasts 100 days


def parse_server_event(text: str | bytes) -> ServerEvent | None:
    """One server event as a typed value, None for one a transcription client ignores, or
    ProtocolViolation for one that is not valid protocol."""
    if isinstance(text, bytes):
        raise ProtocolViolation("binary", "a binary message; the protocol is JSON text")
    try:
        data = jsonwire.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolViolation("not_json", "a text message that is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolViolation("no_type", "a message that is not a JSON object with a string type")
    kind = str(data["type"])
    if kind in ("session.created", "transcription_session.created"):
        return SessionAck(True)
    if kind in ("session.updated", "transcription_session.updated"):
        return SessionAck(False)
    if kind == "conversation.item.input_audio_transcription.delta":
        delta = data.get("delta")
        return TranscriptionDelta(_id(data, "item_id"), delta if isinstance(delta, str) else "")
    if kind == "conversation.item.input_audio_transcription.completed":
        transcript = data.get("transcript")
        if not isinstance(transcript, str):
            raise ProtocolViolation("bad_field", "completed without a string transcript")
        return TranscriptionCompleted(_id(data, "item_id"), transcript)
    if kind == "input_audio_buffer.speech_started":
        return SpeechStarted(_id(data, "item_id"), _ms(data.get("audio_start_ms")))
    if kind == "input_audio_buffer.speech_stopped":
        return SpeechStopped(_id(data, "item_id"), _ms(data.get("audio_end_ms")))
    if kind == "input_audio_buffer.committed":
        previous = data.get("previous_item_id")
        return Committed(_id(data, "item_id"), previous if isinstance(previous, str) else None)
    if kind == "conversation.item.input_audio_transcription.failed":
        error = data.get("error")
        error = error if isinstance(error, dict) else {}
        return TranscriptionFailed(
            _id(data, "item_id"), _text(error.get("code")) or "failed", _text(error.get("message"))
        )
    if kind == "error":
        error = data.get("error")
        if not isinstance(error, dict):
            raise ProtocolViolation("bad_field", "an error event without an error object")
        event_id = error.get("event_id")
        return ServerError(
            _text(error.get("type")) or "error",
            _text(error.get("code")),
            _text(error.get("message")),
            event_id[:128] if isinstance(event_id, str) else None,
        )
    if kind in _IGNORED_SERVER_EVENTS or kind.startswith(("response.", "output_audio_buffer.")):
        return None
    raise ProtocolViolation("unknown_type", f"unknown event type {kind[:60]!r}")


def _id(data: dict[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ProtocolViolation("bad_field", f"`{key}` must be a non-empty string")
    return value


def _ms(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolViolation("bad_field", "a time in ms must be a number")
    if not 0 <= value <= _MAX_MS:
        raise ProtocolViolation("bad_field", "a time in ms out of range")
    return int(value)


def _text(value: object, limit: int = 300) -> str:
    return value[:limit] if isinstance(value, str) else ""
