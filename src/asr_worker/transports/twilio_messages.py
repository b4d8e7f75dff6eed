"""Twilio Media Streams messages (twilio.com/docs/voice/media-streams/websocket-messages),
parsed into the shared telephony messages.

Twilio writes camelCase, sends numbers inside `media` as strings, and always streams
`audio/x-mulaw` at 8000 Hz, one channel per track, 20 ms a message. `tracks` in `start` is
`["inbound"]`, `["outbound"]` or both; `media.track` says which one a message belongs to.

The builders at the end write the same messages as Twilio sends them, for the side that plays
a call into the worker (`asr-worker stream --protocol twilio`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Final

from ..core.audio import AudioFormat, Encoding
from ..errors import AudioFormatError, ProtocolError
from .telephony_messages import (
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

# A 20 ms message is about 400 characters; a `start` with custom parameters a few KB.
MAX_MESSAGE_CHARS: Final = 64 * 1024
# 2 s of 8 kHz mu-law in one message is already far from Twilio's 20 ms; more is refused.
MAX_PAYLOAD_BYTES: Final = 16_000
_ENCODINGS: Final = {"audio/x-mulaw": Encoding.MULAW, "audio/x-alaw": Encoding.ALAW}


def parse(raw: str) -> Message:
    """One Twilio text message; raises ProtocolError with a reason."""
    event, body = load_object(raw, MAX_MESSAGE_CHARS)
    if event == "media":
        return track_media(body, "Twilio", MAX_PAYLOAD_BYTES)
    if event == "start":
        return _start(obj(body, "start", "start"))
    if event == "connected":
        return Connected(
            optional_text(body, "protocol", max_chars=64), optional_text(body, "version", max_chars=32)
        )
    if event == "stop":
        stop = body.get("stop")
        return Stop(optional_text(stop, "reason", max_chars=64) if isinstance(stop, dict) else None)
    if event == "dtmf":
        dtmf = obj(body, "dtmf", "dtmf")
        return Dtmf(dtmf_digit(dtmf, "dtmf"), optional_text(dtmf, "track", max_chars=32))
    if event == "mark":
        return Mark(text(obj(body, "mark", "mark"), "name", "mark"))
    if event == "clear":
        return Clear()
    raise ProtocolError(
        "unknown_message",
        f"unknown event {event[:40]!r}; Twilio's are connected, start, media, dtmf, mark, stop",
    )


def _start(start: dict[str, object]) -> Start:
    tracks_value = start.get("tracks", ["inbound"])
    if (
        not isinstance(tracks_value, list)
        or not tracks_value
        or any(t not in TRACKS for t in tracks_value)
        or len(set(tracks_value)) != len(tracks_value)
    ):
        raise ProtocolError("bad_message", "start: `tracks` must be a list of inbound and/or outbound")
    media_format = obj(start, "mediaFormat", "start")
    encoding_name = media_format.get("encoding")
    encoding = _ENCODINGS.get(encoding_name) if isinstance(encoding_name, str) else None
    if encoding is None:
        raise ProtocolError(
            "bad_format", f"start: mediaFormat.encoding {str(encoding_name)[:40]!r} is not audio/x-mulaw"
        )
    channels = count(media_format, "channels", "start.mediaFormat") or 1
    if channels != 1:
        raise ProtocolError("bad_format", f"start: mediaFormat.channels must be 1 per track, not {channels}")
    try:
        fmt = AudioFormat.parse(
            encoding, count(media_format, "sampleRate", "start.mediaFormat", required=True)
        )
    except AudioFormatError as exc:
        raise ProtocolError("bad_format", f"start: {exc}") from None
    return Start(
        stream_sid=text(start, "streamSid", "start"),
        call_sid=text(start, "callSid", "start"),
        fmt=fmt,
        tracks=tuple(str(t) for t in tracks_value),
        account_sid=optional_text(start, "accountSid"),
        custom_parameters=parameters(start, "customParameters", "start"),
    )


# --- building (the platform's side) ----------------------------------------------------------


def connected_message() -> str:
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_message(
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    tracks: Sequence[str],
    custom_parameters: Mapping[str, str],
    sequence_number: int = 1,
) -> str:
    """`start`: the stream's ids, its tracks, `audio/x-mulaw` at 8000 Hz (one channel per track),
    and the `<Parameter>`s of its TwiML."""
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": str(sequence_number),
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": list(tracks),
                "customParameters": dict(custom_parameters),
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": stream_sid,
        }
    )


def media_message(
    stream_sid: str, sequence_number: int, track: str, chunk: int, timestamp_ms: int, payload: bytes
) -> str:
    """One `media` message: a track's audio, its chunk number (from 1, per track) and the
    milliseconds since the stream began, as strings."""
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(sequence_number),
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode("ascii"),
            },
            "streamSid": stream_sid,
        }
    )


def stop_message(stream_sid: str, call_sid: str, account_sid: str, sequence_number: int) -> str:
    return json.dumps(
        {
            "event": "stop",
            "sequenceNumber": str(sequence_number),
            "stop": {"accountSid": account_sid, "callSid": call_sid},
            "streamSid": stream_sid,
        }
    )
