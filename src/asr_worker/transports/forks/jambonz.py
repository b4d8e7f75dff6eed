"""`GET /v1/jambonz`: jambonz's `listen` verb (and `listen` nested in `dial` or `config`).

Point the verb's `url` at `wss://HOST/v1/jambonz`; protect it with `wsAuth` (HTTP Basic, the
worker's key as the password) or `?token=KEY`. The call's id is the verb's `metadata`
`interaction_id`, the URL's `?interaction_id=`, or jambonz's `callSid`.
"""

from __future__ import annotations

from aiohttp import web

from ...http.auth import Route
from ...tenancy import Scope
from ..host import CallHost, bind
from . import jambonz_messages
from .l16_socket import ForkPlatform, fork_socket

PLATFORM = ForkPlatform(
    name="jambonz",
    start=jambonz_messages.parse_start,
    control=jambonz_messages.parse_control,
    subprotocols=jambonz_messages.SUBPROTOCOLS,
    empty_frame_ends=True,  # jambonz's media server is FreeSWITCH with mod_audio_fork
)


def routes(host: CallHost) -> list[Route]:
    return [Route("GET", "/v1/jambonz", bind(host, jambonz_socket), Scope.STREAM, long_lived=True)]


async def jambonz_socket(host: CallHost, request: web.Request) -> web.StreamResponse:
    return await fork_socket(host, request, PLATFORM)
