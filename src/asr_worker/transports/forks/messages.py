"""What a media fork says, as typed values, and the pieces the forks' parsers share.

The forks that send one metadata text frame and then raw audio in binary frames (FreeSWITCH's
mod_audio_fork and mod_audio_stream, jambonz `listen`, Vonage, Asterisk's chan_websocket)
each have a pure parser module: the metadata frame and the socket URL's query become a
`ForkStart` (which call, which audio, the role of each channel), and every later text frame a
`ForkControl` (a key pressed, the call's end, a notice the route takes and counts). Parsers
raise `ProtocolError` with a stable code and a reason a person can act on; they never echo more
than a short excerpt of what was sent, so they can be tested on fixtures and fuzzed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ...core.audio import AudioFormat, Encoding
from ...core.call_options import NO_OPTIONS, CallOptions
from ...errors import AudioFormatError, ProtocolError
from ..telephony_messages import DTMF_KEYS

# A metadata frame is a few KB at most (jambonz's carries the call's SIP attributes).
MAX_METADATA_CHARS: Final = 64 * 1024
# The roles of a call's channels, in channel order: channel 0 is the customer's side.
ONE_LEG: Final = ("caller",)
BOTH_MIXED: Final = ("caller+callee",)
TWO_LEGS: Final = ("caller", "callee")


@dataclass(frozen=True, slots=True)
class ForkStart:
    """The call a fork's socket carries, read from its metadata and URL."""

    interaction_id: str  # not yet checked: the transport checks it as every route does
    fmt: AudioFormat
    tenant_id: str | None = None
    options: CallOptions = NO_OPTIONS
    call_ref: str | None = None  # the platform's own id of the call, for the log
    legs: tuple[str, ...] = ONE_LEG  # the role of each channel, in channel order


@dataclass(frozen=True, slots=True)
class Keypress:
    digit: str
    channel: int = 0


@dataclass(frozen=True, slots=True)
class Hangup:
    """The platform says the call is over."""


@dataclass(frozen=True, slots=True)
class Notice:
    """A message the protocol defines that asks nothing of a transcriber (counted by name)."""

    name: str


ForkControl = Keypress | Hangup | Notice


# --- helpers the fork parsers share ------------------------------------------------------------


def json_object(raw: str, where: str, max_chars: int = MAX_METADATA_CHARS) -> dict[str, object]:
    """One JSON object, or ProtocolError (`bad_message`, `too_large`) naming `where`."""
    if len(raw) > max_chars:
        raise ProtocolError("too_large", f"{where}: {len(raw)} characters is over the {max_chars} limit")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_message", f"{where} must be a JSON object; this one is not JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError("bad_message", f"{where} must be a JSON object, not {type(value).__name__}")
    return value


def first_text(fields: Mapping[str, object], *names: str, max_chars: int = 256) -> str | None:
    """The first of `names` whose value is a non-empty string (or a number, as text)."""
    for name in names:
        value = fields.get(name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            value = str(value)
        if isinstance(value, str) and value:
            return value[:max_chars]
    return None


def sample_rate(value: object, where: str, allowed: tuple[int, ...]) -> int:
    """A rate given as a number or text ("16000", FreeSWITCH's "16k"), one of `allowed`."""
    text = str(value).strip().lower()
    if text.endswith("k") and text[:-1].isdigit():
        text = str(int(text[:-1]) * 1000)
    if isinstance(value, bool) or not text.isascii() or not text.isdigit() or len(text) > 6:
        raise ProtocolError("bad_format", f"{where}: sample rate {str(value)[:20]!r} is not a whole number")
    rate = int(text)
    if rate not in allowed:
        shown = ", ".join(str(r) for r in allowed)
        raise ProtocolError("bad_format", f"{where}: sample rate {rate} is not one the worker takes: {shown}")
    return rate


def linear16(rate: int, channels: int, where: str) -> AudioFormat:
    try:
        return AudioFormat.parse(Encoding.LINEAR16, rate, channels)
    except AudioFormatError as exc:
        raise ProtocolError("bad_format", f"{where}: {exc}") from None


def mix_legs(value: object, where: str) -> tuple[str, ...]:
    """FreeSWITCH's and jambonz's mix type: `mono` (the caller), `mixed` (both in one channel)
    or `stereo` (caller and callee, one channel each)."""
    mix = str(value).strip().lower()
    if mix == "mono":
        return ONE_LEG
    if mix == "mixed":
        return BOTH_MIXED
    if mix == "stereo":
        return TWO_LEGS
    raise ProtocolError("bad_format", f"{where}: mix type {str(value)[:20]!r} is not mono, mixed or stereo")


def call_options(fields: Mapping[str, object], query: Mapping[str, str], where: str) -> CallOptions:
    """A call's options from its metadata's fields where it names any, else from the URL's
    query (Deepgram's names: `keyterm`, repeated)."""
    if "keyterms" in fields:
        return CallOptions.from_fields(fields, where)
    return CallOptions.from_query(query)


def keypress(fields: Mapping[str, object], where: str, *names: str, channel: int = 0) -> Keypress:
    """A DTMF digit from the first of `names` present: one of a keypad's 16 keys."""
    digit = (first_text(fields, *names, max_chars=8) or "").upper()
    if len(digit) != 1 or digit not in DTMF_KEYS:
        raise ProtocolError("bad_message", f"{where}: the digit must be one of {DTMF_KEYS}, not {digit!r}")
    return Keypress(digit, channel)
