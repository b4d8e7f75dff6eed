"""`--protocol twilio`: Twilio Media Streams on `/v1/twilio`, as Twilio streams a call: mu-law
at 8 kHz, 20 ms `media` messages per track (`inbound` for a mono file; `inbound` and
`outbound` for a two-channel one, its channels 0 and 1), the call's id as the `interaction_id`
custom parameter, then `stop`. Twilio sends no key of its own: a key goes in the stream's URL
(`?token=KEY`, as a `<Stream url>` would carry it), and with `--twilio-auth-token` the upgrade
carries `X-Twilio-Signature`, computed as Twilio computes it. The worker answers nothing on
this socket: the call's events are read over SSE."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat, Encoding
from ...transports import twilio_messages as messages
from ...transports.twilio import SIGNATURE_HEADER, expected_signature
from .base import CallSpec, Leg, RouteProtocol
from .media_stream import TRACKS, StreamMessages, TrackLeg, custom_parameters


def signature_headers(url: str, auth_token: str) -> dict[str, str]:
    """`X-Twilio-Signature` as Twilio signs a stream's upgrade: over the URL it dialled, which
    is `wss://`, the Host it reached, the path and the query."""
    return {SIGNATURE_HEADER: expected_signature(auth_token, "wss://" + url.split("://", 1)[1])}


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class TwilioMessages(StreamMessages):
    def __init__(self, tracks: Sequence[str], parameters: dict[str, str]) -> None:
        self.tracks = tracks
        self.parameters = parameters
        self.stream_sid, self.call_sid, self.account_sid = _sid("MZ"), _sid("CA"), _sid("AC")
        self.sequence = 0

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def opening(self) -> list[str]:
        start = messages.start_message(
            self.stream_sid, self.call_sid, self.account_sid, self.tracks, self.parameters, self._next()
        )
        return [messages.connected_message(), start]

    def media(self, track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
        return messages.media_message(self.stream_sid, self._next(), track, chunk, timestamp_ms, payload)

    def stop(self) -> str:
        return messages.stop_message(self.stream_sid, self.call_sid, self.account_sid, self._next())


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
        leg = TrackLeg(ws, TwilioMessages(TRACKS[: call.fmt.channels], custom_parameters(call)), call.fmt)
        await leg.start()
        return leg


PROTOCOL: Final = Twilio()
