"""Asterisk AudioSocket on its own TCP port: Asterisk's side played over a real TCP connection
(its messages as Asterisk's documentation and `res_audiosocket.h` define them), into a real
worker on the mock provider, watched over SSE."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.transports.forks import audiosocket_messages as asm
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, speechlike
from tests.support.telephony import open_sse, wait_until

SLIN8 = AudioFormat(Encoding.LINEAR16, 8000, 1)
SLIN16 = AudioFormat(Encoding.LINEAR16, 16000, 1)


@pytest.fixture
async def asterisk_worker(mock_provider: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(
        mock_provider, audiosocket_port=0, audiosocket_tenant="pbx-1", session_grace_s=120
    ) as worker:
        yield worker


@asynccontextmanager
async def asterisk(worker: Worker) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Asterisk's end of one AudioSocket connection, closed when the block ends."""
    assert worker.audiosocket.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", worker.audiosocket.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the worker sent until it closed the connection (a reset: nothing)."""
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""


def test_the_documented_messages() -> None:
    assert asm.hangup() == b"\x00\x00\x00"  # "Hangup indication, for instance, is 0x00 0x00 0x00"
    call = "40fa3c47-9d3c-4a4a-8f19-83b1c8d0e0a1"
    assert asm.call_id(call) == b"\x01\x00\x10" + uuid.UUID(call).bytes
    kind, length = asm.header(asm.call_id(call)[:3])
    assert (kind, length) == (0x01, 16) and asm.message(kind, uuid.UUID(call).bytes) == asm.CallId(call)
    assert asm.audio(b"\x01\x00" * 160) == b"\x10\x01\x40" + b"\x01\x00" * 160
    assert asm.audio(b"", 16000)[0] == 0x12 and asm.audio(b"", 48000)[0] == 0x16
    assert asm.message(0x03, b"5") == asm.Digit("5")
    assert asm.message(0xFF, b"\x02") == asm.AsteriskError(2)


