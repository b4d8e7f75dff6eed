"""The skeleton of the media forks that open a WebSocket, say once which call it carries (in
the URL, or in one text frame first), send the call's audio raw in binary frames, and end the
call by closing the socket as the call hangs up: FreeSWITCH's mod_audio_fork, jambonz
`listen`, Vonage's WebSockets and Asterisk's chan_websocket.

A platform is a `Fork`: its route, the subprotocol it offers (and needs the worker to select,
as mod_audio_fork and Node's `ws` do), its key as it sends one, the URL's query, and its
first text frame, built by its `*_messages.py` module. A call with two legs is one stereo
stream (the caller on channel 0), where the platform sends one. The worker answers nothing
on these sockets: the call's events are read over SSE."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import aiohttp

from .base import CallRefused, CallSpec, Leg, RouteProtocol, SocketLeg


class ForkLeg(SocketLeg):
    async def send_audio(self, chunk: bytes) -> None:
        await self.ws.send_bytes(chunk)

    async def end(self) -> None:
        await self.ws.close()  # the call hung up: the platform closes the fork's socket


class Fork(RouteProtocol):
    events_over_sse: ClassVar[bool] = True
    chunk_ms: ClassVar[int] = 20
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"
    key_hint: ClassVar[str] = "a key with stream scope (--api-key, or ASR_WORKER_TOKEN)"
    subprotocol: ClassVar[str | None] = None  # the one the platform offers

    @abstractmethod
    def query(self, call: CallSpec) -> dict[str, str]:
        """The socket URL's query, as the platform's configuration writes it."""

    @abstractmethod
    def headers(self, call: CallSpec) -> dict[str, str]:
        """The upgrade's headers: the key as the platform sends one."""

    @abstractmethod
    def first_frame(self, call: CallSpec) -> str | None:
        """The text frame the platform sends first (None: it sends audio at once)."""

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        offered = (self.subprotocol,) if self.subprotocol else ()
        url = call.route_url(self.path, self.query(call))
        ws = await http.ws_connect(url, headers=self.headers(call), protocols=offered)
        leg = ForkLeg(ws)
        if offered and ws.protocol != self.subprotocol:
            await leg.close()
            raise CallRefused(
                f"the server selected no subprotocol, not the {self.subprotocol!r} {self.name} offers "
                "(the platform's client would drop such a socket): is --url the worker?"
            )
        frame = self.first_frame(call)
        if frame is not None:
            await ws.send_str(frame)
        return leg
