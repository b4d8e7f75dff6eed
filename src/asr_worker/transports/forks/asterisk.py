"""`GET /v1/asterisk`: Asterisk's WebSocket channel driver (`chan_websocket`).

    ; websocket_client.conf
    [asr]
    type = websocket_client
    connection_type = per_call_config
    uri = wss://HOST/v1/asterisk
    protocols = media
    username = asterisk
    password = KEY

    ; extensions.conf
    same => n,Dial(WebSocket/asr/c(slin16)v(interaction_id=${UNIQUEID}))

Asterisk sends `MEDIA_START` (plain text or JSON), then the channel's audio in the codec it was
dialled with; `DTMF_END` digits become `dtmf` events; the channel's hangup closes the socket,
which ends the call with reason `end`. The call's id is the URI's `interaction_id` (the dial
string's `v(...)`), a JSON `MEDIA_START`'s channel variable `interaction_id`, else Asterisk's
`channel_id`. A key with `stream` scope admits the socket: `password` (HTTP Basic) or `?token=`.
"""

from __future__ import annotations

from aiohttp import web

from ...http.auth import Route
from ...tenancy import Scope
from ..host import CallHost, bind
from . import asterisk_messages
from .l16_socket import ForkPlatform, fork_socket

PLATFORM = ForkPlatform(
    name="asterisk",
    start=asterisk_messages.parse_start,
    control=asterisk_messages.parse_control,
    subprotocols=asterisk_messages.SUBPROTOCOLS,
)


def routes(host: CallHost) -> list[Route]:
    return [Route("GET", "/v1/asterisk", bind(host, asterisk_socket), Scope.STREAM, long_lived=True)]


async def asterisk_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    return await fork_socket(host, request, PLATFORM)
