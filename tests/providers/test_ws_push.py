"""The guard on the one websockets internal the worker overrides (`providers/ws_push.py`): the
Deepgram client's connection hands messages to a callback as they are parsed, over a real
socket with the locked websockets: every message once and in order (fragmented, binary, or
queued before the callback was set), pings answered, and text that is not UTF-8 closes the
connection with 1007 as websockets' own reader does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from asr_worker.core.provider_events import ProviderEvent
from asr_worker.providers.base import StreamRequest
from asr_worker.providers.ws_push import PushingConnection
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.dg_server import deepgram_provider, running_dg_server

Script = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def server(script: Script) -> AsyncIterator[str]:
    """A server that plays `script` to each connection once the client says "go"."""

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await script(ws)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def test_every_message_reaches_the_callback_once_and_in_order() -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.send("a")
        await ws.send(["b", "c"])  # one message in two frames
        await ws.send(b"\x00\x01")
        await ws.ping()
        await ws.send("d")
        await ws.close()

    got: list[str | bytes] = []
    async with server(script) as url, connect(url, create_connection=PushingConnection) as conn:
        assert isinstance(conn, PushingConnection)
        assert conn.push_to(got.append)
        await conn.send("go")
        left = [message async for message in conn]  # ends at the close; nothing was queued
    assert got == ["a", "bc", b"\x00\x01", "d"]
    assert left == []


async def test_a_message_queued_before_the_callback_keeps_the_reader_in_charge() -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.send("early")
        await ws.recv()
        await ws.send("late")
        await ws.close()

    got: list[str | bytes] = []
    async with server(script) as url, connect(url, create_connection=PushingConnection) as conn:
        assert isinstance(conn, PushingConnection)
        await conn.send("go")
        assert await conn.recv() == "early"
        assert not conn.push_to(got.append)  # refused: one message already went to the queue
        await conn.send("more")
        assert await conn.recv() == "late"
    assert got == []


async def test_text_that_is_not_utf8_closes_with_1007() -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.send(b"\xff\xfe", text=True)

    got: list[str | bytes] = []
    async with server(script) as url, connect(url, create_connection=PushingConnection) as conn:
        assert isinstance(conn, PushingConnection)
        assert conn.push_to(got.append)
        await conn.send("go")
        await asyncio.wait_for(conn.wait_closed(), 5)
        sent = conn.protocol.close_sent
        assert sent is not None and sent.code == 1007  # what websockets' own recv would send
    assert got == []


async def test_a_deepgram_stream_pushes_results_and_a_failing_sink_ends_the_stream_with_its_error() -> None:
    request = StreamRequest("call-1", None, PCM8K)
    async with running_dg_server() as server:
        stream = await deepgram_provider(server).open(request)
        pushed: list[ProviderEvent] = []

        def sink(event: ProviderEvent) -> None:
            pushed.append(event)
            if len(pushed) == 2:
                raise RuntimeError("a bug in the session")

        assert stream.push_events_to(sink)
        reader = asyncio.create_task(anext(stream.events(), None))
        for frame in frames(speechlike(3.0)):
            assert stream.send_audio_now(frame)
        with pytest.raises(RuntimeError, match="a bug in the session"):
            await asyncio.wait_for(reader, 10)
    assert len(pushed) == 2  # and none after the sink failed
    conn = stream._conn
    assert isinstance(conn, PushingConnection)
    assert conn._sink is None  # the ended stream left no callback (and no cycle) behind
