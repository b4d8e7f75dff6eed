"""What every dg-server connection shares, whichever of Deepgram's protocols it speaks (the live
results of `/v1/listen`, the Flux turns of `/v2/listen`): what it records for tests, the
faults that strike it, Deepgram's idle close, and how its replies go out (delayed, with
garbage between them, or not at all, as the faults say)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from ..core.audio import AudioFormat
from ..deepgram import protocol
from .faults import GARBAGE_MESSAGES, ConnectionFault, Faults

if TYPE_CHECKING:
    from ..providers.base import ProviderStream
    from .server import DeepgramServer


@dataclass(kw_only=True)
class StreamRecord:
    """What one accepted connection received and how it ended (each route's record adds what
    it made of the query, `params`)."""

    index: int
    request_id: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    record_audio: bool = True
    audio: bytearray = field(default_factory=bytearray)
    bytes_received: int = 0
    messages: list[tuple[str, object]] = field(default_factory=list)  # ("audio", n) / ("text", str)
    sent: list[str] = field(default_factory=list)  # text frames sent, in order
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str = ""  # "server", "client" or "abort"
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def texts(self) -> list[str]:
        return [m for kind, m in self.messages if kind == "text" and isinstance(m, str)]

    def control_types(self) -> list[str]:
        """The `type` of each text message received, in order."""
        out = []
        for text in self.texts:
            try:
                out.append(str(json.loads(text).get("type")))
            except (ValueError, AttributeError):
                out.append("<not json>")
        return out

    def sent_of(self, kind: str) -> list[dict[str, object]]:
        out = []
        for text in self.sent:
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("type") == kind:
                out.append(message)
        return out


class ServedConnection:
    """One accepted connection's common part; a route's connection adds its protocol."""

    def __init__(
        self,
        server: DeepgramServer,
        request: web.Request,
        ws: web.WebSocketResponse,
        record: StreamRecord,
        fmt: AudioFormat,
    ) -> None:
        self.server = server
        self.request = request
        self.ws = ws
        self.record = record
        self.fmt = fmt
        self._last_input = asyncio.get_running_loop().time()
        self._close_requested = False
        self._closed = False
        self._replies = 0
        # Under `fault_percent`, this connection's fault (drawn once); `_stalled`: it stopped
        # answering; `_slow_s`: every reply waits this long.
        self._planned: ConnectionFault | None = server.faults.draw()
        self._stalled = False
        self._slow_s = 0.0

    async def run(self) -> None:
        """Serve the connection until it ends, however it ends."""
        raise NotImplementedError

    async def _read(self, stream: ProviderStream) -> None:
        """The client's messages into the engine's stream, until the client stops or fails."""
        raise NotImplementedError

    async def _write(self, stream: ProviderStream) -> None:
        """The engine's events out to the client, then the close that fits how they ended."""
        raise NotImplementedError

    async def _pump(self, stream: ProviderStream) -> None:
        """Both directions of an open stream at once, with Deepgram's idle close, until the
        connection ends; then the engine's stream is let go and the record says who closed."""
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self._write(stream))
                idle = tg.create_task(self._idle_watch())
                await self._read(stream)
                idle.cancel()
                if not writer.done() and not (self._closed or self.ws.closed):
                    # The socket is open but the reader stopped (CloseStream, or the engine
                    # failed): the writer sends what is left, then closes with the right code.
                    await asyncio.wait({writer}, timeout=2.0)
                writer.cancel()
            if not (self._closed or self.ws.closed):
                await self.close(protocol.CLOSE_INTERNAL, "the speech engine stopped")
        finally:
            with contextlib.suppress(Exception):
                await stream.abort()
            if self.record.close_code is None:
                self.record.close_code = self.ws.close_code
                self.record.closed_by = self.record.closed_by or "client"

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.record.close_code, self.record.close_reason, self.record.closed_by = code, reason, "server"
        with contextlib.suppress(ConnectionError, RuntimeError):
            # A close reason fits in 123 bytes; cut on a character boundary.
            await self.ws.close(code=code, message=reason.encode()[:123].decode("utf-8", "ignore").encode())

    def abort(self) -> None:
        """End the TCP connection with no close frame, as a network fault does."""
        self._closed = True
        self.record.close_code, self.record.closed_by = protocol.CLOSE_ABNORMAL, "abort"
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    # --- faults -----------------------------------------------------------------------------

    async def _fault_due(self, faults: Faults, received: int) -> bool:
        """Apply the connection faults once enough audio arrived. True: the connection is gone."""
        ms = self.fmt.seconds(received) * 1000
        planned = self._planned
        if planned is not None:  # fault_percent: this connection's own fault, at its own point
            if ms < planned.after_ms:
                return False
            self._planned = None
            return await self._strike(planned.kind, faults)
        if faults.fault_percent or not faults.hits(self.record.index):
            return False
        if faults.drop_after_ms and ms >= faults.drop_after_ms:
            return await self._strike("drop", faults)
        if faults.close_1011_after_ms and ms >= faults.close_1011_after_ms:
            return await self._strike("close_1011", faults)
        if faults.close_1008_after_ms and ms >= faults.close_1008_after_ms:
            return await self._strike("close_1008", faults)
        if faults.stall_after_ms and ms >= faults.stall_after_ms and not self._stalled:
            return await self._strike("stall", faults)
        return False

    async def _strike(self, kind: str, faults: Faults) -> bool:
        """Apply one connection fault now. True: the connection is gone."""
        self.server.injected[kind] += 1
        if kind == "drop":
            self.abort()
        elif kind == "close_1011":
            await self.close(protocol.CLOSE_INTERNAL, protocol.NET0000_REASON)
        elif kind == "close_1008":
            await self.close(protocol.CLOSE_POLICY, protocol.DATA0000_REASON)
        elif kind == "stall":
            self._stalled = True  # from now on nothing is sent: no result, no Metadata, no close
            return False
        else:  # slow
            self._slow_s = faults.reply_delay_ms / 1000
            return False
        return True

    async def _idle_watch(self) -> None:
        """Deepgram's idle close; and, after CloseStream, a bound on the engine's last results."""
        loop = asyncio.get_running_loop()
        timeout = self.server.idle_timeout_s
        while not self._close_requested:
            remaining = self._last_input + timeout - loop.time()
            if remaining <= 0:
                await self.close(protocol.CLOSE_INTERNAL, protocol.NET0001_REASON)
                return
            await asyncio.sleep(remaining)
        await asyncio.sleep(timeout)  # the writer closes long before this, unless the engine hangs
        await self.close(protocol.CLOSE_INTERNAL, protocol.NET0000_REASON)

    # --- output -----------------------------------------------------------------------------

    async def _reply(self, message: dict[str, object]) -> None:
        if self._stalled:
            return
        faults = self.server.faults
        delay_s = self._slow_s if faults.fault_percent else faults.reply_delay_ms / 1000
        if delay_s:
            await asyncio.sleep(delay_s)
        self._replies += 1
        if faults.garbage_every and self._replies % faults.garbage_every == 0:
            garbage = GARBAGE_MESSAGES[(self._replies // faults.garbage_every) % len(GARBAGE_MESSAGES)]
            with contextlib.suppress(ConnectionError, RuntimeError):
                if isinstance(garbage, bytes):
                    await self.ws.send_bytes(garbage)
                else:
                    await self.ws.send_str(garbage)
        await self._send_json(message)

    async def _send_json(self, message: dict[str, object]) -> None:
        if self.ws.closed or self._stalled:
            return
        text = protocol.dumps(message)
        if self.record.record_audio:
            self.record.sent.append(text)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(text)
