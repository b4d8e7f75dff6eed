"""Plivo Audio Streaming messages (plivo.com docs, audio streaming: stream event protocol),
parsed into the shared telephony messages.

Plivo writes camelCase: `start` (`start.callId`, `streamId`, `accountId`, `tracks`,
`mediaFormat` `{"encoding": "audio/x-mulaw" | "audio/x-l16", "sampleRate"}`, and the
`<Stream>` element's `extraHeaders` as `extra_headers`, "key=value" pairs), `media`
(`media.track`, `chunk`, `timestamp` as wall-clock milliseconds, a base64 `payload`), `dtmf`,
and `playedStream` and `clearedAudio`, the answers to a bidirectional stream's own requests.
Plivo sends no `stop`: the end of the stream (the call's hangup, `streamTimeout`) closes the
socket. `extraHeaders` allows only letters and digits in names and values, so the call's id
there is `interactionId`, and its tenant `tenantId`.
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
    text,
    track_media,
)

MAX_MESSAGE_CHARS: Final = 128 * 1024
MAX_PAYLOAD_BYTES: Final = 64_000  # 2 s of 16 kHz L16
_ENCODINGS: Final = {"audio/x-mulaw": Encoding.MULAW, "audio/x-l16": Encoding.LINEAR16}
_SAMPLE_RATES: Final = {Encoding.MULAW: (8000,), Encoding.LINEAR16: (8000, 16000)}
# extraHeaders' names (letters and digits only) for the parameters a call reads.
_HEADER_NAMES: Final = {"interactionid": "interaction_id", "tenantid": "tenant_id"}
_MAX_HEADERS: Final = 32


def parse(raw: str) -> Message:
    """One Plivo text message; raises ProtocolError with a reason."""
    event, body = load_object(raw, MAX_MESSAGE_CHARS)
    if event == "media":
        return track_media(
            body, "Plivo", MAX_PAYLOAD_BYTES, lambda media: _wall_clock_ms(media.get("timestamp"))
        )
    if event == "start":
        return _start(obj(body, "start", "start"), body)
    if event == "dtmf":
        dtmf = obj(body, "dtmf", "dtmf")
        return Dtmf(dtmf_digit(dtmf, "dtmf"), optional_text(dtmf, "track", max_chars=32))
    if event == "playedStream":
        return Mark(optional_text(body, "name") or "checkpoint")
    if event == "clearedAudio":
        return Clear()
    if event == "stop":
        return Stop()
    raise ProtocolError(
        "unknown_message",
        f"unknown event {event[:40]!r}; Plivo's are start, media, dtmf, playedStream, clearedAudio",
    )


def _wall_clock_ms(value: object) -> int | None:
    """A media message's `timestamp`: milliseconds since 1970, as text or a number."""
    if value is None:
        return None
    text_value = str(value)
    if (
        isinstance(value, bool)
        or not text_value.isascii()
        or not text_value.isdigit()
        or len(text_value) > 15
    ):
        raise ProtocolError(
            "bad_message", f"media: `timestamp` must be milliseconds, not {text_value[:20]!r}"
        )
    return int(text_value)


def _start(start: dict[str, object], body: dict[str, object]) -> Start:
    tracks = start.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not tracks or any(t not in TRACKS for t in tracks):
        raise ProtocolError("bad_message", "start: `tracks` must be a list of inbound and/or outbound")
    media_format = obj(start, "mediaFormat", "start")
    name = media_format.get("encoding")
    encoding = _ENCODINGS.get(name.lower()) if isinstance(name, str) else None
    if encoding is None:
        raise ProtocolError(
            "bad_format",
            f"start: mediaFormat.encoding {str(name)[:40]!r} is not audio/x-mulaw or audio/x-l16",
        )
    rate = count(media_format, "sampleRate", "start.mediaFormat", required=True)
    if rate not in _SAMPLE_RATES[encoding]:
        raise ProtocolError("bad_format", f"start: {name} at {rate} Hz is not one of Plivo's formats")
    try:
        fmt = AudioFormat.parse(encoding, rate)
    except AudioFormatError as exc:
        raise ProtocolError("bad_format", f"start: {exc}") from None
    return Start(
        stream_sid=text(start, "streamId", "start"),
        call_sid=text(start, "callId", "start"),
        fmt=fmt,
        tracks=tuple(str(t) for t in dict.fromkeys(tracks)),
        account_sid=optional_text(start, "accountId"),
        custom_parameters=extra_headers(body.get("extra_headers")),
    )


def extra_headers(value: object) -> dict[str, str]:
    """The `<Stream>` element's `extraHeaders` ("a=1;b=2" or "a=1,b=2") as parameters, the
    names of the call's id and tenant mapped to the worker's."""
    if not isinstance(value, str) or not value:
        return {}
    pairs = [item for item in value.replace(",", ";").split(";") if item.strip()]
    if len(pairs) > _MAX_HEADERS:
        raise ProtocolError("bad_message", f"start: extra_headers has more than {_MAX_HEADERS} entries")
    out: dict[str, str] = {}
    for item in pairs:
        name, _, content = item.partition("=")
        name, content = name.strip()[:64], content.strip()[:512]
        if name:
            out[_HEADER_NAMES.get(name.lower(), name)] = content
    return out


# --- what the platform sends (for clients that play it) --------------------------------------


def start(
    call_id: str = "12345678-1234-1234-1234-123456789abc",
    tracks: tuple[str, ...] = ("inbound", "outbound"),
    encoding: str = "audio/x-mulaw",
    sample_rate: int = 8000,
    extra_headers: str = "",
) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": 1,
            "start": {
                "callId": call_id,
                "streamId": "87654321-4321-4321-4321-cba987654321",
                "accountId": "MAXXXXXXXXXXXXXXXXXX",
                "tracks": list(tracks),
                "mediaFormat": {"encoding": encoding, "sampleRate": sample_rate},
            },
            "extra_headers": extra_headers,
        }
    )


def media(track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": chunk + 1,
            "streamId": "87654321-4321-4321-4321-cba987654321",
            "media": {
                "track": track,
                "timestamp": str(timestamp_ms),
                "chunk": chunk,
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )
