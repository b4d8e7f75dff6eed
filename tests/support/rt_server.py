"""An OpenAI Realtime transcription server for the `openai` provider's tests: the worker's own
`/v1/realtime` (over the mock provider) behind a recording proxy that injects the faults a
real endpoint shows (a refused handshake, a drop without a close frame, a server that stops
completing items). All in-process, on free ports; tests read what each connection carried."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from asr_worker.providers.mock import MockOptions, MockProvider
from asr_worker.worker import Worker

from ..conftest import free_port, running_worker


@dataclass
class Faults:
    refuse_status: int = 0  # answer the handshake with this status ...
    refuse_connections: int = 0  # ... for this many connections (0: all)
    drop_after_bytes: int = 0  # abort the connection (no close frame) after this much audio ...
    stall_after_bytes: int = 0  # stop forwarding server events after this much audio ...
    drop_completed_after_bytes: int = 0  # stop forwarding `completed` events after this much audio ...
    fault_connections: int = 1  # ... on the first this many connections (0: all)


@dataclass
class Connection:
    headers: dict[str, str]
    audio: bytearray = field(default_factory=bytearray)
    client_events: list[dict[str, object]] = field(default_factory=list)
    server_events: list[dict[str, object]] = field(default_factory=list)
    ended_by: str = ""

    def of(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.server_events if e["type"] == kind]

    def sent(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.client_events if e["type"] == kind]


@dataclass
class RealtimeTestServer:
    upstream: Worker
    faults: Faults
    port: int = 0
    connections: list[Connection] = field(default_factory=list)
    refused: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _faulty(self, index: int, limit: int) -> bool:
        return limit == 0 or index < limit

    async def handle(self, request: web.Request) -> web.StreamResponse:
        index = len(self.connections) + self.refused
        if self.faults.refuse_status and self._faulty(self.refused, self.faults.refuse_connections):
            self.refused += 1
            return web.json_response(
                {"error": {"type": "invalid_request_error", "message": "refused by the test server"}},
                status=self.faults.refuse_status,
            )
        conn = Connection(dict(request.headers))
        self.connections.append(conn)
        faulty = self._faulty(index - self.refused, self.faults.fault_connections)
        ws = web.WebSocketResponse(max_msg_size=8 << 20)
        await ws.prepare(request)
        url = f"ws://127.0.0.1:{self.upstream.port}/v1/realtime?intent=transcription"
        async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=8 << 20) as up:

            async def downstream() -> None:
                async for msg in up:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break
                    stalled = (
                        faulty
                        and self.faults.stall_after_bytes
                        and len(conn.audio) >= self.faults.stall_after_bytes
                    )
                    swallowed = (
                        faulty
                        and self.faults.drop_completed_after_bytes
                        and len(conn.audio) >= self.faults.drop_completed_after_bytes
                        and msg.data.find('"conversation.item.input_audio_transcription.completed"') >= 0
                    )
                    if stalled or swallowed:
                        continue
                    conn.server_events.append(json.loads(msg.data))
                    await ws.send_str(msg.data)
                if not ws.closed:
                    conn.ended_by = conn.ended_by or "upstream"
                    await ws.close()

            async with asyncio.TaskGroup() as tg:
                pump = tg.create_task(downstream())
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break
                    event = json.loads(msg.data)
                    conn.client_events.append(event)
                    if event.get("type") == "input_audio_buffer.append":
                        conn.audio += base64.b64decode(str(event["audio"]))
                        if (
                            faulty
                            and self.faults.drop_after_bytes
                            and len(conn.audio) >= self.faults.drop_after_bytes
                        ):
                            conn.ended_by = "abort"
                            assert request.transport is not None
                            request.transport.abort()
                            break
                    await up.send_str(msg.data)
                conn.ended_by = conn.ended_by or "client"
                await up.close()
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
        return ws


@asynccontextmanager
async def running_rt_server(faults: Faults | None = None) -> AsyncIterator[RealtimeTestServer]:
    async with running_worker(MockProvider(MockOptions())) as upstream:
        server = RealtimeTestServer(upstream, faults or Faults())
        app = web.Application()
        app.router.add_get("/v1/realtime", server.handle)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        server.port = free_port()
        await web.TCPSite(runner, "127.0.0.1", server.port).start()
        try:
            yield server
        finally:
            await runner.cleanup()
