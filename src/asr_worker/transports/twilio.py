"""`GET /v1/twilio`: Twilio Media Streams.

Point a `<Stream url="wss://HOST/v1/twilio">` at it, with `track="both_tracks"` for both sides
of the call and `<Parameter name="interaction_id" value="..."/>` to choose the call's id
(else the CallSid). Inbound audio is channel 0 (customer), outbound channel 1 (agent): both
tracks become ONE two-channel mu-law session, interleaved by `interleave.TrackInterleaver`,
so the call keeps one provider connection (Deepgram `multichannel=true`).
"""

from __future__ import annotations

from aiohttp import web

from . import twilio_messages
from .host import CallHost, bind
from .telephony import Platform, media_stream

PLATFORM = Platform(
    name="twilio",
    parse=twilio_messages.parse,
    max_message_chars=twilio_messages.MAX_MESSAGE_CHARS,
    channel_of_track={"inbound": 0, "outbound": 1},
)


def routes(host: CallHost) -> list[web.RouteDef]:
    return [web.get("/v1/twilio", bind(host, twilio_socket))]


async def twilio_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    return await media_stream(host, request, PLATFORM)
