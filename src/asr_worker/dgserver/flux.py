"""`/v2/listen`: Deepgram's Flux turn-taking API, served from dg-server's speech engine.

One connection is one engine stream: audio in, the engine's results into a `TurnTaker`
(`deepgram/flux_turns.py`, the decision of where turns start and end, on the audio's clock),
its TurnInfo out as Flux messages (`deepgram/flux.py`, the protocol as data). `Connected`
first; then every message numbered by `sequence_id`, sent in the order the decisions were
made: the reader (audio, Configure, ForceEndTurn) and the writer (the engine's results) both
queue what they decided and send it under one lock, and each waits for its messages to go
out before it reads on, so a client that stops reading holds up its own stream (TCP
backpressure) and nothing piles up here.

What is not valid protocol never ends the stream: an unparsable message or an unknown type
gets a `Warning` (UNPARSABLE_CLIENT_MESSAGE; Deepgram's own answer is its fatal Error), a bad
or unsupported Configure a `ConfigureFailure`; the stream goes on. The fatal `Error` is kept
for the engine failing, and the stream then closes 1011. The faults of `faults.py` strike
here as on `/v1/listen` (`connection.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from ..core.audio import AudioFormat
from ..core.call_options import CallOptions
from ..core.provider_events import SpeechStarted, TranscriptResult
from ..deepgram import flux, protocol
from ..deepgram.flux import FluxParams
from ..deepgram.flux_turns import Step, TurnTaker
from ..errors import ParamError, ProtocolError, ProviderError
from ..providers.base import KeytermUpdates, ProviderStream, StreamRequest
from .connection import ServedConnection, StreamRecord

if TYPE_CHECKING:
    from .server import DeepgramServer

log = logging.getLogger("asr_worker.dgserver")


@dataclass(kw_only=True)
class FluxRecord(StreamRecord):
    """What one accepted `/v2/listen` connection received and sent, and how it ended."""

    params: FluxParams

    def turn_events(self) -> list[str]:
        """The `event` of each TurnInfo sent but Updates, in order."""
        return [str(m["event"]) for m in self.sent_of("TurnInfo") if m["event"] != flux.UPDATE]


class FluxConnection(ServedConnection):
    def __init__(
        self, server: DeepgramServer, request: web.Request, ws: web.WebSocketResponse, record: FluxRecord
    ) -> None:
        self.params = record.params
        super().__init__(
            server, request, ws, record, AudioFormat.parse(self.params.encoding, self.params.sample_rate, 1)
        )
        self.flux_record = record
        self.turns = TurnTaker(self.params.thresholds)
        self.keyterms = self.params.keyterms
        self._sequence = 0
        self._outbox: deque[dict[str, object]] = deque()  # decided, not yet sent (see the module's notes)
        self._sending = asyncio.Lock()

    @property
    def now(self) -> float:
        """The stream's clock: seconds of audio received."""
        return self.fmt.seconds(self.record.bytes_received)

    async def run(self) -> None:
        request = StreamRequest(
            f"dg-flux-{self.record.request_id}", None, self.fmt, options=CallOptions(keyterms=self.keyterms)
        )
        try:
            stream = await self.server.provider.open(request)
        except ProviderError as exc:
            self._queue_notice("Error", flux.INTERNAL_SERVER_ERROR, exc.message)
            await self._flush()
            await self.close(protocol.CLOSE_INTERNAL, exc.message)
            return
        self._queue(flux.connected_message(self.record.request_id, self._next_sequence()))
        try:
            await self._flush()
            await self._pump(stream)
        finally:
            with contextlib.suppress(Exception):  # let go of it even when the first send failed
                await stream.abort()
            log.info(
                "flux stream ended",
                extra={
                    "request_id": self.record.request_id,
                    "audio_s": round(self.now, 3),
                    "turns": self.turns.turn_index,
                    "tags": list(self.params.tags),
                    "close_code": self.record.close_code,
                },
            )

    # --- input ------------------------------------------------------------------------------

    async def _read(self, stream: ProviderStream) -> None:
        loop = asyncio.get_running_loop()
        record, faults = self.record, self.server.faults
        async for msg in self.ws:
            self._last_input = loop.time()
            if msg.type is WSMsgType.BINARY:
                data: bytes = msg.data
                if not data:  # v1's legacy end-of-stream signal, taken here too
                    await self._close_stream(stream)
                    continue
                record.bytes_received += len(data)
                if record.record_audio:  # tests; a long-running server keeps nothing per message
                    record.messages.append(("audio", len(data)))
                    record.audio += data
                if await self._fault_due(faults, record.bytes_received):
                    return
                if self._stalled:
                    continue  # a server that stopped answering takes audio and does nothing with it
                try:
                    await stream.send_audio(data)
                except ProviderError:
                    return  # the writer sees the same failure from events() and closes
                self._decided(self.turns.audio(self.now))
                await self._flush()
            elif msg.type is WSMsgType.TEXT:
                if record.record_audio:
                    record.messages.append(("text", msg.data))
                if not self._stalled:
                    await self._text(msg.data, stream)
            else:
                return

    async def _text(self, text: str, stream: ProviderStream) -> None:
        try:
            message = flux.parse_client_message(text)
        except ProtocolError as exc:
            if exc.code == flux.INVALID_CONFIGURE:
                self._queue_notice("ConfigureFailure", exc.code, exc.message)
            else:
                self._queue_notice("Warning", exc.code, exc.message)
            await self._flush()
            return
        try:
            if isinstance(message, flux.CloseStream):
                await self._close_stream(stream)
            elif isinstance(message, flux.ForceEndTurn):
                step = self.turns.force_end(self.now)
                self._decided(step)
                await self._flush()
                if step.flush:
                    await stream.finalize()  # its final ends the turn, in the writer
            elif isinstance(message, flux.Configure):
                self._configure(message, stream)
                await self._flush()
        except ProviderError:
            pass  # the writer sees the failure from events() and closes

    async def _close_stream(self, stream: ProviderStream) -> None:
        if self._close_requested:
            return
        self._close_requested = True
        with contextlib.suppress(ProviderError):  # the writer sees it from events()
            await stream.close_stream()

    def _configure(self, message: flux.Configure, stream: ProviderStream) -> None:
        """Apply a Configure whole or not at all; answer ConfigureSuccess with every value now in
        force, or ConfigureFailure saying why."""
        reason = message.unsupported()
        try:
            thresholds = message.thresholds(self.turns.thresholds)
        except ParamError as exc:
            self._queue_notice("ConfigureFailure", flux.INVALID_CONFIGURE, exc.message)
            return
        keyterms = message.keyterms
        if reason is None and keyterms is not None and keyterms != self.keyterms:
            if isinstance(stream, KeytermUpdates) and stream.update_keyterms(keyterms):
                self.keyterms = keyterms
            else:  # nothing changed: the thresholds are not applied either
                reason = (
                    f"the {self.server.provider.name} engine behind this server takes no keyterms "
                    "(the local engine's Whisper does; its Moonshine does not)"
                )
        if reason is not None:
            self._queue_notice("ConfigureFailure", flux.UNSUPPORTED_SETTING, reason)
            return
        step = self.turns.configure(thresholds)
        self._queue(
            flux.configure_success_message(
                request_id=self.record.request_id,
                sequence_id=self._next_sequence(),
                thresholds=thresholds,
                keyterms=self.keyterms,
            )
        )
        self._decided(step)

    # --- output -----------------------------------------------------------------------------

    async def _write(self, stream: ProviderStream) -> None:
        try:
            async for event in stream.events():
                if isinstance(event, TranscriptResult) and event.channel == 0:
                    self._decided(self.turns.result(event, self.now))
                elif isinstance(event, SpeechStarted) and event.channel == 0:
                    self._decided(self.turns.speech_started(event.timestamp, self.now))
                else:
                    continue  # UtteranceEnd says what the final's speech_final said; Metadata: none in Flux
                await self._flush()
        except ProviderError as exc:
            self._queue_notice("Error", flux.INTERNAL_SERVER_ERROR, exc.message)
            await self._flush()
            await self.close(protocol.CLOSE_INTERNAL if exc.retryable else protocol.CLOSE_POLICY, exc.message)
            return
        if self._close_requested:
            self._decided(self.turns.close())
            await self._flush()
            await self.close(protocol.CLOSE_NORMAL, "")
        else:
            self._queue_notice("Error", flux.INTERNAL_SERVER_ERROR, "the speech engine ended the stream")
            await self._flush()
            await self.close(protocol.CLOSE_INTERNAL, "the speech engine ended the stream")

    def _decided(self, step: Step) -> None:
        for info in step.events:
            self._queue(
                flux.turn_info_message(
                    info, request_id=self.record.request_id, sequence_id=self._next_sequence()
                )
            )

    def _queue_notice(self, kind: str, code: str, description: str) -> None:
        sequence_id, request_id = self._next_sequence(), self.record.request_id
        if kind == "Error":
            message = flux.error_message(sequence_id=sequence_id, code=code, description=description)
        elif kind == "Warning":
            message = flux.warning_message(
                request_id=request_id, sequence_id=sequence_id, code=code, description=description
            )
        else:
            message = flux.configure_failure_message(
                request_id=request_id, sequence_id=sequence_id, code=code, description=description
            )
        self._queue(message)

    def _queue(self, message: dict[str, object]) -> None:
        self._outbox.append(message)

    def _next_sequence(self) -> int:
        sequence = self._sequence
        self._sequence += 1
        return sequence

    async def _flush(self) -> None:
        """Send what was decided, in the order it was decided."""
        async with self._sending:
            while self._outbox:
                await self._reply(self._outbox.popleft())
