"""`--protocol signalwire`: SignalWire's cXML `<Stream>` on `/v1/signalwire`, as SignalWire
streams a call: 16-bit PCM (`codec="L16@16000h"`, or `L16@24000h` for a file of 24 kHz or
more) or, for a narrowband file, mu-law at 8 kHz (its default codec); 20 ms `media` messages
per track (`inbound` for a mono file; `both_tracks` for a two-channel one, its channels 0 and
1); `connected`, `start` with the call's id as the `interaction_id` `<Parameter>`, then `stop`.
The key goes as SignalWire sends `authBearerToken`: `Authorization: Bearer KEY`. The worker
answers nothing on this socket: the call's events are read over SSE."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat, Encoding
from ...transports.forks import signalwire_messages as messages
from .base import CallSpec, Leg, RouteProtocol, bearer_authorization, highest_rate
from .media_stream import TRACKS, StreamMessages, TrackLeg, custom_parameters

L16_RATES: Final = (16000, 24000)  # codec="L16@16000h", "L16@24000h"
_ENCODINGS: Final = {Encoding.LINEAR16: "audio/x-L16", Encoding.MULAW: "audio/x-mulaw"}


class SignalWireMessages(StreamMessages):
    def __init__(self, tracks: Sequence[str], fmt: AudioFormat, parameters: dict[str, str]) -> None:
        self.tracks = tuple(tracks)
        self.fmt = fmt
        self.parameters = parameters
        self.call_sid = str(uuid.uuid4())
        self.sequence = 1  # `start` is 1

    def opening(self) -> list[str]:
        encoding = _ENCODINGS[self.fmt.encoding]
        start = messages.start(self.call_sid, self.tracks, encoding, self.fmt.sample_rate, self.parameters)
        return [messages.connected(), start]

    def media(self, track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
        self.sequence += 1
        return messages.media(track, chunk, timestamp_ms, payload)

    def stop(self) -> str:
        self.sequence += 1
        return messages.stop(self.sequence)


class SignalWire(RouteProtocol):
    name: ClassVar[str] = "signalwire"
    path: ClassVar[str] = "/v1/signalwire"
    events_over_sse: ClassVar[bool] = True
    chunk_ms: ClassVar[int] = 20
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"
    key_hint: ClassVar[str] = "a key with stream scope (--api-key, or ASR_WORKER_TOKEN)"

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        channels = min(fmt.channels, 2)
        if fmt.sample_rate < L16_RATES[0]:
            return AudioFormat(Encoding.MULAW, 8000, channels)
        return AudioFormat(Encoding.LINEAR16, highest_rate(fmt.sample_rate, L16_RATES), channels)

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        ws = await http.ws_connect(call.route_url(self.path), headers=bearer_authorization(call.keys.api_key))
        tracks = TRACKS[: call.fmt.channels]
        leg = TrackLeg(ws, SignalWireMessages(tracks, call.fmt, custom_parameters(call)), call.fmt)
        await leg.start()
        return leg


PROTOCOL: Final = SignalWire()
