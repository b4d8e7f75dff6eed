"""`--protocol exotel`: Exotel's AgentStream on `/v1/exotel`, as the Stream and Voicebot applets
stream a call: 16-bit PCM, mono (a two-channel file is mixed, as a phone line hears both
sides), at 8 kHz, or at 16 or 24 kHz for a wideband file (`?sample-rate=` on the applet's URL),
about 100 ms a `media` message, then `stop`; the call's id as the `interaction_id` custom
parameter. The key goes as Exotel sends one, HTTP Basic with the key as the password
(`wss://USER:KEY@HOST/v1/exotel`). The worker answers nothing on this socket: the call's
events are read over SSE."""

from __future__ import annotations

import secrets
from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat, Encoding
from ...transports import exotel_messages as messages
from .base import CallSpec, Leg, RouteProtocol, basic_authorization, highest_rate
from .media_stream import StreamMessages, TrackLeg, custom_parameters

_USER: Final = "asr-worker-stream"  # Exotel's API key; the worker reads the password, its own key


class ExotelMessages(StreamMessages):
    def __init__(self, sample_rate: int, parameters: dict[str, str]) -> None:
        self.sample_rate = sample_rate
        self.parameters = parameters
        self.stream_sid, self.call_sid = secrets.token_hex(16), secrets.token_hex(16)
        self.account_sid = "asr-worker-stream"
        self.sequence = 0

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def opening(self) -> list[str]:
        start = messages.start_message(
            self.stream_sid, self.call_sid, self.account_sid, self.sample_rate, self.parameters
        )
        self._next()  # `start` is 1
        return [messages.connected_message(), start]

    def media(self, track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
        """Exotel numbers its chunks from 0."""
        return messages.media_message(self.stream_sid, self._next(), chunk - 1, timestamp_ms, payload)

    def stop(self) -> str:
        return messages.stop_message(self.stream_sid, self.call_sid, self.account_sid, self._next())


class Exotel(RouteProtocol):
    name: ClassVar[str] = "exotel"
    path: ClassVar[str] = "/v1/exotel"
    events_over_sse: ClassVar[bool] = True
    chunk_ms: ClassVar[int] = 100
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"
    key_hint: ClassVar[str] = "a key with stream scope (--api-key, or ASR_WORKER_TOKEN)"

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(Encoding.LINEAR16, highest_rate(fmt.sample_rate, messages.SAMPLE_RATES), 1)

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        query = {} if call.fmt.sample_rate == 8000 else {"sample-rate": str(call.fmt.sample_rate)}
        headers = basic_authorization(_USER, call.keys.api_key)
        ws = await http.ws_connect(call.route_url(self.path, query), headers=headers)
        leg = TrackLeg(ws, ExotelMessages(call.fmt.sample_rate, custom_parameters(call)), call.fmt)
        await leg.start()
        return leg


PROTOCOL: Final = Exotel()
