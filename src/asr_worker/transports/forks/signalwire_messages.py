"""SignalWire's cXML `<Stream>` messages (developer.signalwire.com, compatibility API, cXML
voice: Stream), parsed into the shared telephony messages.

SignalWire is Twilio-compatible: `connected`, `start` (`streamSid`, `callSid`, `accountSid`,
`tracks`, `customParameters`, `mediaFormat`), `media` (`track`, `chunk`, `timestamp` in ms from
the stream's start, a base64 `payload`), `dtmf`, `mark`, `clear` and `stop`, in camelCase with
numbers as strings. Its documentation shows each message inside an envelope (`timestamp`,
`direction`, `eventType` and the message itself as `rawEvent`); both forms are read. Besides
mu-law at 8 kHz, `codec="L16@16000h"` or `"L16@24000h"` streams 16-bit little-endian PCM
(`audio/x-L16`).
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
    obj,
    optional_text,
    parameters,
    text,
    track_media,
)
from .messages import json_object

MAX_MESSAGE_CHARS: Final = 128 * 1024
MAX_PAYLOAD_BYTES: Final = 96_000  # 2 s of 24 kHz L16
_ENCODINGS: Final = {
    "audio/x-mulaw": Encoding.MULAW,
    "audio/x-alaw": Encoding.ALAW,
    "audio/x-l16": Encoding.LINEAR16,
}


def parse(raw: str) -> Message:
    """One SignalWire text message, bare or in its documented envelope; raises ProtocolError."""
    body = json_object(raw, "a message", MAX_MESSAGE_CHARS)
    inner = body.get("rawEvent")
    if isinstance(inner, dict):
        body = inner
    event = body.get("event")
    if not isinstance(event, str) or not event:
        raise ProtocolError("bad_message", "a message must have a string `event`")
    if event == "media":
        return track_media(body, "SignalWire", MAX_PAYLOAD_BYTES)
    if event == "start":
        return _start(obj(body, "start", "start"))
    if event == "connected":
        return Connected(
            optional_text(body, "protocol", max_chars=64), optional_text(body, "version", max_chars=32)
        )
    if event == "stop":
        return Stop()
    if event == "dtmf":
        dtmf = obj(body, "dtmf", "dtmf")
        return Dtmf(dtmf_digit(dtmf, "dtmf"), optional_text(dtmf, "track", max_chars=32))
    if event == "mark":
        return Mark(text(obj(body, "mark", "mark"), "name", "mark"))
    if event == "clear":
        return Clear()
    raise ProtocolError(
        "unknown_message",
        f"unknown event {event[:40]!r}; SignalWire's are connected, start, media, dtmf, mark, clear, stop",
    )


def _start(start: dict[str, object]) -> Start:
    tracks = start.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not tracks or any(t not in TRACKS for t in tracks):
        raise ProtocolError("bad_message", "start: `tracks` must be a list of inbound and/or outbound")
    media_format = obj(start, "mediaFormat", "start")
    name = media_format.get("encoding")
    encoding = _ENCODINGS.get(name.lower()) if isinstance(name, str) else None
    if encoding is None:
        raise ProtocolError(
            "bad_format",
            f"start: mediaFormat.encoding {str(name)[:40]!r} is not audio/x-mulaw or audio/x-L16",
        )
    # `channels` counts the stream's tracks; each `media` message carries one of them.
    channels = count(media_format, "channels", "start.mediaFormat") or 1
    if channels not in (1, 2):
        raise ProtocolError("bad_format", f"start: mediaFormat.channels must be 1 or 2, not {channels}")
    rate = count(media_format, "sampleRate", "start.mediaFormat", required=True)
    if encoding is not Encoding.LINEAR16 and rate != 8000:
        raise ProtocolError("bad_format", f"start: G.711 comes at 8000 Hz, not {rate}")
    try:
        fmt = AudioFormat.parse(encoding, rate)
    except AudioFormatError as exc:
        raise ProtocolError("bad_format", f"start: {exc}") from None
    return Start(
        stream_sid=text(start, "streamSid", "start"),
        call_sid=text(start, "callSid", "start"),
        fmt=fmt,
        tracks=tuple(str(t) for t in dict.fromkeys(tracks)),
        account_sid=optional_text(start, "accountSid"),
        custom_parameters=parameters(start, "customParameters", "start"),
    )


# --- what the platform sends (for clients that play it) --------------------------------------


def connected() -> str:
    return json.dumps({"event": "connected", "protocol": "Call", "version": "0.2.0"})


def start(
    call_sid: str = "76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad",
    tracks: tuple[str, ...] = ("inbound", "outbound"),
    encoding: str = "audio/x-mulaw",
    sample_rate: int = 8000,
    params: dict[str, str] | None = None,
) -> str:
    """A bare `start`, as a Twilio-compatible stream sends it (no documentation envelope)."""
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "streamSid": "7d56cc11-536d-4a45-b4fb-ed3d55be843b",
                "accountSid": "b08dacad-2f6c-4de1-93d6-cc732e0c69c5",
                "callSid": call_sid,
                "tracks": list(tracks),
                "customParameters": params or {},
                "mediaFormat": {"encoding": encoding, "sampleRate": sample_rate, "channels": len(tracks)},
            },
        }
    )


def media(track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(chunk + 1),
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


def stop(sequence_number: int = 2) -> str:
    """`stop`, as SignalWire ends a stream (`<Stop><Stream>`, the call's hangup)."""
    return json.dumps({"event": "stop", "sequenceNumber": str(sequence_number)})
