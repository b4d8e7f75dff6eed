"""`GET /v1/telnyx`: Telnyx Media Streaming (Call Control's `stream_url`, TeXML's `<Stream>`).

    POST /v2/calls/{call_control_id}/actions/streaming_start
    {"stream_url": "wss://HOST/v1/telnyx?track=both_tracks&token=KEY",
     "stream_track": "both_tracks", "stream_codec": "PCMU"}

On the shared telephony handle: `start`, then `media` until `stop`, which ends the call at once
(reason `end`). Both tracks become one two-channel call, inbound (the caller) on channel 0;
Telnyx's `start` does not list the tracks, so the stream URL says them with `?track=`, as
`stream_track` does. Media that arrives out of order is put back in order by its `chunk`
(holding at most three frames a track). The call's id is the custom parameter or the URL's
`interaction_id`, else Telnyx's `call_control_id`. Telnyx documents no signature on the stream's
upgrade: a key with `stream` scope admits it (`?token=KEY` on the stream URL, or a bearer header).
"""

from __future__ import annotations

from aiohttp import web

from ...http.auth import Route
from ...tenancy import Scope
from ..host import CallHost, bind
from ..telephony import Platform, media_stream
from . import telnyx_messages

PLATFORM = Platform(
    name="telnyx",
    parse=telnyx_messages.parse,
    max_message_chars=telnyx_messages.MAX_MESSAGE_CHARS,
    channel_of_track={"inbound": 0, "outbound": 1},
    end_reason="end",
    reorder_frames=3,
    url_tracks=telnyx_messages.URL_TRACKS,
)


def routes(host: CallHost) -> list[Route]:
    return [Route("GET", "/v1/telnyx", bind(host, telnyx_socket), Scope.STREAM, long_lived=True)]


async def telnyx_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    return await media_stream(host, request, PLATFORM)
