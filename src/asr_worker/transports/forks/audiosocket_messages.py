"""Asterisk's AudioSocket protocol as data (docs.asterisk.org, channel drivers: AudioSocket;
Asterisk's `include/asterisk/res_audiosocket.h`), both ways.

A TCP stream of messages, each a 3-byte header (a 1-byte kind, a 2-byte big-endian payload
length) and its payload. Asterisk sends `0x01` first, the call's UUID (16 bytes), then audio:
`0x10`, signed linear 16-bit little-endian mono PCM at 8 kHz (all the `AudioSocket()` dialplan
application sends), and in newer versions `0x11`-`0x18` for the other signed-linear rates
(12, 16, 24, 32, 44.1, 48, 96 and 192 kHz) the channel driver may carry; `0x03` a DTMF digit (one
ASCII byte); `0xff` an error (an optional code); `0x00` the hangup (closing the socket says the
same). The server may send `0x00` to hang the channel up, and audio back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from ...errors import ProtocolError
from ..telephony_messages import DTMF_KEYS

HEADER_BYTES: Final = 3
KIND_HANGUP: Final = 0x00
KIND_UUID: Final = 0x01
KIND_DTMF: Final = 0x03
KIND_ERROR: Final = 0xFF
# The signed-linear audio kinds and their rates; the worker takes up to 48 kHz.
AUDIO_RATES: Final = {
    0x10: 8000,
    0x11: 12000,
    0x12: 16000,
    0x13: 24000,
    0x14: 32000,
    0x15: 44100,
    0x16: 48000,
    0x17: 96000,
    0x18: 192000,
}
MAX_RATE: Final = 48000


@dataclass(frozen=True, slots=True)
class CallId:
    interaction_id: str  # the UUID in its usual text form


@dataclass(frozen=True, slots=True)
class Audio:
    sample_rate: int
    pcm: bytes


@dataclass(frozen=True, slots=True)
class Digit:
    digit: str


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class AsteriskError:
    code: int | None


AudioSocketMessage = CallId | Audio | Digit | Hangup | AsteriskError


def header(data: bytes) -> tuple[int, int]:
    """(kind, payload length) of a 3-byte header."""
    if len(data) != HEADER_BYTES:
        raise ProtocolError("bad_message", f"a truncated header: {len(data)} of {HEADER_BYTES} bytes")
    return data[0], int.from_bytes(data[1:3], "big")


def message(kind: int, payload: bytes) -> AudioSocketMessage:
    """One message from its kind and payload; raises ProtocolError with a reason."""
    rate = AUDIO_RATES.get(kind)
    if rate is not None:
        if rate > MAX_RATE:
            raise ProtocolError(
                "bad_format", f"audio of kind 0x{kind:02x} is {rate} Hz, over the worker's {MAX_RATE}"
            )
        return Audio(rate, payload)
    if kind == KIND_UUID:
        if len(payload) != 16:
            raise ProtocolError("bad_message", f"a UUID message carries 16 bytes, not {len(payload)}")
        return CallId(str(uuid.UUID(bytes=payload)))
    if kind == KIND_DTMF:
        digit = payload[:1].decode("ascii", "replace").upper()
        if len(payload) != 1 or digit not in DTMF_KEYS:
            raise ProtocolError(
                "bad_message", f"a DTMF message carries one of {DTMF_KEYS}, not {payload[:4]!r}"
            )
        return Digit(digit)
    if kind == KIND_HANGUP:
        return Hangup()
    if kind == KIND_ERROR:
        return AsteriskError(payload[0] if payload else None)
    raise ProtocolError("unknown_message", f"unknown message kind 0x{kind:02x} ({len(payload)} bytes)")


# --- what a client (Asterisk) or the server sends ----------------------------------------------


def encode(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError("an AudioSocket payload is at most 65535 bytes")
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


def call_id(interaction_id: str) -> bytes:
    return encode(KIND_UUID, uuid.UUID(interaction_id).bytes)


def audio(pcm: bytes, sample_rate: int = 8000) -> bytes:
    kind = next(k for k, rate in AUDIO_RATES.items() if rate == sample_rate)
    return encode(kind, pcm)


def hangup() -> bytes:
    return encode(KIND_HANGUP)
