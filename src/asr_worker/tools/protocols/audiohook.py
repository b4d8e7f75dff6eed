"""`--protocol audiohook`: Genesys Cloud's AudioHook v2 on `/v1/audiohook`, as Genesys streams a
call: the upgrade with `X-API-KEY` (the AudioHook key: `--api-key`, or ASR_AUDIOHOOK_API_KEY)
and, with `--client-secret`, its HTTP message signature; `open` offering PCMU at 8 kHz (the
channels `external` and `internal` for a two-channel file, `external` alone for a mono one)
with the call's id as `customConfig.interaction_id`; the audio once `opened` came; `close`
(reason `end`) at the end. The worker sends the transcripts back on this socket as `event`
messages, read here until `closed`; `pause` and `resume` are answered as Genesys answers them,
and a `disconnect` is closed as Genesys closes it."""

from __future__ import annotations

import uuid
from typing import ClassVar, Final
from urllib.parse import urlsplit

import aiohttp

from ...audiohook import protocol
from ...audiohook.signature import upgrade_headers
from ...core.audio import AudioFormat, Encoding
from ...errors import ProtocolError
from .base import CallRefused, CallSpec, Event, Leg, Received, RouteProtocol, SocketLeg

# The Genesys organization the calls come from (made up): the call's tenant on the worker,
# unless ASR_API_KEYS names a tenant for the AudioHook key.
ORGANIZATION_ID: Final = "5c0a51a8-97a6-4b8e-9a7f-0b6f3e2a7c11"
CHANNELS: Final = ("external", "internal")  # channel 0 the customer, 1 the agent


class AudioHookLeg(SocketLeg):
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session_id: str, fmt: AudioFormat) -> None:
        super().__init__(ws)
        self.id = session_id
        self.fmt = fmt
        self.seq = 0
        self.serverseq = 0
        self.position_s = 0.0
        self.closing = False  # close sent: no more audio
        self.ended = False  # `closed` came

    @property
    def closed(self) -> bool:
        return self.closing or self.ws.closed

    async def _send(self, kind: str, parameters: dict[str, object]) -> None:
        self.seq += 1
        text = protocol.client_message(kind, self.id, self.seq, self.serverseq, self.position_s, parameters)
        await self.ws.send_str(text)

    async def open_session(self, interaction_id: str) -> None:
        offer = protocol.MediaOffer("PCMU", 8000, CHANNELS[: self.fmt.channels])
        parameters = protocol.open_parameters(
            ORGANIZATION_ID, str(uuid.uuid4()), [offer], {"interaction_id": interaction_id}
        )
        await self._send("open", parameters)
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            message = self._message(msg.data)
            if message.type == "opened":
                started: Event = {"type": "session_started", "encoding": "mulaw", "sample_rate": 8000}
                self.opened = Received(msg.data, [started | {"channels": self.fmt.channels}])
                return
            if message.type == "disconnect":
                raise CallRefused(f"disconnect: {_disconnect_text(message)}")
        raise CallRefused("the worker closed the socket before `opened`")

    def _message(self, text: str) -> protocol.ServerMessage:
        message = protocol.parse_server_message(text)
        self.serverseq = message.seq
        return message

    async def send_audio(self, chunk: bytes) -> None:
        await self.ws.send_bytes(chunk)
        self.position_s += self.fmt.seconds(len(chunk))

    async def end(self) -> None:
        await self._close("end")

    async def _close(self, reason: str) -> None:
        if not self.closing and not self.ws.closed:
            self.closing = True
            await self._send("close", {"reason": reason})

    async def _read(self, text: str) -> Received | None:
        try:
            message = self._message(text)
        except ProtocolError as exc:
            return Received(text, [{"type": "error", "code": "bad_message", "message": exc.message}])
        events: list[Event] = []
        if message.type == "event":
            events = [_transcript(t) for t in protocol.transcripts_in(message.parameters)]
        elif message.type == "closed":
            self.ended = True
            events = [{"type": "session_ended", "reason": "closed"}]
        elif message.type == "disconnect":
            if message.parameters.get("reason") != "completed":
                events = [{"type": "error", "code": "disconnect", "message": _disconnect_text(message)}]
            await self._close("disconnect")  # as Genesys answers a disconnect; `closed` follows
        elif message.type == "pause":
            await self._send("paused", {})
        elif message.type == "resume":
            await self._send("resumed", {})
        return Received(text, events)

    def _done(self) -> bool:
        return self.ended


def _transcript(entity: protocol.TranscriptEntity) -> Event:
    return {
        "type": "transcript",
        "channel": entity.channel_id,
        "is_final": entity.is_final,
        "text": entity.text,
        "confidence": entity.confidence,
        "start": entity.offset,
        "end": round(entity.offset + entity.duration, 3),
    }


def _disconnect_text(message: protocol.ServerMessage) -> str:
    reason, info = message.parameters.get("reason"), message.parameters.get("info")
    return f"{reason}" + (f": {info}" if info else "")


class AudioHook(RouteProtocol):
    name: ClassVar[str] = "audiohook"
    path: ClassVar[str] = "/v1/audiohook"
    events_over_sse: ClassVar[bool] = False
    chunk_ms: ClassVar[int] = 100
    key_env: ClassVar[str] = "ASR_AUDIOHOOK_API_KEY"
    key_hint: ClassVar[str] = (
        "one of the worker's ASR_AUDIOHOOK_API_KEYS (--api-key, or ASR_AUDIOHOOK_API_KEY), and "
        "--client-secret where that key has one; the worker answers 403 to every upgrade while "
        "ASR_AUDIOHOOK_API_KEYS is unset"
    )

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(Encoding.MULAW, 8000, min(fmt.channels, 2))

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        url = call.route_url(self.path)
        session_id = str(uuid.uuid4())
        headers = upgrade_headers(
            call.keys.api_key or "",
            session_id=session_id,
            organization_id=ORGANIZATION_ID,
            secret=call.keys.client_secret,
            authority=call.netloc,
            target=urlsplit(url).path,
        )
        ws = await http.ws_connect(url, headers=headers)
        leg = AudioHookLeg(ws, session_id, call.fmt)
        try:
            await leg.open_session(call.interaction_id)
        except BaseException:
            await leg.close()
            raise
        return leg


PROTOCOL: Final = AudioHook()
