"""The recording server over its sockets without sipp: a CANCEL read with its INVITE (one
TCP write) stops it before it is answered; Asterisk's externalMedia, with ffmpeg as the real
RTP sender."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from asr_worker.core.events import SessionEnded
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockOptions, MockProvider
from asr_worker.transports.siprec import sip
from tests.conftest import running_worker
from tests.support.siprec import ffmpeg_rtp
from tests.support.telephony import wait_until

pytestmark = pytest.mark.timeout(60)

SDP = (
    b"v=0\r\no=SBC 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 0\r\na=label:1\r\na=sendonly\r\n"
    b"m=audio 30002 RTP/AVP 0\r\na=label:2\r\na=sendonly\r\n"
)


def request(method: str, cseq_method: str | None = None, body: bytes = b"") -> bytes:
    head = (
        f"{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-cancel-1\r\n"
        "From: <sip:src@127.0.0.1>;tag=src\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: cancelled-1\r\n"
        f"CSeq: 1 {cseq_method or method}\r\nMax-Forwards: 70\r\n"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def test_cancel_before_the_answer_ends_the_invite_and_starts_no_call() -> None:
    async with running_worker(MockProvider(MockOptions()), siprec_port=0) as worker:
        port = worker.siprec.sip_port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("INVITE", body=SDP) + request("CANCEL"))
        framer = sip.StreamFramer()
        statuses: list[tuple[int, str]] = []
        async with asyncio.timeout(10):
            while len(statuses) < 3:
                for data in framer.push(await reader.read(65536)):
                    message = sip.parse(data)
                    assert isinstance(message, sip.Response)
                    statuses.append((message.status, message.cseq.method))
        assert sorted(statuses) == [(100, "INVITE"), (200, "CANCEL"), (487, "INVITE")]
        writer.write(request("ACK", body=b""))
        await writer.drain()
        assert not worker.siprec.calls and worker.siprec.ports.in_use == 0
        assert worker.manager.sessions == []
        writer.close()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
async def test_external_media_takes_rtp_from_ffmpeg_as_a_call(tmp_path: Path) -> None:
    mock = MockProvider(MockOptions())
    audio = np.random.default_rng(3).integers(0x10, 0x70, 8000 * 2, dtype=np.uint8).tobytes()
    (tmp_path / "call.ulaw").write_bytes(audio)
    async with running_worker(mock) as worker, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{worker.port}/v1/rtp"
        async with http.post(f"{base}/ext-1?format=ulaw") as response:
            assert response.status == 201
            body = await response.json()
        assert body["host"] == "127.0.0.1" and body["external_host"] == f"127.0.0.1:{body['port']}"
        async with http.post(f"{base}/ext-1") as again:
            assert again.status == 409
        sub = worker.hub.subscribe(CallKey("default", "ext-1"))
        sent = await asyncio.to_thread(ffmpeg_rtp, tmp_path / "call.ulaw", int(body["port"]))
        assert sent.returncode == 0, sent.stderr.decode()
        (stream,) = mock.streams_for("ext-1")
        await wait_until(lambda: len(stream.received) >= len(audio), 10)
        async with http.delete(f"{base}/ext-1") as ended:
            assert ended.status == 200
        async with asyncio.timeout(10):
            while not isinstance(event := await sub.get(), SessionEnded):
                pass
        assert event.reason == "end"
        assert bytes(stream.received) == audio  # every byte, in order, once
        assert worker.siprec.ports.in_use == 0
        async with http.delete(f"{base}/ext-1") as gone:
            assert gone.status == 404


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_sip_over_tls_answers_an_options_ping(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(cert),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await made.wait() == 0
    overrides = {
        "siprec_port": 0,
        "siprec_tls_port": 0,
        "siprec_tls_cert": str(cert),
        "siprec_tls_key": str(key),
    }
    async with running_worker(MockProvider(MockOptions()), **overrides) as worker:
        port = worker.siprec.tls_port
        assert port is not None
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        writer.write(request("OPTIONS").replace(b"SIP/2.0/TCP", b"SIP/2.0/TLS"))
        framer = sip.StreamFramer()
        async with asyncio.timeout(10):
            while not (found := framer.push(await reader.read(65536))):
                pass
        response = sip.parse(found[0])
        assert isinstance(response, sip.Response) and response.status == 200
        assert "application/rs-metadata+xml" in (response.headers.get("Accept") or "")
        writer.close()
