"""jambonz's `listen` verb as data (docs.jambonz.org, verbs: listen).

    {"verb": "listen", "url": "wss://HOST/v1/jambonz", "sampleRate": 16000, "mixType": "stereo"}

jambonz opens the socket with the subprotocol `audio.jambonz.org` and sends one text frame:
JSON with the call's attributes (`callSid`, `direction`, `from`, `to`, `accountSid`, ...),
`sampleRate`, `mixType` and the verb's own `metadata` merged in; then 16-bit little-endian
PCM in binary frames: `mono` (the caller), `mixed`, or `stereo` (both calls of a bridge, one
channel each: the caller on channel 0). With `passDtmf` a key pressed comes as a text frame
`{"event": "dtmf", "dtmf": "5", "duration": ...}`. `listen`'s end (the verb killed, the call
hung up) closes the socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from ...errors import ProtocolError
from .messages import (
    ForkControl,
    ForkStart,
    call_options,
    first_text,
    json_object,
    keypress,
    linear16,
    mix_legs,
    sample_rate,
)

SUBPROTOCOLS: Final = ("audio.jambonz.org",)
# jambonz's choices are 8000, 16000, 24000, 48000 and 64000; 64 kHz is over the worker's limit.
SAMPLE_RATES: Final = (8000, 16000, 24000, 48000)


def parse_start(metadata: str | None, query: Mapping[str, str]) -> ForkStart:
    """The call from jambonz's metadata frame and the URL's query: the call's id is the verb's
    own `interaction_id` (in its `metadata`), else the URL's `?interaction_id=`, else `callSid`."""
    if metadata is None:
        raise ProtocolError(
            "bad_message",
            "the first message must be jambonz's metadata text frame (JSON with callSid, sampleRate, "
            "mixType); audio came first",
        )
    fields = json_object(metadata, "the metadata frame")
    call_sid = first_text(fields, "callSid")
    interaction_id = first_text(fields, "interaction_id") or query.get("interaction_id") or call_sid
    if not interaction_id:
        raise ProtocolError(
            "bad_message", "the metadata frame has no callSid: is this jambonz's listen verb?"
        )
    legs = mix_legs(first_text(fields, "mixType") or "mono", "mixType")
    rate = sample_rate(first_text(fields, "sampleRate") or "8000", "sampleRate", SAMPLE_RATES)
    return ForkStart(
        interaction_id=interaction_id,
        fmt=linear16(rate, len(legs), "listen"),
        tenant_id=first_text(fields, "tenant_id") or query.get("tenant_id"),
        options=call_options(fields, query, "metadata"),
        call_ref=call_sid,
        legs=legs,
    )


def parse_control(text: str) -> ForkControl:
    """A text frame after the metadata: `passDtmf`'s digits; anything else is not jambonz's."""
    fields = json_object(text, "a text frame")
    kind = first_text(fields, "event", "type") or ""
    if kind == "dtmf":
        return keypress(fields, "dtmf", "dtmf", "digit")
    raise ProtocolError(
        "unknown_message", f"unknown message {kind[:40]!r}; after its metadata jambonz sends only dtmf"
    )


# --- what jambonz sends (for clients that play it) ---------------------------------------------


def listen_metadata(
    call_sid: str, sample_rate: int, mix_type: str, metadata: Mapping[str, object] | None = None
) -> str:
    """`listen`'s first frame: the call's attributes (those of jambonz's webhooks), the verb's
    `sampleRate` and `mixType`, and its own `metadata` merged in."""
    return json.dumps(
        {
            "sampleRate": sample_rate,
            "mixType": mix_type,
            "callSid": call_sid,
            "direction": "inbound",
            "from": "15083084809",
            "to": "15083728299",
            "callStatus": "in-progress",
            "accountSid": "9351f46a-678c-43f5-b8a6-d4eb58d131af",
            "applicationSid": "0b3a4c8e-97b5-41c5-8d0e-46b1ec7b6e42",
            **(metadata or {}),
        }
    )