async def test_a_call_from_the_dialplan_app_is_named_by_its_uuid_and_its_hangup_ends_it(
    asterisk_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    worker = asterisk_worker
    call = str(uuid.uuid4())
    watcher = await open_sse(http, worker, f"/v1/calls/{call}/events?tenant_id=pbx-1")
    audio = speechlike(1.5, SLIN8, seed=2)
    async with asterisk(worker) as (reader, writer):
        writer.write(asm.call_id(call))
        writer.write(asm.encode(asm.KIND_DTMF, b"5"))  # before any audio: no call yet to tell
        for frame in frames(audio, SLIN8):
            writer.write(asm.audio(frame))
        writer.write(asm.encode(asm.KIND_DTMF, b"#"))
        writer.write(asm.hangup())
        assert await closed(reader) == b""
        await watcher.rest()  # the hangup ended it, not the 120 s grace
        started = watcher.of("session_started")[0]
        assert (started["tenant_id"], started["sample_rate"], started["channels"]) == ("pbx-1", 8000, 1)
        assert watcher.of("session_ended")[0]["reason"] == "end" and not watcher.of("error")
        assert [d["digit"] for d in watcher.of("dtmf")] == ["#"]
        (stream,) = mock_provider.streams
        assert bytes(stream.received) == audio
        finals = [w for e in watcher.of("transcript") if e["is_final"] for w in str(e["text"]).split()]
        assert finals == expected_words(audio, SLIN8)


async def test_slin16_from_the_channel_driver_and_a_plain_close_ends_the_call(
    asterisk_worker: Worker, mock_provider: MockProvider
) -> None:
    call = str(uuid.uuid4())
    audio = speechlike(0.6, SLIN16, seed=3)
    async with asterisk(asterisk_worker) as (_, writer):
        writer.write(asm.call_id(call) + b"".join(asm.audio(f, 16000) for f in frames(audio, SLIN16)))
        await writer.drain()
        await wait_until(
            lambda: bool(mock_provider.streams) and len(mock_provider.streams[0].received) == len(audio)
        )
        writer.close()  # "socket closure is also sufficient"
        await wait_until(lambda: not asterisk_worker.manager.sessions)
        (stream,) = mock_provider.streams
        assert stream.request.fmt == SLIN16 and stream.request.interaction_id == call


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (asm.audio(b"\x00\x00" * 160), "the first message must be the call's UUID"),
        (b"\x01\x00", "the connection closed 2 bytes into a 3-byte header"),
        (asm.encode(asm.KIND_UUID, b"\x01" * 8), "a UUID message carries 16 bytes, not 8"),
        (asm.encode(0x42, b"?"), "unknown message kind 0x42"),
    ],
)
async def test_bad_input_before_the_call_gets_the_hangup_a_close_and_a_log_line(
    asterisk_worker: Worker, caplog: pytest.LogCaptureFixture, first: bytes, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.audiosocket")
    other = str(uuid.uuid4())
    async with asterisk(asterisk_worker) as (other_reader, other_writer):
        other_writer.write(asm.call_id(other) + asm.audio(b"\x01\x00" * 160))
        async with asterisk(asterisk_worker) as (reader, writer):
            writer.write(first)
            if len(first) < 3:
                writer.write_eof()
            sent = await closed(reader)
        assert sent in (asm.hangup(), b"")
        refusals = [r for r in caplog.records if r.getMessage() == "audiosocket refused"]
        assert len(refusals) == 1 and reason in str(refusals[0].__dict__["reason"])
        # the other call goes on
        other_writer.write(asm.audio(b"\x02\x00" * 160) + asm.hangup())
        assert await closed(other_reader) == b""
        await wait_until(lambda: not asterisk_worker.manager.sessions)


async def test_bad_messages_mid_call_are_error_events_and_a_truncated_one_ends_it(
    asterisk_worker: Worker, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.audiosocket")
    call = str(uuid.uuid4())
    watcher = await open_sse(http, asterisk_worker, f"/v1/calls/{call}/events?tenant_id=pbx-1")
    async with asterisk(asterisk_worker) as (reader, writer):
        writer.write(asm.call_id(call) + asm.audio(speechlike(0.2, SLIN8)))
        writer.write(asm.encode(0x42, b"what"))  # unknown kind
        writer.write(asm.audio(speechlike(0.02, SLIN16), 16000))  # another rate mid-call
        writer.write(asm.encode(0x17, b"\x00\x00" * 10))  # 96 kHz
        writer.write(asm.encode(asm.KIND_ERROR, b"\x02"))  # Asterisk's own error
        writer.write(asm.audio(speechlike(0.2, SLIN8, seed=2)))
        writer.write(b"\x10\x01")  # a header cut short, then the close
        writer.write_eof()
        assert await closed(reader) == b""
        await watcher.rest()
        assert [e["code"] for e in watcher.of("error")] == [
            "unknown_message",
            "bad_format",
            "bad_format",
            "platform_error",
            "bad_message",
        ]
        assert watcher.of("session_ended")[0]["reason"] == "end"
        assert (
            len([r for r in caplog.records if r.getMessage().startswith("audiosocket sent bad input")]) == 1
        )


async def test_an_address_off_the_allow_list_is_closed_unread_and_counted(
    mock_provider: MockProvider,
) -> None:
    async with (
        running_worker(
            mock_provider, audiosocket_port=0, audiosocket_allow=(ipaddress.ip_network("10.0.0.0/8"),)
        ) as worker,
        asterisk(worker) as (reader, writer),
    ):
        writer.write(asm.call_id(str(uuid.uuid4())) + asm.audio(b"\x00\x00" * 160))
        assert await closed(reader) == b""
        assert not mock_provider.streams
        refused = worker.metrics.registry.get_sample_value(
            "asr_connections_refused_total", {"reason": "audiosocket_not_allowed"}
        )
        assert refused == 1


async def test_without_a_port_there_is_no_listener(worker: Worker) -> None:
    assert worker.audiosocket.port is None
