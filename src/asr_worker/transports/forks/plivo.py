"""`GET /v1/plivo`: Plivo Audio Streaming (the `<Stream>` XML element).

    <Response>
      <Stream keepCallAlive="true" audioTrack="both" contentType="audio/x-l16;rate=16000"
              extraHeaders="interactionId=call1234">wss://HOST/v1/plivo?token=KEY</Stream>
    </Response>

On the shared telephony handle: `start`, then `media`; Plivo sends no `stop`, so the socket's
close (the call's hangup, the stream's timeout) ends the call at once with reason `end`. Both
tracks (`audioTrack="both"`) become one two-channel call, inbound (the caller) on channel 0;
Plivo's timestamps are wall-clock milliseconds, counted here from the stream's first media.
The call's id is `extraHeaders`' `interactionId`, the URL's `?interaction_id=`, else Plivo's
`callId`. Plivo documents no signature on the stream's upgrade: a key with `stream` scope admits
it (`?token=KEY` on the stream URL).
"""

from __future__ import annotations

from aiohttp import web

from ...http.auth import Route
from ...tenancy import Scope
from ..host import CallHost, bind
from ..telephony import Platform, media_stream
from . import plivo_messages

PLATFORM = Platform(
    name="plivo",
    parse=plivo_messages.parse,
    max_message_chars=plivo_messages.MAX_MESSAGE_CHARS,
    channel_of_track={"inbound": 0, "outbound": 1},
    end_reason="end",
    close_ends_call=True,
    epoch_timestamps=True,
)


def routes(host: CallHost) -> list[Route]:
    return [Route("GET", "/v1/plivo", bind(host, plivo_socket), Scope.STREAM, long_lived=True)]


async def plivo_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    return await media_stream(host, request, PLATFORM)
