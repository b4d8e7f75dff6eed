"""The ingest socket served on the loop's transport (`ingest_raw`), over real sockets with a
client that writes its bytes by hand, where aiohttp's client would not (audio in the request's
packet, fragments, pings, never answering a close); and the router's other road, an upgrade on
a kept-alive connection, which aiohttp serves with the same call."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from asr_worker.config import settings_with
from asr_worker.core.events import SpeechStarted
from asr_worker.core.ids import CallKey
from asr_worker.credentials import Secret
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.transports import ingest_raw
from asr_worker.worker import Worker
from asr_worker.wsframes import MaskKeys, binary_frame
from tests.conftest import base_url, running_worker
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.client import connect

QUERY = "encoding=linear16&sample_rate=8000&channels=1"


class RawClient:
    """A WebSocket client on a plain TCP stream: websockets' sans-I/O client for framing."""

    def __init__(self, worker: Worker, path: str) -> None:
        self.port = worker.port
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{worker.port}{path}"))
        self.response: Response | None = None
        self.events: list[dict[str, object]] = []
        self.frames: list[Frame] = []
        self.eof = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self, *, with_request: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Connect and send the upgrade request, with `with_request` in the same write."""
        request = self.protocol.connect()
        for name, value in (headers or {}).items():
            request.headers[name] = value
        self.protocol.send_request(request)
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writer.write(b"".join(self.protocol.data_to_send()) + with_request)

    def write(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    def flush(self) -> None:
        self.write(b"".join(self.protocol.data_to_send()))

    async def read_until(self, done: object, timeout_s: float = 10.0, answer: bool = True) -> None:
        """Read and parse until `done()` is true or the server closes the TCP connection;
        `answer`: send what the protocol answers (pongs, the closing handshake)."""
        assert self._reader is not None and callable(done)
        async with asyncio.timeout(timeout_s):
            while not done():
                data = await self._reader.read(65536)
                if not data:
                    self.eof = True
                    self.protocol.receive_eof()
                    return
                self.protocol.receive_data(data)
                if answer:
                    self.flush()
                for event in self.protocol.events_received():
                    if isinstance(event, Response):
                        self.response = event
                    elif isinstance(event, Frame):
                        self.frames.append(event)
                        if event.opcode is Opcode.TEXT:
                            self.events.append(json.loads(bytes(event.data)))

    def of(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.events if e["type"] == kind]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def raw_frames(audio: bytes) -> bytes:
    keys = MaskKeys()
    return b"".join(binary_frame(chunk, keys.take()) for chunk in frames(audio))


async def test_audio_sent_in_the_requests_own_packet_reaches_the_call_byte_for_byte() -> None:
    provider = MockProvider()
    audio = speechlike(0.6)
    async with running_worker(provider) as worker:
        client = RawClient(worker, f"/v1/audio/eager?{QUERY}")
        await client.open(with_request=raw_frames(audio))
        await client.read_until(lambda: client.response is not None)
        client.protocol.send_text(json.dumps({"type": "end"}).encode())
        client.flush()
        await client.read_until(lambda: client.eof)
        client.close()
    assert client.response is not None and client.response.status_code == 101
    assert bytes(provider.streams[0].received) == audio
    words = [w for e in client.of("transcript") if e["is_final"] for w in str(e["text"]).split()]
    assert words == expected_words(audio, PCM8K)
    assert client.of("session_ended")[0]["reason"] == "end"


async def test_fragmented_messages_and_pings_are_served_like_whole_ones() -> None:
    provider = MockProvider()
    audio = speechlike(0.4)
    async with running_worker(provider) as worker:
        client = RawClient(worker, f"/v1/audio/fragments?{QUERY}")
        await client.open()
        await client.read_until(lambda: client.of("session_started"))
        half = len(audio) // 2
        client.protocol.send_binary(audio[:half], fin=False)
        client.protocol.send_ping(b"are you there")
        client.protocol.send_continuation(audio[half:], fin=True)
        client.protocol.send_text(b'{"type": ', fin=False)
        client.protocol.send_continuation(b'"end"}', fin=True)
        client.flush()
        await client.read_until(lambda: client.eof)
        client.close()
    pongs = [f for f in client.frames if f.opcode is Opcode.PONG]
    assert [bytes(f.data) for f in pongs] == [b"are you there"]
    assert bytes(provider.streams[0].received) == audio
    assert client.of("session_ended")[0]["reason"] == "end" and not client.of("error")


async def test_a_client_that_never_answers_the_close_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_raw, "CLOSE_TIMEOUT_S", 0.2)
    async with running_worker(MockProvider()) as worker:
        client = RawClient(worker, f"/v1/audio/deaf?{QUERY}")
        await client.open(with_request=raw_frames(speechlike(0.2)))
        await client.read_until(lambda: client.response is not None)
        client.protocol.send_text(b'{"type": "end"}')
        client.flush()
        # read the close frame, never answer it: the server drops the connection itself
        await client.read_until(lambda: client.eof, timeout_s=5, answer=False)
        client.close()
        assert worker.http_server is not None and worker.http_server.raw_connections == 0
    assert client.eof and client.of("session_ended")
    assert any(f.opcode is Opcode.CLOSE for f in client.frames)


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({"Authorization": "Bearer wrong-token"}, 401, "unauthorized"),
        ({"Sec-WebSocket-Version": "8"}, 426, "websocket_required"),
    ],
)
async def test_refused_upgrades_get_a_status_and_a_reason(
    headers: dict[str, str], status: int, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_worker(MockProvider(), worker_token=Secret("right-token")) as worker:
        token = "wrong-token" if status == 401 else "right-token"
        path = f"/v1/audio/refused?{QUERY}&token={token}"
        client = RawClient(worker, path)
        await client.open(headers=headers)
        assert client._reader is not None
        answer = await asyncio.wait_for(client._reader.read(), 10)
        client.close()
        assert worker.manager.sessions == []
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert json.loads(body)["error"] == error
    server_logs = "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in caplog.records if not r.name.startswith("websockets.client")
    )
    if status == 401:
        assert b"WWW-Authenticate: Bearer" in head
        assert "unauthorized" in server_logs
    assert "wrong-token" not in server_logs and "right-token" not in server_logs
    assert b"-token" not in answer


async def test_a_draining_worker_refuses_new_sockets_with_503() -> None:
    async with running_worker(MockProvider()) as worker:
        worker.draining = True
        client = RawClient(worker, f"/v1/audio/late?{QUERY}")
        await client.open()
        assert client._reader is not None
        answer = await asyncio.wait_for(client._reader.read(), 10)
        client.close()
        worker.draining = False
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "draining"


async def test_an_upgrade_on_a_kept_alive_connection_is_served_by_aiohttp_the_same_way() -> None:
    """aiohttp's client reuses an idle connection for ws_connect; the router gave that
    connection to aiohttp at its first request, so aiohttp's route serves the call."""
    provider = MockProvider()
    audio = speechlike(0.6)
    async with (
        running_worker(provider) as worker,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http,
    ):
        async with http.get(base_url(worker) + "/health") as response:
            assert response.status == 200
        call = await connect(http, worker, "reused")
        assert worker.http_server is not None and worker.http_server.raw_connections == 0
        await call.send_frames(frames(audio))
        await call.end()
        await call.collect()
    assert call.close_code == 1000 and call.final_words() == expected_words(audio, PCM8K)
    assert bytes(provider.streams_for("reused")[0].received) == audio


