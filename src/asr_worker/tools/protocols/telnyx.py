"""`--protocol telnyx`: Telnyx Media Streaming on `/v1/telnyx`, as Call Control's
`streaming_start` streams a call with `stream_codec` PCMU (Telnyx's default): mu-law at 8 kHz,
20 ms `media` messages per track (`stream_track` `inbound_track` for a mono file, `both_tracks`
for a two-channel one, its channels 0 and 1), said on the stream URL as `?track=` since Telnyx's
`start` does not list them; `connected`, `start` with the call's id as the `interaction_id`
custom parameter, then `stop`. Telnyx documents no signature on the upgrade: the key goes in
the stream URL (`?token=KEY`). The worker answers nothing on this socket: the call's events
are read over SSE."""

from __future__ import annotations

import uuid
from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat, Encoding
from ...transports.forks import telnyx_messages as messages
from .base import CallSpec, Leg, RouteProtocol
from .media_stream import StreamMessages, TrackLeg, custom_parameters

URL_TRACK: Final = {1: "inbound_track", 2: "both_tracks"}  # the stream URL's ?track=, by channels


class TelnyxMessages(StreamMessages):
    def __init__(self, parameters: dict[str, str]) -> None:
        self.parameters = parameters
        self.call_control_id = f"v3:{uuid.uuid4().hex}"
        self.sequence = 1  # `start` is 1

    def opening(self) -> list[str]:
        start = messages.start(self.call_control_id, "PCMU", 8000, self.parameters)
        return [messages.connected(), start]

    def media(self, track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
        self.sequence += 1
        return messages.media(track, chunk, timestamp_ms, payload)

    def stop(self) -> str:
        self.sequence += 1
        return messages.stop(self.call_control_id, self.sequence)


class Telnyx(RouteProtocol):
    name: ClassVar[str] = "telnyx"
    path: ClassVar[str] = "/v1/telnyx"
    events_over_sse: ClassVar[bool] = True
    chunk_ms: ClassVar[int] = 20
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"
    key_hint: ClassVar[str] = "a key with stream scope (--api-key, or ASR_WORKER_TOKEN)"

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(Encoding.MULAW, 8000, min(fmt.channels, 2))

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        query = {"track": URL_TRACK[call.fmt.channels]}
        if call.keys.api_key:
            query["token"] = call.keys.api_key
        ws = await http.ws_connect(call.route_url(self.path, query))
        leg = TrackLeg(ws, TelnyxMessages(custom_parameters(call)), call.fmt)
        await leg.start()
        return leg


PROTOCOL: Final = Telnyx()
