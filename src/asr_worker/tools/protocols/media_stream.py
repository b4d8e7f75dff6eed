"""The skeleton of the routes shaped like Twilio's Media Streams (Twilio, Exotel, Telnyx, Plivo,
SignalWire): JSON text messages on one WebSocket, the stream's opening (`connected`, `start`),
then each track's audio as base64 `media` messages numbered by `chunk` (from 1, per track) and
stamped with the milliseconds since the stream began, then the platform's end (`stop`, or, for
Plivo, the socket's close). A mono file is the inbound track alone; a two-channel file's
channels are the inbound (the caller) and the outbound tracks, one message each per chunk.

A platform is its `StreamMessages`: what it writes for each of those, with its own ids and
sequence numbers, from the builders of its `*_messages.py` module. The worker answers nothing
on these sockets: the call's events are read over SSE."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Final

import aiohttp
import numpy as np

from ...core.audio import AudioFormat
from .base import CallSpec, SocketLeg

TRACKS: Final = ("inbound", "outbound")  # channel 0, channel 1


def custom_parameters(call: CallSpec) -> dict[str, str]:
    """The call's id (and tenant) as the custom parameters of the stream (a `<Parameter>` of
    its markup, an applet's URL parameter), which the worker reads them from."""
    parameters = {"interaction_id": call.interaction_id}
    if call.tenant_id:
        parameters["tenant_id"] = call.tenant_id
    return parameters


class StreamMessages(ABC):
    """One stream's messages as its platform writes them (it keeps the stream's ids and its
    sequence numbers)."""

    @abstractmethod
    def opening(self) -> list[str]:
        """What the platform sends before any audio (`connected`, `start`)."""

    @abstractmethod
    def media(self, track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
        """One track's audio: its `chunk` (from 1), `timestamp_ms` since the stream began."""

    @abstractmethod
    def stop(self) -> str | None:
        """The stream's end; None where the platform ends a stream by closing its socket."""


class TrackLeg(SocketLeg):
    """One stream of a call's tracks (`fmt`'s channels, in `TRACKS`' order)."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, messages: StreamMessages, fmt: AudioFormat
    ) -> None:
        super().__init__(ws)
        self.messages = messages
        self.fmt = fmt
        self.tracks = TRACKS[: fmt.channels]
        self.chunk = 0
        self.sent_frames = 0  # samples sent on each track

    async def start(self) -> None:
        for text in self.messages.opening():
            await self.ws.send_str(text)

    async def send_audio(self, chunk: bytes) -> None:
        """One message per track; a two-channel chunk is split into its tracks."""
        self.chunk += 1
        timestamp_ms = self.sent_frames * 1000 // self.fmt.sample_rate
        width, channels = self.fmt.bytes_per_sample, self.fmt.channels
        for channel, track in enumerate(self.tracks):
            payload = chunk if channels == 1 else _channel(chunk, channel, channels, width)
            await self.ws.send_str(self.messages.media(track, self.chunk, timestamp_ms, payload))
        self.sent_frames += len(chunk) // self.fmt.frame_bytes

    async def end(self) -> None:
        text = self.messages.stop()
        if text is None:
            await self.ws.close()  # the call hung up: the platform closes the stream's socket
        else:
            await self.ws.send_str(text)


def _channel(chunk: bytes, channel: int, channels: int, width: int) -> bytes:
    """One channel's samples of interleaved audio."""
    return np.frombuffer(chunk, dtype=f"V{width}").reshape(-1, channels)[:, channel].tobytes()
