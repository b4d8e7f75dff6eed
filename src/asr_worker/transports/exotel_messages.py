"""Exotel AgentStream messages (the Stream and Voicebot applets;
developer.exotel.com/docs/agentstream), parsed into the shared telephony messages.

Exotel writes snake_case and sends every number as a string. `start.media_format` is
`{"encoding": "audio/x-raw", "sample_rate": "8000"|"16000"|"24000", "bit_rate": "16"}`:
16-bit little-endian mono PCM, base64, about 100 ms a message. One track: the call's audio.

The builders at the end write the same messages as Exotel sends them, for the side that plays
a call into the worker (`asr-worker stream --protocol exotel`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Final

from ..core.audio import AudioFormat, Encoding
from ..errors import AudioFormatError, ProtocolError
from .telephony_messages import (
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    Message,
    Start,
    Stop,
    audio_payload,
    count,
    dtmf_digit,
    load_object,
    obj,
    optional_text,
    parameters,
    text,
)

# 100 ms at 24 kHz is 4800 bytes (6400 base64 characters); a generous cap on top.
MAX_MESSAGE_CHARS: Final = 256 * 1024
MAX_PAYLOAD_BYTES: Final = 96_000  # 2 s at 24 kHz
SAMPLE_RATES: Final = (8000, 16000, 24000)


def parse(raw: str) -> Message:
    """One Exotel text message; raises ProtocolError with a reason."""
    event, body = load_object(raw, MAX_MESSAGE_CHARS)
    if event == "media":
        media = obj(body, "media", "media")
        return Media(
            payload=audio_payload(media, "media", MAX_PAYLOAD_BYTES),
            chunk=count(media, "chunk", "media"),
            timestamp_ms=count(media, "timestamp", "media"),
        )
    if event == "start":
        return _start(obj(body, "start", "start"), body)
    if event == "connected":
        return Connected()
    if event == "stop":
        stop = body.get("stop")
        return Stop(optional_text(stop, "reason", max_chars=64) if isinstance(stop, dict) else None)
    if event == "dtmf":
        return Dtmf(dtmf_digit(obj(body, "dtmf", "dtmf"), "dtmf"))
    if event == "mark":
        return Mark(text(obj(body, "mark", "mark"), "name", "mark"))
    if event == "clear":
        return Clear()
    raise ProtocolError(
        "unknown_message",
        f"unknown event {event[:40]!r}; Exotel's are connected, start, media, dtmf, mark, clear, stop",
    )


def _start(start: dict[str, object], body: dict[str, object]) -> Start:
    media_format = obj(start, "media_format", "start")
    encoding_name = media_format.get("encoding")
    bits = count(media_format, "bit_rate", "start.media_format")
    if encoding_name in ("audio/x-raw", "raw", "slin") and bits in (None, 16):
        encoding = Encoding.LINEAR16
    elif encoding_name in ("audio/x-mulaw", "ulaw") and bits in (None, 8):
        encoding = Encoding.MULAW
    else:
        raise ProtocolError(
            "bad_format",
            f"start: media_format {str(encoding_name)[:40]!r} at {bits} bits is not 16-bit audio/x-raw",
        )
    rate = count(media_format, "sample_rate", "start.media_format", required=True)
    if encoding is Encoding.LINEAR16 and rate not in SAMPLE_RATES:
        raise ProtocolError(
            "bad_format", f"start: media_format.sample_rate {rate} is not 8000, 16000 or 24000"
        )
    try:
        fmt = AudioFormat.parse(encoding, rate)
    except AudioFormatError as exc:
        raise ProtocolError("bad_format", f"start: {exc}") from None
    stream_sid = optional_text(start, "stream_sid") or text(body, "stream_sid", "start")
    return Start(
        stream_sid=stream_sid,
        call_sid=text(start, "call_sid", "start"),
        fmt=fmt,
        account_sid=optional_text(start, "account_sid"),
        custom_parameters=parameters(start, "custom_parameters", "start"),
    )


# --- building (the platform's side) ----------------------------------------------------------


def connected_message() -> str:
    return json.dumps({"event": "connected"})


def start_message(
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    sample_rate: int,
    custom_parameters: Mapping[str, str],
    *,
    caller: str = "+910000000001",
    called: str = "+910000000002",
) -> str:
    """`start`: the stream's ids, the numbers, the applet's custom parameters, and 16-bit
    `audio/x-raw` at `sample_rate`, every number as a string."""
    return json.dumps(
        {
            "event": "start",
            "sequence_number": "1",
            "stream_sid": stream_sid,
            "start": {
                "stream_sid": stream_sid,
                "call_sid": call_sid,
                "account_sid": account_sid,
                "from": caller,
                "to": called,
                "custom_parameters": dict(custom_parameters),
                "media_format": {
                    "encoding": "audio/x-raw",
                    "sample_rate": str(sample_rate),
                    "bit_rate": "16",
                },
            },
        }
    )


def media_message(
    stream_sid: str, sequence_number: int, chunk: int, timestamp_ms: int, payload: bytes
) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequence_number": str(sequence_number),
            "stream_sid": stream_sid,
            "media": {
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode("ascii"),
            },
        }
    )


def stop_message(stream_sid: str, call_sid: str, account_sid: str, sequence_number: int) -> str:
    return json.dumps(
        {
            "event": "stop",
            "sequence_number": str(sequence_number),
            "stream_sid": stream_sid,
            "stop": {"call_sid": call_sid, "account_sid": account_sid, "reason": "callended"},
        }
    )
