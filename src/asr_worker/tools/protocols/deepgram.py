"""`--protocol deepgram`: Deepgram's live protocol on `/v1/listen`, as a Deepgram client speaks
it, to `asr-worker dg-server` (its `ws://HOST:PORT`, 3002 by default) or any server that
speaks it: the file's format in the query (two channels with `multichannel=true`), interim
results and VAD events asked for, the key as `Authorization: Token KEY` (`--api-key`, or
DG_SERVER_API_KEY), raw audio at real time, then `CloseStream`. Its `Results`,
`SpeechStarted` and `UtteranceEnd` come back on this socket, then `Metadata` and a close."""

from __future__ import annotations

from typing import ClassVar, Final

import aiohttp

from ...core.audio import AudioFormat
from ...core.provider_events import SpeechStarted, StreamMetadata, TranscriptResult, UtteranceEnd
from ...deepgram import protocol as dg
from ...errors import ProtocolViolation
from .base import CallSpec, Event, Leg, Received, RouteProtocol, SocketLeg


class DeepgramLeg(SocketLeg):
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, fmt: AudioFormat) -> None:
        super().__init__(ws)
        self.fmt = fmt
        self.ended = False
        started: Event = {
            "type": "session_started",
            "encoding": str(fmt.encoding),
            "sample_rate": fmt.sample_rate,
        }
        self.opened = Received("", [started | {"channels": fmt.channels}])

    async def send_audio(self, chunk: bytes) -> None:
        await self.ws.send_bytes(chunk)

    async def end(self) -> None:
        await self.ws.send_str(dg.CLOSE_STREAM)

    async def _read(self, text: str) -> Received | None:
        try:
            message = dg.parse_server_message(text, self.fmt.channels)
        except ProtocolViolation as exc:
            return Received(text, [{"type": "error", "code": "bad_message", "message": str(exc)}])
        return Received(text, self._events(message))

    def _events(self, message: dg.ServerMessage | None) -> list[Event]:
        if isinstance(message, TranscriptResult):
            return [
                {
                    "type": "transcript",
                    "channel": message.channel,
                    "is_final": message.is_final,
                    "speech_final": message.speech_final,
                    "from_finalize": message.from_finalize,
                    "text": message.text,
                    "confidence": message.confidence,
                    "start": message.start,
                    "end": round(message.start + message.duration, 3),
                }
            ]
        if isinstance(message, SpeechStarted):
            return [{"type": "speech_started", "channel": message.channel, "timestamp": message.timestamp}]
        if isinstance(message, UtteranceEnd):
            return [
                {"type": "utterance_end", "channel": message.channel, "last_word_end": message.last_word_end}
            ]
        if isinstance(message, StreamMetadata):
            self.ended = True
            return [{"type": "session_ended", "reason": "CloseStream", "audio_s": message.duration}]
        if isinstance(message, dg.ServerError):
            return [{"type": "error", "code": message.variant or "Error", "message": message.description}]
        return []

    def _done(self) -> bool:
        return self.ended


class Deepgram(RouteProtocol):
    name: ClassVar[str] = "deepgram"
    path: ClassVar[str] = dg.LISTEN_PATH
    events_over_sse: ClassVar[bool] = False
    chunk_ms: ClassVar[int] = 20
    key_env: ClassVar[str] = "DG_SERVER_API_KEY"
    key_hint: ClassVar[str] = "the server's key (--api-key, or DG_SERVER_API_KEY)"

    def call_format(self, fmt: AudioFormat) -> AudioFormat:
        return fmt  # raw audio in any of its encodings, as it is

    async def open(self, http: aiohttp.ClientSession, call: CallSpec) -> Leg:
        params = dg.ListenParams(str(call.fmt.encoding), call.fmt.sample_rate, call.fmt.channels)
        headers = {"Authorization": f"Token {call.keys.api_key}"} if call.keys.api_key else {}
        ws = await http.ws_connect(call.route_url(self.path, params.query()), headers=headers)
        return DeepgramLeg(ws, call.fmt)


PROTOCOL: Final = Deepgram()
