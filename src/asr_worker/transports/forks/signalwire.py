"""`GET /v1/signalwire`: SignalWire's cXML `<Stream>` (Twilio-compatible Media Streams).

    <Response><Start>
      <Stream url="wss://HOST/v1/signalwire" track="both_tracks" codec="L16@16000h"
              authBearerToken="KEY">
        <Parameter name="interaction_id" value="call-1234"/>
      </Stream>
    </Start></Response>

On the shared telephony handle: `start`, then `media` until `stop`, which ends the call at once
(reason `end`). Both tracks become one two-channel call, inbound (the caller) on channel 0.
SignalWire sends `authBearerToken` as the upgrade's `Authorization: Bearer` header: a worker key
with `stream` scope there (or `?token=KEY` on the URL) admits the stream. The call's id is the
`interaction_id` parameter or the URL's, else SignalWire's `callSid`.
"""

from __future__ import annotations

from aiohttp import web

from ...http.auth import Route
from ...tenancy import Scope
from ..host import CallHost, bind
from ..telephony import Platform, media_stream
from . import signalwire_messages

PLATFORM = Platform(
    name="signalwire",
    parse=signalwire_messages.parse,
    max_message_chars=signalwire_messages.MAX_MESSAGE_CHARS,
    channel_of_track={"inbound": 0, "outbound": 1},
    end_reason="end",
)


def routes(host: CallHost) -> list[Route]:
    return [Route("GET", "/v1/signalwire", bind(host, signalwire_socket), Scope.STREAM, long_lived=True)]


async def signalwire_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    return await media_stream(host, request, PLATFORM)
