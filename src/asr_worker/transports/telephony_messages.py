"""What a telephony media stream says, as typed messages: the shapes Twilio's and Exotel's
parsers (`twilio_messages`, `exotel_messages`) both produce, and the pieces they share.

Parsers are pure functions, text in, one message or a `ProtocolError` out, so they can be tested
against fixtures and hostile input (and fuzzed) without a socket. A `ProtocolError` carries a
stable `code` and a reason a person can act on; it never echoes more than a short excerpt of
what was sent.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ..core.audio import AudioFormat
from ..errors import ProtocolError

# Numbers arrive as strings ("chunk": "2"); anything longer than this is not a count we believe.
_MAX_DIGITS: Final = 12
_MAX_PARAMETERS: Final = 32
_MAX_PARAMETER_CHARS: Final = 512


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    fmt: AudioFormat  # of one track; the transport decides the session's channel count
    tracks: tuple[str, ...] = ("inbound",)
    account_sid: str | None = None
    custom_parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    payload: bytes
    track: str = "inbound"
    chunk: int | None = None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    track: str | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    reason: str | None = None


Message = Connected | Start | Media | Dtmf | Mark | Clear | Stop


# --- helpers the platform parsers share ------------------------------------------------------


def load_object(raw: str, max_chars: int) -> tuple[str, dict[str, object]]:
    """Parse one JSON text message into its `event` name and body."""
    if len(raw) > max_chars:
        raise ProtocolError("too_large", f"a message of {len(raw)} characters is over the {max_chars} limit")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_message", "a message must be a JSON object; this one is not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_message", f"a message must be a JSON object, not {type(body).__name__}")
    event = body.get("event")
    if not isinstance(event, str) or not event:
        raise ProtocolError("bad_message", "a message must have a string `event`")
    return event, body


def obj(body: Mapping[str, object], key: str, where: str) -> dict[str, object]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise ProtocolError("bad_message", f"{where} needs an object `{key}`")
    return value


def text(body: Mapping[str, object], key: str, where: str, *, max_chars: int = 256) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError("bad_message", f"{where} needs a string `{key}`")
    if len(value) > max_chars:
        raise ProtocolError("bad_message", f"{where}: `{key}` is longer than {max_chars} characters")
    return value


DTMF_KEYS: Final = "0123456789*#ABCD"


def dtmf_digit(body: Mapping[str, object], where: str) -> str:
    """The key pressed: one of a telephone keypad's 16 (A-D upper-cased)."""
    digit = text(body, "digit", where, max_chars=8).upper()
    if len(digit) != 1 or digit not in DTMF_KEYS:
        raise ProtocolError("bad_message", f"{where}: `digit` must be one of {DTMF_KEYS}, not {digit!r}")
    return digit


def optional_text(body: Mapping[str, object], key: str, *, max_chars: int = 256) -> str | None:
    value = body.get(key)
    return value[:max_chars] if isinstance(value, str) and value else None


def count(body: Mapping[str, object], key: str, where: str, *, required: bool = False) -> int | None:
    """A non-negative whole number sent as a number or, as both platforms do, a string."""
    value = body.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool):
        raise ProtocolError("bad_message", f"{where}: `{key}` must be a whole number")
    if isinstance(value, int) and 0 <= value < 10**_MAX_DIGITS:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
        return int(value)
    raise ProtocolError("bad_message", f"{where}: `{key}` must be a whole number, not {str(value)[:20]!r}")


def parameters(body: Mapping[str, object], key: str, where: str) -> dict[str, str]:
    """Custom parameters: a flat object of short strings (numbers are turned into text)."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError("bad_message", f"{where}: `{key}` must be an object")
    if len(value) > _MAX_PARAMETERS:
        raise ProtocolError("bad_message", f"{where}: `{key}` has more than {_MAX_PARAMETERS} entries")
    out: dict[str, str] = {}
    for name, item in value.items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ProtocolError("bad_message", f"{where}: `{key}.{name[:40]}` must be a string")
        shown = str(item)
        if len(name) > _MAX_PARAMETER_CHARS or len(shown) > _MAX_PARAMETER_CHARS:
            raise ProtocolError(
                "bad_message", f"{where}: `{key}` entries must be under {_MAX_PARAMETER_CHARS} chars"
            )
        out[name] = shown
    return out


def audio_payload(media: Mapping[str, object], where: str, max_bytes: int) -> bytes:
    """The base64 `payload`, decoded strictly; over `max_bytes` of audio is refused unread."""
    value = media.get("payload")
    if not isinstance(value, str):
        raise ProtocolError("bad_audio", f"{where} needs a base64 string `payload`")
    if len(value) > (max_bytes + 2) // 3 * 4:
        raise ProtocolError("too_large", f"{where}: payload is over {max_bytes} bytes of audio; dropped")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("bad_audio", f"{where}: payload is not valid base64; dropped") from None


TRACKS: Final = ("inbound", "outbound")  # the legs of a Twilio-shaped media stream


def _counted_ms(media: Mapping[str, object]) -> int | None:
    return count(media, "timestamp", "media")


def track_media(
    body: Mapping[str, object],
    platform: str,
    max_payload_bytes: int,
    timestamp_ms: Callable[[Mapping[str, object]], int | None] = _counted_ms,
) -> Media:
    """A Twilio-shaped `media` event (Twilio's own, Telnyx's, SignalWire's, Plivo's): its leg
    (`inbound` unless it says), its audio, its chunk number and its time, read by
    `timestamp_ms` where the platform writes it otherwise (milliseconds from the stream's start
    by default)."""
    media = obj(body, "media", "media")
    track = optional_text(media, "track", max_chars=32) or "inbound"
    if track not in TRACKS:
        raise ProtocolError(
            "bad_message", f"media: unknown track {track[:20]!r}; {platform}'s are inbound, outbound"
        )
    return Media(
        payload=audio_payload(media, "media", max_payload_bytes),
        track=track,
        chunk=count(media, "chunk", "media"),
        timestamp_ms=timestamp_ms(media),
    )
