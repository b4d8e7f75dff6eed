"""`--protocol jambonz_stt`: the worker as a jambonz custom speech vendor, on
`/v1/jambonz/transcribe`, as jambonz's recognizer speaks to one: the vendor's API key as
`Authorization: Bearer KEY`, `start` (LINEAR16 mono at the file's rate where the API takes it,
interim results asked for, a fresh `callSid`), the audio in 20 ms binary frames, then `stop`.
The call's id goes on the vendor URL (`?interaction_id=`), since jambonz names calls by its
own `callSid`. The results come back on this socket, as jambonz reads them: each
`transcription`'s first alternative (its `channel` counted from 1 there, from 0 here) and each
`error`; the worker closes the socket once the last results are sent, which ends the call
here. jambonz's messages say nothing of when a call began or ended, so the call's
`session_started` is shown with its first result (or its end, for a call without one) and
`session_ended` as the worker closes the socket; a call the worker refuses gets jambonz's
`error`, then the close that says why."""

from __future__ import annotations

import uuid
from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat, Encoding
from ...errors import ProtocolError
from ...transports.forks import jambonz_stt_messages as messages
from .base import CallSpec, Event, Leg, Received, RouteProtocol, SocketLeg, bearer_authorization, highest_rate


class JambonzSttLeg(SocketLeg):
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, fmt: AudioFormat) -> None:
        super().__init__(ws)
        self.fmt = fmt
        self.sent_bytes = 0
        self.stopped = False  # `stop` sent: no more audio
        self.began = False  # session_started shown

    def _started(self) -> list[Event]:
        """session_started, before the call's first result or its end."""
        if self.began:
            return []
        self.began = True
        fmt = self.fmt
        started: Event = {
            "type": "session_started",
            "encoding": str(fmt.encoding),
            "sample_rate": fmt.sample_rate,
        }
        return [started | {"channels": 1}]

    @property
    def closed(self) -> bool:
        return self.stopped or self.ws.closed

    async def send_audio(self, chunk: bytes) -> None:
        await self.ws.send_bytes(chunk)
        self.sent_bytes += len(chunk)

    async def end(self) -> None:
        self.stopped = True
        await self.ws.send_str(messages.stop_message())

    async def _read(self, text: str) -> Received | None:
        try:
            reply = messages.parse_reply(text)
        except ProtocolError as exc:
            return Received(text, [{"type": "error", "code": exc.code, "message": exc.message}])
        if isinstance(reply, messages.SttError):
            return Received(text, [{"type": "error", "code": "vendor_error", "message": reply.message}])
        event: Event = {
            "type": "transcript",
            "channel": reply.channel,
            "is_final": reply.is_final,
            "text": reply.text,
        }
        if reply.confidence is not None:
            event["confidence"] = reply.confidence
        return Received(text, [*self._started(), event])

    def _closed_by_route(self, code: int | None) -> Received | None:
        """The worker closes the socket (1000) once the call's last results went: its end."""
        if code != aiohttp.WSCloseCode.OK:
            return None
        audio_s = round(self.fmt.seconds(self.sent_bytes), 3)
        return Received(
            "", [*self._started(), {"type": "session_ended", "reason": "end", "audio_s": audio_s}]
        )


class JambonzStt(RouteProtocol):
    name: ClassVar[str] = "jambonz_stt"
    path: ClassVar[str] = "/v1/jambonz/transcribe"
    events_over_sse: ClassVar[bool] = False
    chunk_ms: ClassVar[int] = 20
    key_env: ClassVar[str] = "ASR_WORKER_TOKEN"
    key_hint: ClassVar[str] = "a key with stream scope (--api-key, or ASR_WORKER_TOKEN): the vendor's API key"

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return AudioFormat(Encoding.LINEAR16, highest_rate(fmt.sample_rate, messages.SAMPLE_RATES), 1)

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        query = {"interaction_id": call.interaction_id}
        if call.tenant_id:
            query["tenant_id"] = call.tenant_id
        url = call.route_url(self.path, query)
        ws = await http.ws_connect(url, headers=bearer_authorization(call.keys.api_key))
        await ws.send_str(messages.start_message(call.fmt.sample_rate, call_sid=str(uuid.uuid4())))
        return JambonzSttLeg(ws, call.fmt)


PROTOCOL: Final = JambonzStt()
