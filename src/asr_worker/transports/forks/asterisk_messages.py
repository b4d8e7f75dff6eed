"""Asterisk's WebSocket channel driver (`chan_websocket`, Asterisk 20.18/22.8/23.2 and later)
as data (Asterisk's `channels/chan_websocket.c` and its documentation).

`Dial(WebSocket/<connection>/c(slin16))` makes Asterisk open a WebSocket to the URI of a
`websocket_client.conf` connection (offering the subprotocol its `protocols` names, `media`
here), with HTTP Basic from its `username`/`password`, and the dial string's `v(...)` added to
the URI's query. Asterisk then sends one control message, in plain text (the default):

    MEDIA_START connection_id:<id> channel:<name> channel_id:<uniqueid> format:slin16
        optimal_frame_size:640 ptime:20

(one line); or, with `control_message_format = json` (or the dial option `f(json)`), JSON with
the same fields and the channel's variables (`channel_variables`); then the channel's audio in binary
frames, in that format (`ulaw`, `alaw`, `slin` at 8 kHz, `slin12` ... `slin48`), mono. Later
control messages are `DTMF_END` (with `digit`), flow-control and status notices (`MEDIA_XOFF`,
`MEDIA_XON`, `QUEUE_DRAINED`, `STATUS`, `MEDIA_BUFFERING_COMPLETED`, `MEDIA_MARK_PROCESSED`)
and `ERROR`. The channel's hangup closes the socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from ...core.audio import AudioFormat, Encoding
from ...errors import ProtocolError
from ..telephony_messages import DTMF_KEYS
from .messages import ForkControl, ForkStart, Keypress, Notice, call_options, first_text, json_object

SUBPROTOCOLS: Final = ("media",)
FORMATS: Final = {
    "ulaw": AudioFormat(Encoding.MULAW, 8000, 1),
    "alaw": AudioFormat(Encoding.ALAW, 8000, 1),
    "slin": AudioFormat(Encoding.LINEAR16, 8000, 1),
    "slin12": AudioFormat(Encoding.LINEAR16, 12000, 1),
    "slin16": AudioFormat(Encoding.LINEAR16, 16000, 1),
    "slin24": AudioFormat(Encoding.LINEAR16, 24000, 1),
    "slin32": AudioFormat(Encoding.LINEAR16, 32000, 1),
    "slin44": AudioFormat(Encoding.LINEAR16, 44100, 1),
    "slin48": AudioFormat(Encoding.LINEAR16, 48000, 1),
}
_NOTICES: Final = frozenset(
    {
        "MEDIA_XOFF",
        "MEDIA_XON",
        "QUEUE_DRAINED",
        "STATUS",
        "MEDIA_BUFFERING_COMPLETED",
        "MEDIA_MARK_PROCESSED",
    }
)
_MAX_CONTROL_CHARS: Final = 64 * 1024


def control_message(text: str) -> tuple[str, dict[str, object]]:
    """A control message in either of Asterisk's formats: its event and its fields."""
    if len(text) > _MAX_CONTROL_CHARS:
        raise ProtocolError("too_large", f"a control message of {len(text)} characters is over the limit")
    if text.lstrip().startswith("{"):
        fields = json_object(text, "a control message", _MAX_CONTROL_CHARS)
        return first_text(fields, "event") or "", fields
    event, _, rest = text.strip().partition(" ")
    named: dict[str, object] = {}
    for token in rest.split():
        name, sep, value = token.partition(":")
        if not sep:
            raise ProtocolError("bad_message", f"{event[:40]}: {token[:40]!r} is not name:value")
        named[name] = value
    return event, named


def parse_start(metadata: str | None, query: Mapping[str, str]) -> ForkStart:
    """The call from `MEDIA_START` and the connection URI's query (`v(interaction_id=...)`)."""
    if metadata is None:
        raise ProtocolError("bad_message", "the first message must be MEDIA_START; audio came first")
    event, fields = control_message(metadata)
    if event != "MEDIA_START":
        raise ProtocolError("bad_message", f"the first message must be MEDIA_START, not {event[:40]!r}")
    name = (first_text(fields, "format") or "").lower()
    fmt = FORMATS.get(name)
    if fmt is None:
        raise ProtocolError(
            "bad_format",
            f"MEDIA_START: format {name[:20]!r} is not one the worker takes ({', '.join(FORMATS)}); "
            "dial with c(slin16), for one",
        )
    variables = fields.get("channel_variables")
    channel_variables: Mapping[str, object] = variables if isinstance(variables, dict) else {}
    channel_id = first_text(fields, "channel_id")
    interaction_id = (
        query.get("interaction_id")
        or first_text(channel_variables, "interaction_id", "INTERACTION_ID")
        or channel_id
    )
    if not interaction_id:
        raise ProtocolError("bad_message", "MEDIA_START names no channel_id, and the URI no interaction_id")
    return ForkStart(
        interaction_id=interaction_id,
        fmt=fmt,
        tenant_id=query.get("tenant_id"),
        options=call_options(channel_variables, query, "channel_variables"),
        call_ref=first_text(fields, "channel"),
    )


def parse_control(text: str) -> ForkControl:
    event, fields = control_message(text)
    if event == "DTMF_END":
        digit = (first_text(fields, "digit", max_chars=4) or "").upper()
        if len(digit) != 1 or digit not in DTMF_KEYS:
            raise ProtocolError("bad_message", f"DTMF_END: digit {digit!r} is not a keypad's")
        return Keypress(digit)
    if event in _NOTICES:
        return Notice(event.lower())
    if event == "ERROR":
        raise ProtocolError(
            "platform_error", f"Asterisk reported: {first_text(fields, 'error_text') or 'an error'}"
        )
    if event == "MEDIA_START":
        raise ProtocolError("bad_message", "a second MEDIA_START on one socket; ignored")
    raise ProtocolError("unknown_message", f"unknown control message {event[:40]!r}")


def media_start(
    channel_id: str, fmt: str = "slin16", *, as_json: bool = False, variables: dict[str, str] | None = None
) -> str:
    """MEDIA_START as Asterisk writes it (for clients that play Asterisk)."""
    known = FORMATS.get(fmt)
    frame = known.bytes_for(0.02) if known is not None else 640  # 20 ms, Asterisk's ptime
    fields: dict[str, object] = {
        "connection_id": "media_connection1",
        "channel": "PJSIP/1000-00000001",
        "channel_id": channel_id,
        "format": fmt,
        "optimal_frame_size": frame,
        "ptime": 20,
    }
    if as_json:
        return json.dumps(
            {"event": "MEDIA_START", **fields, "channel_variables": variables or {}}, separators=(",", ":")
        )
    return "MEDIA_START " + " ".join(f"{name}:{value}" for name, value in fields.items())
