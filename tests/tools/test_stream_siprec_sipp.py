"""`stream --protocol siprec` against a recording server that is not the worker's own code: sipp
as the SRS (`tests/transports/siprec/scenarios/srs.xml`) checks the INVITE is a SIPREC one and
the ACK and BYE come in its dialog; the RTP goes to sockets of this test, which check every
packet: one SSRC a stream, sequence numbers and timestamps running on by one and by 160 from
the first (marked), PCMU, 20 ms each, the customer's audio and the agent's silence."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.tools.audio_files import AudioFile, convert
from asr_worker.tools.protocols.base import CallSpec, SipOptions
from asr_worker.tools.protocols.siprec import PROTOCOL
from asr_worker.tools.stream import Player
from asr_worker.transports.siprec import rtp
from tests.support import siprec
from tests.support.audio import PCM8K, speechlike
from tests.support.wait import until

pytestmark = [
    pytest.mark.skipif(not siprec.sipp_available(), reason="sipp (Debian sip-tester) is not installed"),
    pytest.mark.timeout(60),
]


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[rtp.RtpPacket] = []

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        packet = rtp.parse(data)
        assert packet is not None
        self.packets.append(packet)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def sipp_errors(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.glob("*_errors.log"))[-3000:]


def check_stream(packets: list[rtp.RtpPacket], audio: bytes) -> None:
    first = packets[0]
    assert first.marker and not any(p.marker for p in packets[1:])
    for i, packet in enumerate(packets):
        assert packet.ssrc == first.ssrc and packet.payload_type == 0
        assert packet.sequence == (first.sequence + i) & 0xFFFF
        assert packet.timestamp == (first.timestamp + 160 * i) & 0xFFFFFFFF
    assert all(len(p.payload) == 160 for p in packets[:-1])
    assert b"".join(p.payload for p in packets) == audio


async def test_a_recording_session_as_sipp_the_recording_server_reads_it(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    receivers = []
    for _ in range(2):
        transport, collect = await loop.create_datagram_endpoint(Collect, local_addr=("127.0.0.1", 0))
        receivers.append((transport, collect))
    rtp_ports = [int(t.get_extra_info("sockname")[1]) for t, _ in receivers]
    sip_port = free_udp_port()
    command = ["sipp", "-sf", str(siprec.SCENARIOS / "srs.xml"), "-i", "127.0.0.1", "-p", str(sip_port)]
    command += ["-mi", "127.0.0.1", "-mp", str(siprec.free_media_ports()), "-m", "1", "-t", "u1"]
    command += ["-key", "rtp_customer", str(rtp_ports[0]), "-key", "rtp_agent", str(rtp_ports[1])]
    command += ["-timeout", "30s", "-timeout_error", "-trace_err", "-nostdin"]
    sipp = await asyncio.create_subprocess_exec(
        *command, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await until(lambda: taken(sip_port))
        audio = AudioFile(Path("call.wav"), PCM8K, speechlike(0.5))
        played = convert(audio, PROTOCOL.call_format(audio.fmt))
        call = CallSpec("sipp-1", "ws://127.0.0.1:9", played.fmt, sip=SipOptions(sip_port))
        async with aiohttp.ClientSession() as http:
            leg = await PROTOCOL.open(http, call)
            try:
                await Player(played, PROTOCOL.chunk_ms, speed=0).play(leg)
                assert leg.closed  # the BYE was answered
            finally:
                await leg.close()
        out, err = await asyncio.wait_for(sipp.communicate(), 30)
    finally:
        if sipp.returncode is None:
            sipp.kill()
            await sipp.wait()
        for transport, _ in receivers:
            transport.close()
    assert sipp.returncode == 0, out.decode()[-3000:] + err.decode()[-2000:] + sipp_errors(tmp_path)
    assert played.fmt == AudioFormat(Encoding.MULAW, 8000, 1)
    (_, customer), (_, agent) = receivers
    check_stream(customer.packets, played.data)
    check_stream(agent.packets, b"\xff" * len(played.data))
    assert customer.packets[0].ssrc != agent.packets[0].ssrc
