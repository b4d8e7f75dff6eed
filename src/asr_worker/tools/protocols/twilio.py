"""`--protocol twilio`: Twilio Media Streams on `/v1/twilio`, as Twilio streams a call: mu-law
at 8 kHz, 20 ms `media` messages per track (`inbound` for a mono file; `inbound` and
`outbound` for a two-channel one, its channels 0 and 1), the call's id as the `interaction_id`
custom parameter, then `stop`. Twilio sends no key of its own: a key goes in the stream's URL
(`?token=KEY`, as a `<Stream url>` would carry it), and with `--twilio-auth-token` the upgrade
carries `X-Twilio-Signature`, computed as Twilio computes it. The worker answers nothing on
this socket: the call's events are read over SSE."""

from __future__ import annotations

import secrets
from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat, Encoding
from ...transports import twilio_messages as messages
from ...transports.twilio import SIGNATURE_HEADER, expected_signature
from .base import CallSpec, Leg, RouteProtocol, SocketLeg

FORMAT_CHANNEL: Final = AudioFormat(Encoding.MULAW, 8000, 1)
TRACKS: Final = ("inbound", "outbound")  # channel 0, channel 1


def signature_headers(url: str, auth_token: str) -> dict[str, str]:
    """`X-Twilio-Signature` as Twilio signs a stream's upgrade: over the URL it dialled, which
    is `wss://`, the Host it reached, the path and the query."""
    return {SIGNATURE_HEADER: expected_signature(auth_token, "wss://" + url.split("://", 1)[1])}


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class TwilioLeg(SocketLeg):
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, tracks: tuple[str, ...]) -> None:
        super().__init__(ws)
        self.tracks = tracks
        self.stream_sid, self.call_sid, self.account_sid = _sid("MZ"), _sid("CA"), _sid("AC")
        self.sequence = 0
        self.chunk = 0
        self.sent_ms = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    async def start(self, interaction_id: str, tenant_id: str | None) -> None:
        parameters = {"interaction_id": interaction_id}
        if tenant_id:
            parameters["tenant_id"] = tenant_id
        await self.ws.send_str(messages.connected_message())
        await self.ws.send_str(
            messages.start_message(
                self.stream_sid,
                self.call_sid,
                self.account_sid,
                self.tracks,
                parameters,
                self.next_sequence(),
            )
        )

    async def send_audio(self, chunk: bytes) -> None:
        """One message per track; a two-channel chunk is split into its tracks."""
        self.chunk += 1
        width = len(self.tracks)
        for channel, track in enumerate(self.tracks):
            payload = chunk[channel::width] if width > 1 else chunk
            await self.ws.send_str(
                messages.media_message(
                    self.stream_sid, self.next_sequence(), track, self.chunk, self.sent_ms, payload
                )
            )
        self.sent_ms += len(chunk) // width // 8  # 8 mu-law bytes a millisecond per track

    async def end(self) -> None:
        await self.ws.send_str(
            messages.stop_message(self.stream_sid, self.call_sid, self.account_sid, self.next_sequence())
        )


class Twilio(RouteProtocol):
    name: ClassVar[str] = "twilio"
    path: ClassVar[str] = "/v1/twilio"
    events_over_sse: ClassVar[bool] = True
    chunk_ms: ClassVar[int] = 20
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"
    key_hint: ClassVar[str] = (
        "a key with stream scope (--api-key, or ASR_WORKER_TOKEN), or --twilio-auth-token with "
        "one of the worker's ASR_TWILIO_AUTH_TOKENS"
    )

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(Encoding.MULAW, 8000, min(fmt.channels, 2))

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        query = {"token": call.keys.api_key} if call.keys.api_key else {}
        url = call.route_url(self.path, query)
        token = call.keys.twilio_auth_token
        ws = await http.ws_connect(url, headers=signature_headers(url, token) if token else {})
        leg = TwilioLeg(ws, TRACKS[: call.fmt.channels])
        await leg.start(call.interaction_id, call.tenant_id)
        return leg


PROTOCOL: Final = Twilio()
