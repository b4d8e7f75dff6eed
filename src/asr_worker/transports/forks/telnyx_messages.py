"""Telnyx Media Streaming messages (developers.telnyx.com, media streaming over WebSockets),
parsed into the shared telephony messages.

Telnyx writes snake_case and sends numbers inside `media` as strings: `connected`, `start`
(`start.call_control_id`, `start.media_format` `{"encoding", "sample_rate", "channels"}`),
`media` (`media.track` inbound or outbound, `chunk`, `timestamp` in ms from the stream's start,
a base64 RTP payload), `dtmf`, `mark`, `error` (`payload.code`, `title`, `detail`) and `stop`.
The codec is the call's or `stream_codec`'s: PCMU and PCMA at 8 kHz and L16 (at 16 kHz as a
rule) are taken; L16 arrives little-endian, not in RTP's network order. Media frames are not
guaranteed to arrive in order: `chunk` numbers them per track. `start` names no tracks: the
stream URL's `?track=` does, as `stream_track` asked for them (`inbound_track` by default).
"""

from __future__ import annotations

import base64
import json
from typing import Final

from ...core.audio import AudioFormat, Encoding
from ...errors import AudioFormatError, ProtocolError
from ..telephony_messages import (
    TRACKS,
    Clear,
    Connected,
    Dtmf,
    Mark,
    Message,
    Start,
    Stop,
    count,
    dtmf_digit,
    load_object,
    obj,
    optional_text,
    parameters,
    text,
    track_media,
)

# A 20 ms message of 16 kHz L16 is under 1 KB of base64; a `start` with custom parameters a few KB.
MAX_MESSAGE_CHARS: Final = 128 * 1024
MAX_PAYLOAD_BYTES: Final = 64_000  # 2 s of 16 kHz L16
# `?track=` on the stream URL, as Telnyx's `stream_track` names them.
URL_TRACKS: Final = {
    "inbound_track": ("inbound",),
    "outbound_track": ("outbound",),
    "both_tracks": ("inbound", "outbound"),
}
_ENCODINGS: Final = {
    "pcmu": Encoding.MULAW,
    "audio/x-mulaw": Encoding.MULAW,
    "pcma": Encoding.ALAW,
    "audio/x-alaw": Encoding.ALAW,
    "l16": Encoding.LINEAR16,
    "audio/x-l16": Encoding.LINEAR16,
}


def parse(raw: str) -> Message:
    """One Telnyx text message; raises ProtocolError with a reason."""
    event, body = load_object(raw, MAX_MESSAGE_CHARS)
    if event == "media":
        return track_media(body, "Telnyx", MAX_PAYLOAD_BYTES)
    if event == "start":
        return _start(obj(body, "start", "start"), body)
    if event == "connected":
        return Connected(version=optional_text(body, "version", max_chars=32))
    if event == "stop":
        return Stop()
    if event == "dtmf":
        return Dtmf(dtmf_digit(obj(body, "dtmf", "dtmf"), "dtmf"))
    if event == "mark":
        return Mark(text(obj(body, "mark", "mark"), "name", "mark"))
    if event == "clear":
        return Clear()
    if event == "error":
        error = body.get("payload")
        fields = error if isinstance(error, dict) else {}
        code = str(fields.get("code", "?"))[:12]
        title = optional_text(fields, "title", max_chars=60) or "error"
        detail = optional_text(fields, "detail", max_chars=120) or ""
        raise ProtocolError("platform_error", f"Telnyx reported {code} {title}: {detail}".rstrip(": "))
    raise ProtocolError(
        "unknown_message",
        f"unknown event {event[:40]!r}; Telnyx's are connected, start, media, dtmf, mark, error, stop",
    )


def _start(start: dict[str, object], body: dict[str, object]) -> Start:
    media_format = obj(start, "media_format", "start")
    name = media_format.get("encoding")
    encoding = _ENCODINGS.get(name.lower()) if isinstance(name, str) else None
    if encoding is None:
        raise ProtocolError(
            "bad_format",
            f"start: media_format.encoding {str(name)[:40]!r} is not PCMU, PCMA or L16 "
            "(ask Telnyx for one with stream_codec)",
        )
    channels = count(media_format, "channels", "start.media_format") or 1
    if channels != 1:
        raise ProtocolError("bad_format", f"start: media_format.channels must be 1 per track, not {channels}")
    rate = count(media_format, "sample_rate", "start.media_format") or 8000
    if encoding is not Encoding.LINEAR16 and rate != 8000:
        raise ProtocolError("bad_format", f"start: G.711 comes at 8000 Hz, not {rate}")
    try:
        fmt = AudioFormat.parse(encoding, rate)
    except AudioFormatError as exc:
        raise ProtocolError("bad_format", f"start: {exc}") from None
    tracks = start.get("tracks")
    return Start(
        stream_sid=optional_text(body, "stream_id") or optional_text(start, "stream_id") or "unknown",
        call_sid=text(start, "call_control_id", "start"),
        fmt=fmt,
        tracks=tuple(str(t) for t in tracks if t in TRACKS) if isinstance(tracks, list) else (),
        account_sid=optional_text(start, "user_id"),
        custom_parameters=_custom_parameters(start),
    )


def _custom_parameters(start: dict[str, object]) -> dict[str, str]:
    """`custom_parameters` as an object, or as `streaming_start`'s list of {name, value}."""
    value = start.get("custom_parameters")
    if isinstance(value, list):
        pairs = {
            str(item.get("name")): item.get("value")
            for item in value
            if isinstance(item, dict) and isinstance(item.get("name"), str)
        }
        return parameters({"custom_parameters": pairs}, "custom_parameters", "start")
    return parameters(start, "custom_parameters", "start")


# --- what the platform sends (for clients that play it) --------------------------------------

STREAM_ID: Final = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"


def connected() -> str:
    return json.dumps({"event": "connected", "version": "1.0.0"})


def start(
    call_control_id: str = "v3:call-control-1",
    encoding: str = "PCMU",
    sample_rate: int = 8000,
    params: dict[str, str] | None = None,
) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequence_number": "1",
            "start": {
                "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
                "call_control_id": call_control_id,
                "media_format": {"encoding": encoding, "sample_rate": sample_rate, "channels": 1},
                **({"custom_parameters": params} if params else {}),
            },
            "stream_id": STREAM_ID,
        }
    )


def media(track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequence_number": str(chunk + 2),
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode(),
            },
            "stream_id": STREAM_ID,
        }
    )


def stop(call_control_id: str = "v3:call-control-1", sequence_number: int = 2) -> str:
    """`stop`, as Telnyx ends a stream (`streaming_stop`, the call's hangup)."""
    return json.dumps(
        {
            "event": "stop",
            "sequence_number": str(sequence_number),
            "stop": {"user_id": "3e6f995f-85f7-4705-9741-53b116d28237", "call_control_id": call_control_id},
            "stream_id": STREAM_ID,
        }
    )
