"""`--protocol exotel`: Exotel's AgentStream on `/v1/exotel`, as the Stream and Voicebot applets
stream a call: 16-bit PCM, mono (a two-channel file is mixed, as a phone line hears both
sides), at 8 kHz, or at 16 or 24 kHz for a wideband file (`?sample-rate=` on the applet's URL),
about 100 ms a `media` message, then `stop`; the call's id as the `interaction_id` custom
parameter. The key goes as Exotel sends one, HTTP Basic with the key as the password
(`wss://USER:KEY@HOST/v1/exotel`). The worker answers nothing on this socket: the call's
events are read over SSE."""

from __future__ import annotations

import base64
import secrets
from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat, Encoding
from ...transports import exotel_messages as messages
from .base import CallSpec, Leg, RouteProtocol, SocketLeg

_USER: Final = "asr-worker-stream"  # Exotel's API key; the worker reads the password, its own key


class ExotelLeg(SocketLeg):
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, fmt: AudioFormat) -> None:
        super().__init__(ws)
        self.fmt = fmt
        self.stream_sid, self.call_sid = secrets.token_hex(16), secrets.token_hex(16)
        self.account_sid = "asr-worker-stream"
        self.sequence = 1  # `start` was 1
        self.chunk = 0
        self.sent_bytes = 0

    async def start(self, interaction_id: str, tenant_id: str | None) -> None:
        parameters = {"interaction_id": interaction_id}
        if tenant_id:
            parameters["tenant_id"] = tenant_id
        await self.ws.send_str(messages.connected_message())
        await self.ws.send_str(
            messages.start_message(
                self.stream_sid, self.call_sid, self.account_sid, self.fmt.sample_rate, parameters
            )
        )

    async def send_audio(self, chunk: bytes) -> None:
        self.sequence += 1
        timestamp_ms = round(self.fmt.seconds(self.sent_bytes) * 1000)
        await self.ws.send_str(
            messages.media_message(self.stream_sid, self.sequence, self.chunk, timestamp_ms, chunk)
        )
        self.chunk += 1
        self.sent_bytes += len(chunk)

    async def end(self) -> None:
        self.sequence += 1
        await self.ws.send_str(
            messages.stop_message(self.stream_sid, self.call_sid, self.account_sid, self.sequence)
        )


class Exotel(RouteProtocol):
    name: ClassVar[str] = "exotel"
    path: ClassVar[str] = "/v1/exotel"
    events_over_sse: ClassVar[bool] = True
    chunk_ms: ClassVar[int] = 100
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"
    key_hint: ClassVar[str] = "a key with stream scope (--api-key, or ASR_WORKER_TOKEN)"

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        rate = max(r for r in messages.SAMPLE_RATES if r <= max(fmt.sample_rate, messages.SAMPLE_RATES[0]))
        return AudioFormat(Encoding.LINEAR16, rate, 1)

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        query = {} if call.fmt.sample_rate == 8000 else {"sample-rate": str(call.fmt.sample_rate)}
        headers = {}
        if call.keys.api_key:
            credentials = base64.b64encode(f"{_USER}:{call.keys.api_key}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {credentials}"
        ws = await http.ws_connect(call.route_url(self.path, query), headers=headers)
        leg = ExotelLeg(ws, call.fmt)
        await leg.start(call.interaction_id, call.tenant_id)
        return leg


PROTOCOL: Final = Exotel()
