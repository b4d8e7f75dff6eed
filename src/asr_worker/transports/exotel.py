"""`GET /v1/exotel`: Exotel AgentStream via the Stream and Voicebot applets.

Set the applet's URL to `wss://HOST/v1/exotel` (add `?sample-rate=16000` for wideband, and
`interaction_id=...` as a custom parameter to choose the call's id, else the call_sid).
The audio is one track of 16-bit PCM: channel 0.
"""

from __future__ import annotations

from aiohttp import web

from ..http.auth import Route
from ..tenancy import Scope
from . import exotel_messages
from .host import CallHost, bind
from .telephony import Platform, media_stream

PLATFORM = Platform(
    name="exotel",
    parse=exotel_messages.parse,
    max_message_chars=exotel_messages.MAX_MESSAGE_CHARS,
    channel_of_track={"inbound": 0},
)


def routes(host: CallHost) -> list[Route]:
    """Exotel dials `wss://KEY:TOKEN@host/v1/exotel`: HTTP Basic, the worker's key as the password."""
    return [Route("GET", "/v1/exotel", bind(host, exotel_socket), Scope.STREAM, long_lived=True)]


async def exotel_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    return await media_stream(host, request, PLATFORM)
