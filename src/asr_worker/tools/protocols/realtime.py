"""`--protocol realtime`: OpenAI's Realtime API in transcription mode on
`/v1/realtime?intent=transcription`, as an OpenAI client speaks it: a GA `session.update`
(transcription, server VAD, the audio's format: `audio/pcm` at 24 kHz, or G.711 at 8 kHz for a
mono G.711 file), `input_audio_buffer.append` at real time, and a `commit` at the end; the key
as a bearer token, the call's id as `?interaction_id=`. The transcription comes back on this
socket: each item's deltas (shown as its interim text so far) and its `completed` transcript
(its final). The call is over once every item the end's commit left open is complete; then
the socket is closed, which ends the call on the worker."""

from __future__ import annotations

import json
from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat, Encoding
from ...errors import ProtocolViolation
from ...openai_realtime import protocol as rt
from .base import CallSpec, Event, Leg, Received, RouteProtocol, SocketLeg

_FORMATS: Final = {Encoding.MULAW: rt.G711_ULAW, Encoding.ALAW: rt.G711_ALAW}
# Sent after the end's commit: a session.update that changes nothing. The server answers events
# in order, so its `session.updated` comes after whatever the commit brought (`committed`, or
# an error for a buffer too short to commit): every item still open is known by then.
_BARRIER: Final = json.dumps({"type": "session.update", "session": {"type": "transcription"}})


class RealtimeLeg(SocketLeg):
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, fmt: AudioFormat) -> None:
        super().__init__(ws)
        self.fmt = fmt
        self.sent_s = 0.0
        self.ending = False  # the end's commit and barrier are sent
        self.barrier_passed = False
        self.ended = False
        self.open_items: set[str] = set()  # committed, not yet completed
        self.text: dict[str, str] = {}
        self.start_s: dict[str, float] = {}
        self.end_s: dict[str, float] = {}
        self.last_end_s = 0.0

    async def configure(self) -> None:
        config = rt.SessionConfig(format=_FORMATS.get(self.fmt.encoding, rt.PCM16))
        await self.ws.send_str(rt.dumps(rt.session_update_event(config, "ga")))

    async def send_audio(self, chunk: bytes) -> None:
        await self.ws.send_str(rt.dumps(rt.append_event(chunk)))
        self.sent_s += self.fmt.seconds(len(chunk))

    async def end(self) -> None:
        await self.ws.send_str(rt.dumps(rt.commit_event()))
        await self.ws.send_str(_BARRIER)
        self.ending = True

    async def _read(self, text: str) -> Received | None:
        try:
            event = rt.parse_server_event(text)
        except ProtocolViolation as exc:
            return Received(text, [{"type": "error", "code": "bad_message", "message": str(exc)}])
        events = self._events(event)
        if self.barrier_passed and not self.open_items and not self.ended:
            self.ended = True
            events.append({"type": "session_ended", "reason": "end", "audio_s": round(self.sent_s, 3)})
        return Received(text, events)

    def _events(self, event: rt.ServerEvent | None) -> list[Event]:
        if isinstance(event, rt.SessionAck):
            if event.created:
                return [
                    {
                        "type": "session_started",
                        "encoding": str(self.fmt.encoding),
                        "sample_rate": self.fmt.sample_rate,
                        "channels": 1,
                    }
                ]
            self.barrier_passed = self.barrier_passed or self.ending
        elif isinstance(event, rt.SpeechStarted):
            self.start_s[event.item_id] = event.audio_start_ms / 1000
        elif isinstance(event, rt.SpeechStopped):
            self.end_s[event.item_id] = event.audio_end_ms / 1000
        elif isinstance(event, rt.Committed):
            self.open_items.add(event.item_id)
        elif isinstance(event, rt.TranscriptionDelta):
            self.text[event.item_id] = self.text.get(event.item_id, "") + event.delta
            return [self._transcript(event.item_id, self.text[event.item_id], final=False)]
        elif isinstance(event, rt.TranscriptionCompleted):
            self.open_items.discard(event.item_id)
            final = self._transcript(event.item_id, event.transcript, final=True)
            self.last_end_s = float(str(final["end"]))
            return [final]
        elif isinstance(event, rt.TranscriptionFailed):
            self.open_items.discard(event.item_id)
            return [{"type": "error", "code": event.code, "message": event.message}]
        elif isinstance(event, rt.ServerError):
            return [{"type": "error", "code": event.code or event.type, "message": event.message}]
        return []

    def _transcript(self, item_id: str, text: str, *, final: bool) -> Event:
        return {
            "type": "transcript",
            "channel": 0,
            "is_final": final,
            "text": text.strip(),
            "start": self.start_s.get(item_id, self.last_end_s),
            "end": self.end_s.get(item_id, round(self.sent_s, 3)),
        }

    def _done(self) -> bool:
        return self.ended


class Realtime(RouteProtocol):
    name: ClassVar[str] = "realtime"
    path: ClassVar[str] = rt.REALTIME_PATH
    events_over_sse: ClassVar[bool] = False
    chunk_ms: ClassVar[int] = 20
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"
    key_hint: ClassVar[str] = "a key with stream scope (--api-key, or ASR_WORKER_TOKEN)"

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        if fmt.encoding in _FORMATS and fmt.sample_rate == 8000 and fmt.channels == 1:
            return fmt  # G.711 goes as it is, as a telephony bridge would send it
        return AudioFormat(Encoding.LINEAR16, rt.PCM16.sample_rate, 1)

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        query = {"intent": "transcription", "interaction_id": call.interaction_id}
        if call.tenant_id:
            query["tenant_id"] = call.tenant_id
        headers = {"Authorization": f"Bearer {call.keys.api_key}"} if call.keys.api_key else {}
        ws = await http.ws_connect(call.route_url(self.path, query), headers=headers, max_msg_size=1 << 22)
        leg = RealtimeLeg(ws, call.fmt)
        await leg.configure()
        return leg


PROTOCOL: Final = Realtime()