async def test_a_fresh_connection_is_served_on_the_raw_path(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    call = await connect(http, worker, "raw")
    await call.next_event("session_started")
    assert worker.http_server is not None and worker.http_server.raw_connections == 1
    await call.end()
    await call.collect()
    assert call.close_code == 1000


class RecordingTransport(asyncio.Transport):
    """What the protocol writes, one entry per write call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default


async def test_events_that_come_together_leave_in_one_write() -> None:
    worker = Worker(settings_with(port=0, provider="mock"), provider=MockProvider())
    transport = RecordingTransport()
    client = ClientProtocol(parse_uri(f"ws://127.0.0.1/v1/audio/batch?{QUERY}"))
    client.send_request(client.connect())
    async with worker.manager, asyncio.TaskGroup() as tg:
        protocol = ingest_raw.IngestProtocol(worker, tg.create_task, set())
        protocol.connection_made(transport)
        protocol.data_received(b"".join(client.data_to_send()))
        assert transport.writes[0].startswith(b"HTTP/1.1 101 ")
        await asyncio.sleep(0)  # the event sender is waiting
        client.receive_data(b"".join(transport.writes))  # the 101, session_started
        client.events_received()
        transport.writes.clear()
        for n in range(3):
            worker.hub.publish(SpeechStarted("batch", None, 100 + n, 0, n / 10, "mock", 0))
        await asyncio.sleep(0)
        assert len(transport.writes) == 1  # three frames, one system call
        client.receive_data(transport.writes[0])
        sent = [json.loads(bytes(e.data)) for e in client.events_received() if isinstance(e, Frame)]
        assert [e["seq"] for e in sent if e["type"] == "speech_started"] == [100, 101, 102]
        protocol.connection_lost(None)
        for runner in worker.manager.sessions:
            runner.abandon("test", "done")


async def test_a_request_that_arrives_a_byte_at_a_time_is_served_and_its_audio_reaches_the_call() -> None:
    provider = MockProvider()
    worker = Worker(settings_with(port=0, provider="mock"), provider=provider)
    transport = RecordingTransport()
    client = ClientProtocol(parse_uri(f"ws://127.0.0.1/v1/audio/slow?{QUERY}"))
    client.send_request(client.connect())
    audio = speechlike(0.2)
    stream = b"".join(client.data_to_send()) + raw_frames(audio)
    async with worker.manager, asyncio.TaskGroup() as tg:
        protocol = ingest_raw.IngestProtocol(worker, tg.create_task, set())
        protocol.connection_made(transport)
        for i in range(len(stream)):
            protocol.data_received(stream[i : i + 1])
        assert transport.writes[0].startswith(b"HTTP/1.1 101 ")
        runner = worker.manager.get(CallKey("default", "slow"))
        assert runner is not None and runner.core.audio_s == pytest.approx(0.2)
        protocol.connection_lost(None)
        runner.abandon("test", "done")


async def test_request_headers_over_the_cap_get_431_and_a_close() -> None:
    worker = Worker(settings_with(port=0, provider="mock"), provider=MockProvider())
    transport = RecordingTransport()
    protocol = ingest_raw.IngestProtocol(worker, asyncio.create_task, set())
    protocol.connection_made(transport)
    protocol.data_received(b"GET /v1/audio/big HTTP/1.1\r\nX-Filler: " + b"a" * ingest_raw.MAX_HEAD_BYTES)
    assert transport.writes and transport.writes[0].startswith(b"HTTP/1.1 431 ")
    assert transport.closed and worker.manager.sessions == []
