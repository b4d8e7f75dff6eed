"""No connection holds the worker hostage, over real sockets: a head that never completes, a
socket that never speaks and a flood from one address are closed or refused within their
bounds while a valid client streams on; a client that floods pings or splits one message into
a byte a frame does not grow the worker's memory; a malformed request is one counted line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from pathlib import Path

import aiohttp
import pytest

from asr_worker.http.limits import ConnectionLimits
from asr_worker.http.options import HttpOptions
from asr_worker.providers.mock import MockProvider, expected_words
from tests.conftest import free_port, running_worker
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.cli import CLI
from tests.support.client import CallClient, connect
from tests.support.exposure import json_logs

TOKEN = "conn-token-31c2"
QUERY = "encoding=linear16&sample_rate=8000"


def _open(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    return sock


async def _closed_within(sock: socket.socket, timeout_s: float) -> bytes:
    """What the worker sent before it closed the connection (it must close it in time)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    received = b""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 4096)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /v1/au", b"GET /v1/audio/x HTTP/1.1\r\nHost: a\r\n", b"GET /health HTTP/1.1\r\nHost"],
    ids=["silent", "cut-request-line", "partial-raw-ingest-head", "partial-head"],
)
async def test_a_head_that_does_not_arrive_in_time_is_closed_with_408(sent: bytes) -> None:
    async with running_worker(MockProvider(), head_timeout_s=0.5) as worker:
        sock = _open(worker.port)
        sock.sendall(sent)
        answer = await _closed_within(sock, 10)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408")
        assert worker.limits.refused.labels("head_timeout")._value.get() == 1


@pytest.mark.parametrize("path", ["/v1/audio/quiet", "/v1/twilio", "/v1/exotel", "/v1/realtime"])
async def test_a_call_socket_that_says_nothing_is_closed(http: aiohttp.ClientSession, path: str) -> None:
    async with running_worker(MockProvider(), first_message_timeout_s=0.5) as worker:
        ws = await http.ws_connect(f"ws://127.0.0.1:{worker.port}{path}?{QUERY}")
        async with asyncio.timeout(10):
            async for _ in ws:
                pass
        assert ws.close_code == 1008
        assert worker.limits.refused.labels("first_message_timeout")._value.get() == 1


async def test_a_flood_from_one_address_is_refused_while_a_valid_client_streams(
    http: aiohttp.ClientSession,
) -> None:
    provider = MockProvider()
    async with running_worker(provider, max_connections_per_address=20, head_timeout_s=30) as worker:
        flood = [_open(worker.port, "127.0.0.2") for _ in range(30)]
        try:
            refused = 0
            for sock in flood[20:]:
                answer = await _closed_within(sock, 10)
                refused += answer.startswith(b"HTTP/1.1 503")
            assert refused == 10
            call = await connect(http, worker, "valid", QUERY)  # from 127.0.0.1: its own share
            audio = speechlike(0.8, PCM8K, seed=3)
            await call.send_frames(frames(audio))
            await call.end()
            await call.collect()
            assert call.final_words() == expected_words(audio, PCM8K)
            assert worker.limits.refused.labels("per_address")._value.get() == 10
        finally:
            for sock in flood:
                sock.close()


def test_new_connections_are_refused_within_the_fd_headroom() -> None:
    fds = [900]

    class Conn:
        def is_closing(self) -> bool:
            return False

    limits = ConnectionLimits(HttpOptions(fd_headroom=64), limit=1000, count_fds=lambda: fds[0])
    assert limits.per_address == (1000 - 64) // 4
    assert limits.admit("10.0.0.1", Conn()) is None
    fds[0] = 940
    limits._fds_at = float("-inf")  # the next look counts afresh
    assert limits.admit("10.0.0.2", Conn()) == "fd_headroom"


async def test_a_malformed_request_is_one_counted_line_without_its_query() -> None:
    with json_logs() as logs:
        async with running_worker(MockProvider()) as worker:
            for _ in range(5):
                sock = _open(worker.port)
                sock.sendall(b"GET /x?token=s3cr%65t-value HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
                assert (await _closed_within(sock, 10)).startswith(b"HTTP/1.0 400")
                sock.close()
            assert worker.limits.refused.labels("malformed_request")._value.get() == 5
    text = logs.getvalue()
    assert "Traceback" not in text and "s3cr" not in text
    assert text.count('"reason":"malformed_request"') == 1  # one line for the burst


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    head += bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _raw_upgrade(port: int, path: str) -> socket.socket:
    sock = _open(port)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
    )
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


# A worker process whose memory can be read: a flood must not grow it by more than this.
RSS_BOUND_KIB = 64 * 1024


async def test_a_ping_flood_and_a_message_in_one_byte_frames_leave_memory_bounded(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "worker.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        env={**os.environ, "PORT": str(port), "ASR_PROVIDER": "mock", "ASR_WORKER_TOKEN": TOKEN},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/health") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.05)
        before = _rss_kib(process.pid)
        # Pings, never reading the pongs: the worker stops reading once its writes back up.
        pinger = await _raw_upgrade(port, f"/v1/audio/pings?{QUERY}")
        pinger.setblocking(False)
        ping = _masked(0x9, b"x" * 125)
        sent = 0
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while sent < 200 * 1024 * 1024:
                    await loop.sock_sendall(pinger, ping * 256)
                    sent += len(ping) * 256
        # One message in one-byte frames: refused (1009) after a bounded number of them.
        splitter = await _raw_upgrade(port, f"/v1/audio/fragments?{QUERY}")
        first = _masked(0x2, b"\x00", fin=False)
        rest = _masked(0x0, b"\x00", fin=False)
        with contextlib.suppress(OSError):
            splitter.sendall(first + rest * 200_000)
        await asyncio.sleep(1.0)
        after = _rss_kib(process.pid)
        assert after - before < RSS_BOUND_KIB, (before, after)
        pinger.close()
        splitter.close()
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as response:
            assert response.status == 200  # and the worker is still serving
    finally:
        process.terminate()
        await process.wait()
        log.close()


async def test_a_key_holds_only_so_many_connections(http: aiohttp.ClientSession) -> None:
    async with running_worker(MockProvider(), max_connections_per_key=2) as worker:
        first = await connect(http, worker, "k-1", QUERY)
        second = await connect(http, worker, "k-2", QUERY)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect(http, worker, "k-3", QUERY)
        assert refused.value.status == 429
        await first.ws.close()
        third: CallClient | None = None
        async with asyncio.timeout(10):
            while third is None:  # room again once the worker has seen the first one go
                with contextlib.suppress(aiohttp.WSServerHandshakeError):
                    third = await connect(http, worker, "k-3", QUERY)
        await second.ws.close()
        await third.ws.close()
