"""`--protocol plivo`: Plivo Audio Streaming on `/v1/plivo`, as Plivo's `<Stream>` streams a
call: 16-bit PCM (`contentType="audio/x-l16;rate=16000"`, or `8000` for a narrowband file),
20 ms `media` messages per track (`audioTrack="inbound"` for a mono file; `both` for a
two-channel one, its channels 0 and 1), stamped with the wall clock's milliseconds as Plivo
stamps them; `start` with the call's id in `extraHeaders` (`interactionId=ID`; an id with more
than letters and digits, which `extraHeaders` cannot carry, goes on the URL as
`?interaction_id=`). Plivo sends no `stop`: the call's hangup closes the socket. Plivo
documents no signature on the upgrade: the key goes in the stream URL (`?token=KEY`). The
worker answers nothing on this socket: the call's events are read over SSE."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat, Encoding
from ...transports.forks import plivo_messages as messages
from .base import CallSpec, Leg, RouteProtocol, highest_rate
from .media_stream import TRACKS, StreamMessages, TrackLeg

L16_RATES: Final = (8000, 16000)


def _header_safe(value: str) -> bool:
    """What `extraHeaders` carries: letters and digits."""
    return value.isascii() and value.isalnum()


def extra_headers(call: CallSpec) -> str:
    """The call's id and tenant in `extraHeaders`, where they are letters and digits."""
    pairs = [("interactionId", call.interaction_id), ("tenantId", call.tenant_id or "")]
    return ";".join(f"{name}={value}" for name, value in pairs if value and _header_safe(value))


class PlivoMessages(StreamMessages):
    def __init__(self, tracks: Sequence[str], fmt: AudioFormat, extra_headers: str) -> None:
        self.tracks = tuple(tracks)
        self.fmt = fmt
        self.extra_headers = extra_headers
        self.call_id = str(uuid.uuid4())
        self.epoch_ms = time.time_ns() // 1_000_000  # Plivo stamps media with the wall clock

    def opening(self) -> list[str]:
        start = messages.start(
            self.call_id, self.tracks, "audio/x-l16", self.fmt.sample_rate, self.extra_headers
        )
        return [start]

    def media(self, track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
        return messages.media(track, chunk, self.epoch_ms + timestamp_ms, payload)

    def stop(self) -> None:
        return None  # the hangup closes the socket


class Plivo(RouteProtocol):
    name: ClassVar[str] = "plivo"
    path: ClassVar[str] = "/v1/plivo"
    events_over_sse: ClassVar[bool] = True
    chunk_ms: ClassVar[int] = 20
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"
    key_hint: ClassVar[str] = "a key with stream scope (--api-key, or ASR_WORKER_TOKEN)"

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(Encoding.LINEAR16, highest_rate(fmt.sample_rate, L16_RATES), min(fmt.channels, 2))

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        query = {}
        for name, value in (("interaction_id", call.interaction_id), ("tenant_id", call.tenant_id)):
            if value and not _header_safe(value):
                query[name] = value
        if call.keys.api_key:
            query["token"] = call.keys.api_key
        ws = await http.ws_connect(call.route_url(self.path, query))
        tracks = TRACKS[: call.fmt.channels]
        leg = TrackLeg(ws, PlivoMessages(tracks, call.fmt, extra_headers(call)), call.fmt)
        await leg.start()
        return leg


PROTOCOL: Final = Plivo()
