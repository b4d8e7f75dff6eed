"""Vonage Voice API WebSockets as data (developer.vonage.com, Voice API guides: WebSockets).

An NCCO `connect` action with a `websocket` endpoint makes Vonage open a WebSocket to its
`uri` and send one text frame first:

    {"event": "websocket:connected", "content-type": "audio/l16;rate=16000", <headers>...}

(the endpoint's `headers` object, its fields at the top level), then the call's audio as
16-bit little-endian PCM in binary frames of 20 ms, mono (a mix of the conversation, Vonage
sends no leg apart), at 8, 16 or 24 kHz. Later text frames are events: `websocket:dtmf`
(`{"event": "websocket:dtmf", "digit": "5", "duration": 260}`), `websocket:cleared`,
`websocket:notify`. The call's hangup closes the socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from ...errors import ProtocolError
from .messages import (
    BOTH_MIXED,
    ForkControl,
    ForkStart,
    Notice,
    call_options,
    first_text,
    json_object,
    keypress,
    linear16,
    sample_rate,
)

SAMPLE_RATES: Final = (8000, 16000, 24000)
CONNECTED: Final = "websocket:connected"
_NOTICES: Final = frozenset({"websocket:cleared", "websocket:notify"})


def parse_start(metadata: str | None, query: Mapping[str, str]) -> ForkStart:
    """The call from `websocket:connected` and the endpoint URI's query. Vonage sends no call
    id of its own on the socket: the URI (`?interaction_id=`, with the answer webhook's call
    `uuid`) or an `interaction_id` header names the call."""
    if metadata is None:
        raise ProtocolError("bad_message", f"the first message must be {CONNECTED}; audio came first")
    fields = json_object(metadata, CONNECTED)
    event = first_text(fields, "event") or ""
    if event != CONNECTED:
        raise ProtocolError("bad_message", f"the first message must be {CONNECTED}, not {event[:40]!r}")
    content_type = first_text(fields, "content-type") or ""
    media, _, parameters = content_type.replace(" ", "").lower().partition(";")
    rate_text = parameters.removeprefix("rate=") if parameters.startswith("rate=") else ""
    if media != "audio/l16" or not rate_text:
        raise ProtocolError(
            "bad_format", f"{CONNECTED}: content-type {content_type[:60]!r} is not audio/l16;rate=N"
        )
    rate = sample_rate(rate_text, "content-type", SAMPLE_RATES)
    interaction_id = first_text(fields, "interaction_id") or query.get("interaction_id")
    if not interaction_id:
        raise ProtocolError(
            "bad_message",
            "name the call: ?interaction_id= on the NCCO's websocket uri (the answer webhook's uuid), "
            "or an interaction_id header",
        )
    return ForkStart(
        interaction_id=interaction_id,
        fmt=linear16(rate, 1, "the socket's audio"),
        tenant_id=first_text(fields, "tenant_id") or query.get("tenant_id"),
        options=call_options(fields, query, "headers"),
        call_ref=first_text(fields, "uuid", "conversation_uuid"),
        legs=BOTH_MIXED,
    )


def parse_control(text: str) -> ForkControl:
    fields = json_object(text, "an event")
    event = first_text(fields, "event") or ""
    if event == "websocket:dtmf":
        return keypress(fields, event, "digit")
    if event in _NOTICES:
        return Notice(event.removeprefix("websocket:"))
    if event == CONNECTED:
        raise ProtocolError("bad_message", f"a second {CONNECTED} on one socket; ignored")
    raise ProtocolError(
        "unknown_message",
        f"unknown event {event[:40]!r}; Vonage's are websocket:dtmf, websocket:cleared, websocket:notify",
    )


def connected(rate: int, headers: Mapping[str, object] | None = None) -> str:
    """The first frame as Vonage sends it (for clients that play Vonage)."""
    return json.dumps({"event": CONNECTED, "content-type": f"audio/l16;rate={rate}", **(headers or {})})
