"""jambonz's custom speech vendor API, speech-to-text side, as data (docs.jambonz.org, guides:
custom speech vendors), both ways.

jambonz opens a WebSocket to the vendor's URL with `Authorization: Bearer <api key>` (the key
given when the custom vendor was created in the jambonz portal), then sends:

    {"type": "start", "language": "en-US", "format": "raw", "encoding": "LINEAR16",
     "interimResults": true, "sampleRateHz": 8000, "options": {...}}

then 16-bit little-endian mono PCM in binary frames, and `{"type": "stop"}` when it wants the
last results; the vendor sends them and closes the socket. `options` holds the recognizer's
`hints` (strings, or a JSON text of `{"phrase", "boost"}` objects), `hintsBoost` and the
call's `callSid`. Results go back as

    {"type": "transcription", "is_final": true, "alternatives": [{"transcript": "...",
     "confidence": 0.9}], "channel": 1, "language": "en-US"}

and trouble as `{"type": "error", "error": "..."}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ...core.audio import AudioFormat
from ...core.call_options import CallOptions
from ...errors import ProtocolError
from .messages import first_text, json_object, linear16, sample_rate

SAMPLE_RATES: Final = (8000, 16000, 24000, 32000, 48000)
_ENCODINGS: Final = ("linear16", "l16", "pcm16")


@dataclass(frozen=True, slots=True)
class SttStart:
    fmt: AudioFormat
    language: str
    interim: bool
    interaction_id: str | None  # None: jambonz named no call; the route makes an id of its own
    tenant_id: str | None
    call_ref: str | None  # jambonz's callSid
    options: CallOptions


def parse_start(text: str, query: Mapping[str, str]) -> SttStart:
    """jambonz's `start` message and the vendor URL's query."""
    fields = json_object(text, "start")
    if fields.get("type") != "start":
        shown = str(fields.get("type"))[:40]
        raise ProtocolError("bad_message", f"the first message must be jambonz's start, not {shown!r}")
    encoding = (first_text(fields, "encoding") or "LINEAR16").lower()
    if encoding not in _ENCODINGS or (first_text(fields, "format") or "raw").lower() != "raw":
        raise ProtocolError("bad_format", f"start: encoding {encoding[:20]!r} is not raw LINEAR16")
    rate = sample_rate(first_text(fields, "sampleRateHz") or "8000", "start.sampleRateHz", SAMPLE_RATES)
    raw_options = fields.get("options")
    options: Mapping[str, object] = raw_options if isinstance(raw_options, dict) else {}
    call_sid = first_text(options, "callSid")
    return SttStart(
        fmt=linear16(rate, 1, "start"),
        language=first_text(fields, "language", max_chars=32) or "en-US",
        interim=fields.get("interimResults") is True,
        interaction_id=first_text(options, "interaction_id") or query.get("interaction_id") or call_sid,
        tenant_id=first_text(options, "tenant_id") or query.get("tenant_id"),
        call_ref=call_sid,
        options=CallOptions.from_fields({"keyterms": _terms(options)}, "options"),
    )


def _terms(options: Mapping[str, object]) -> object:
    """The call's words: `keyterms` where given, else the recognizer's `hints` (strings, or a
    JSON text of objects with a `phrase`)."""
    if "keyterms" in options:
        return options["keyterms"]
    hints = options.get("hints")
    if isinstance(hints, str) and hints.lstrip().startswith("["):
        try:
            hints = json.loads(hints)
        except (ValueError, RecursionError):
            raise ProtocolError("bad_message", "start: options.hints is not valid JSON") from None
    if isinstance(hints, list):
        phrases = [h.get("phrase") if isinstance(h, dict) else h for h in hints]
        return [p for p in phrases if isinstance(p, str)]
    return None


def parse_control(text: str) -> str:
    """A text message after `start`: only `stop` is jambonz's."""
    fields = json_object(text, "a text message", max_chars=4096)
    kind = first_text(fields, "type") or ""
    if kind == "stop":
        return "stop"
    if kind == "start":
        raise ProtocolError("bad_message", "a second start on one socket; ignored")
    raise ProtocolError(
        "unknown_message", f"unknown message type {kind[:40]!r}; jambonz sends start and stop"
    )


# --- what jambonz sends (for clients that play it) ---------------------------------------------


def start_message(
    sample_rate: int,
    *,
    call_sid: str,
    language: str = "en-US",
    interim: bool = True,
    hints: list[str] | None = None,
) -> str:
    """`start`, field for field as jambonz's transcription module writes it, with the `options`
    its feature server adds."""
    options: dict[str, object] = {"hints": hints or [], "hintsBoost": 20, "callSid": call_sid}
    return json.dumps(
        {
            "type": "start",
            "language": language,
            "format": "raw",
            "encoding": "LINEAR16",
            "interimResults": interim,
            "sampleRateHz": sample_rate,
            "options": options,
        }
    )


def stop_message() -> str:
    return json.dumps({"type": "stop"})


@dataclass(frozen=True, slots=True)
class SttResult:
    """A `transcription` the vendor sent back (`channel` from 0 here; jambonz counts from 1)."""

    text: str
    is_final: bool
    confidence: float | None
    channel: int
    language: str | None


@dataclass(frozen=True, slots=True)
class SttError:
    message: str


def parse_reply(text: str) -> SttResult | SttError:
    """What the vendor sent back, read as jambonz reads it: a `transcription`'s first
    alternative, or an `error`. Raises ProtocolError for anything else."""
    fields = json_object(text, "a reply")
    kind = first_text(fields, "type") or ""
    if kind == "error":
        return SttError(first_text(fields, "error", max_chars=1024) or "an error")
    if kind != "transcription":
        raise ProtocolError(
            "unknown_message", f"unknown reply type {kind[:40]!r}; jambonz takes transcription, error"
        )
    alternatives = fields.get("alternatives")
    first = alternatives[0] if isinstance(alternatives, list) and alternatives else None
    if not isinstance(first, dict):
        raise ProtocolError("bad_message", "transcription: `alternatives` must hold at least one object")
    confidence = first.get("confidence")
    channel = fields.get("channel", 1)
    return SttResult(
        text=first_text(first, "transcript", max_chars=100_000) or "",
        is_final=fields.get("is_final") is True,
        confidence=float(confidence)
        if isinstance(confidence, int | float) and not isinstance(confidence, bool)
        else None,
        channel=channel - 1
        if isinstance(channel, int) and not isinstance(channel, bool) and channel >= 1
        else 0,
        language=first_text(fields, "language", max_chars=32),
    )


# --- what the vendor sends back ---------------------------------------------------------------


def transcription(text: str, *, is_final: bool, confidence: float, channel: int, language: str) -> str:
    """A result: `channel` is 1-based, as jambonz numbers them."""
    return json.dumps(
        {
            "type": "transcription",
            "is_final": is_final,
            "alternatives": [{"transcript": text, "confidence": round(confidence, 4)}],
            "channel": channel + 1,
            "language": language,
        }
    )


def error(message: str) -> str:
    return json.dumps({"type": "error", "error": message})
