"""An ingest client for tests: sends audio, collects events until the socket closes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import aiohttp

from asr_worker.worker import Worker

Event = dict[str, object]


@dataclass
class CallClient:
    ws: aiohttp.ClientWebSocketResponse
    events: list[Event] = field(default_factory=list)
    close_code: int | None = None

    async def send_frames(self, chunks: list[bytes], pace_s: float = 0.0) -> None:
        for chunk in chunks:
            await self.ws.send_bytes(chunk)
            if pace_s:
                await asyncio.sleep(pace_s)

    async def end(self) -> None:
        await self.ws.send_str(json.dumps({"type": "end"}))

    async def collect(self, timeout_s: float = 20.0) -> list[Event]:
        """Read events until the worker closes the socket."""
        async with asyncio.timeout(timeout_s):
            async for msg in self.ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.events.append(json.loads(msg.data))
        self.close_code = self.ws.close_code
        return self.events

    async def next_event(self, kind: str, timeout_s: float = 10.0) -> Event:
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await self.ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"socket ended before a {kind} event: {msg.type} {msg.data!r}")
                event: Event = json.loads(msg.data)
                self.events.append(event)
                if event["type"] == kind:
                    return event

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e["type"] == kind]

    def final_words(self) -> list[str]:
        return [w for e in self.of("transcript") if e["is_final"] for w in str(e["text"]).split()]


def audio_url(
    worker: Worker, interaction_id: str, query: str = "encoding=linear16&sample_rate=8000&channels=1"
) -> str:
    return f"ws://127.0.0.1:{worker.port}/v1/audio/{interaction_id}?{query}"


async def connect(
    http: aiohttp.ClientSession, worker: Worker, interaction_id: str, query: str | None = None
) -> CallClient:
    url = audio_url(worker, interaction_id) if query is None else audio_url(worker, interaction_id, query)
    return CallClient(await http.ws_connect(url))
