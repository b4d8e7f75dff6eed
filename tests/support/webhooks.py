"""A webhook target for tests: an aiohttp server on a free loopback port that records every
request it is sent and answers each as a script says (a status, or `HANG`: never answer)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from asr_worker.credentials import Secret
from tests.conftest import free_port

HANG = "hang"
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()  # a test key, 32 bytes


def secret() -> Secret:
    return Secret(SECRET)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Target:
    port: int
    answers: list[int | str] = field(default_factory=list)  # in order; then 200
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # lets hanging requests go

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.path_qs, dict(request.headers), body))
        self.arrived.set()
        answer = self.answers[len(self.received) - 1] if len(self.received) <= len(self.answers) else 200
        if answer == HANG:
            await self.release.wait()
            return web.Response(status=200)
        assert isinstance(answer, int)
        return web.Response(status=answer, text="ok" if answer < 300 else "no")

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        async with asyncio.timeout(timeout_s):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received

    def of(self, kind: str) -> list[Received]:
        """Requests whose JSON body is of this `type` (`transcript.completed`, `transcript.final`)."""
        return [r for r in self.received if f'"type":"{kind}"'.encode() in r.body[:60]]


@contextlib.asynccontextmanager
async def webhook_target(answers: Sequence[int | str] = ()) -> AsyncIterator[Target]:
    """A target answering POSTs on any path until the block ends."""
    target = Target(free_port(), list(answers))
    app = web.Application()
    app.router.add_post("/{tail:.*}", target.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", target.port).start()
    try:
        yield target
    finally:
        target.release.set()
        await runner.cleanup()
