"""`GET /v1/freeswitch`: FreeSWITCH's `mod_audio_fork` and `mod_audio_stream`.

    uuid_audio_fork ${uuid} start
        wss://HOST/v1/freeswitch?interaction_id=${uuid}&sample_rate=16000&mix=stereo stereo 16k

(one line in FreeSWITCH).

The fork's URL names the call and its audio (the modules send neither in a frame of their
own); a JSON metadata frame may name them instead. Stereo is the caller on channel 0 and the
callee on channel 1. A key with `stream` scope comes as `?token=KEY`, as HTTP Basic
(mod_audio_fork's `MOD_AUDIO_BASIC_AUTH_USERNAME`/`_PASSWORD` channel variables, the key as the
password) or as a bearer header (mod_audio_stream's `STREAM_EXTRA_HEADERS`).
"""

from __future__ import annotations

from aiohttp import web

from ...http.auth import Route
from ...tenancy import Scope
from ..host import CallHost, bind
from . import freeswitch_messages
from .l16_socket import ForkPlatform, fork_socket

PLATFORM = ForkPlatform(
    name="freeswitch",
    start=freeswitch_messages.parse_start,
    control=freeswitch_messages.parse_control,
    subprotocols=freeswitch_messages.SUBPROTOCOLS,
    empty_frame_ends=True,
)


def routes(host: CallHost) -> list[Route]:
    return [Route("GET", "/v1/freeswitch", bind(host, freeswitch_socket), Scope.STREAM, long_lived=True)]


async def freeswitch_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    return await fork_socket(host, request, PLATFORM)
