"""SIPREC against a real SBC's dialogues, played by sipp from the scenario files beside this
test, with RTP from captures built here (the mock provider: speech is not the point; the
audio each channel receives is compared byte for byte with what each stream sent).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.events import CallEvent, Dtmf, SessionEnded
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockOptions, MockProvider
from asr_worker.transports.siprec.options import role_rules
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support import siprec
from tests.support.siprec import Packet, render, run_sipp, stream_packets, write_pcap

pytestmark = [
    pytest.mark.skipif(not siprec.sipp_available(), reason="sipp (Debian sip-tester) is not installed"),
    pytest.mark.timeout(180),
]

AGENT_STREAM = "c3RyZWFtLW9uZS0wMDAwMQ=="  # label 1, the offer's first stream
CUSTOMER_STREAM = "c3RyZWFtLXR3by0wMDAwMg=="  # label 2
ROLES = role_rules("agent=aor:sip:*@cc.example.com")
SESSION_ID = "hVpd7YQgRW2nD22h7q60JQ=="  # RFC 7865's example: the call is 855a5ded-8420-...
INTERACTION_ID = "855a5ded-8420-456d-a70f-6da1eeaeb425"


def noise(seconds: float, seed: int) -> bytes:
    """Loud mu-law noise (the mock provider hears words in it) with no silence code in it."""
    codes = np.random.default_rng(seed).integers(0x10, 0x70, round(seconds * 8000), dtype=np.uint8)
    return codes.tobytes()


def channels_of(audio: bytes) -> tuple[bytes, bytes]:
    return audio[0::2], audio[1::2]


def without_silence(channel: bytes) -> bytes:
    """A channel's audio with mu-law silence taken out (`noise` never makes that code)."""
    return channel.replace(b"\xff", b"")


async def watch(worker: Worker, until_ended: int) -> list[CallEvent]:
    """Every call event of the default tenant until `until_ended` calls have ended."""
    events: list[CallEvent] = []
    sub = worker.hub.subscribe_tenant("default")
    ended = 0
    try:
        while ended < until_ended:
            event = await sub.get()
            if isinstance(event, CallEvent):
                events.append(event)
                ended += isinstance(event, SessionEnded)
    finally:
        sub.close()
    return events


@pytest.fixture
def mock() -> MockProvider:
    return MockProvider(MockOptions())


@pytest.fixture
async def srs(mock: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(mock, siprec_port=0, siprec_roles=ROLES) as worker:
        yield worker


def sip_port(worker: Worker) -> int:
    port = worker.siprec.sip_port
    assert port is not None
    return port


async def test_a_recorded_session_with_hold_and_resume_gives_each_role_its_channel(
    srs: Worker, mock: MockProvider, tmp_path: Path
) -> None:
    agent = [noise(1.0, 1), noise(0.6, 2)]
    customer = [noise(1.0, 3), noise(0.6, 4)]
    first = stream_packets(agent[0], 0, ssrc=0xA1) + stream_packets(customer[0], 1, ssrc=0xC1)
    # the customer presses 5 after speaking: RFC 4733 events on the customer's stream
    first += siprec.dtmf_packets("5", 1, ssrc=0xC1, seq=1050, ts=160_000 + 8000, at_s=1.0)
    second = stream_packets(agent[1], 0, ssrc=0xA1, first_seq=1100) + stream_packets(
        customer[1], 1, ssrc=0xC1, first_seq=1100
    )
    write_pcap(tmp_path / "first.pcap", sorted(first, key=lambda p: p.at_s))
    write_pcap(tmp_path / "second.pcap", sorted(second, key=lambda p: p.at_s))
    scenario = render(
        "siprec_call.xml",
        tmp_path / "call.xml",
        pcap1="first.pcap",
        pause1="2000",
        pcap2="second.pcap",
        pause2="1500",
    )
    watching = asyncio.create_task(watch(srs, 1))
    keys = {"session_id": SESSION_ID, "agent_stream": AGENT_STREAM, "customer_stream": CUSTOMER_STREAM}
    run = await asyncio.to_thread(run_sipp, scenario, sip_port(srs), cwd=tmp_path, keys=keys)
    assert run.ok, run.output + run.errors
    events = await asyncio.wait_for(watching, 30)
    assert {e.interaction_id for e in events} == {INTERACTION_ID}
    ended = events[-1]
    assert isinstance(ended, SessionEnded) and ended.reason == "end"
    assert [(e.digit, e.channel) for e in events if isinstance(e, Dtmf)] == [("5", 0)]
    (stream,) = mock.streams_for(INTERACTION_ID)
    assert stream.request.fmt == AudioFormat(Encoding.MULAW, 8000, 2)
    left, right = channels_of(bytes(stream.received))
    # the metadata says the agent sends label 1 (the first stream): channel 1; the customer channel 0
    for part in customer:
        assert part in left
    for part in agent:
        assert part in right
    assert left.strip(b"\xff").startswith(customer[0]) and right.strip(b"\xff").startswith(agent[0])
    metrics = (await asyncio.to_thread(srs.metrics.render)).decode()
    assert 'asr_rtp_packets_total{outcome="lost"} 0.0' in metrics
    assert "asr_siprec_calls_active 0.0" in metrics and "asr_rtp_ports_in_use 0.0" in metrics


async def test_reordered_lost_and_duplicated_packets_and_a_new_ssrc(
    srs: Worker, mock: MockProvider, tmp_path: Path
) -> None:
    """Call time stays true (a lost packet is 20 ms of silence), no audio is repeated, and a
    stream whose source changes goes on."""
    audio = noise(1.2, 5)
    other = noise(1.2, 6)
    packets = stream_packets(audio[:4800], 1, ssrc=0xC1)  # 0.6 s, then a new source
    packets += stream_packets(audio[4800:], 1, ssrc=0xC2, first_seq=40_000, first_ts=5_000_000, start_s=0.6)
    lost = packets.pop(10)  # never arrives
    packets = siprec.shuffled(packets, iter([3, 20, 40]))  # three pairs swapped
    packets += [Packet(p.at_s + 0.005, p.stream, p.data) for p in packets[30:33]]  # sent twice
    packets += stream_packets(other, 0, ssrc=0xA1)
    write_pcap(tmp_path / "call.pcap", sorted(packets, key=lambda p: p.at_s))
    scenario = render("siprec_short.xml", tmp_path / "call.xml", pcap="call.pcap", pause="2000")
    watching = asyncio.create_task(watch(srs, 1))
    keys = {"agent_stream": AGENT_STREAM, "customer_stream": CUSTOMER_STREAM}
    run = await asyncio.to_thread(run_sipp, scenario, sip_port(srs), cwd=tmp_path, keys=keys)
    assert run.ok, run.output + run.errors
    events = await asyncio.wait_for(watching, 30)
    (stream,) = mock.streams_for(events[-1].interaction_id)
    left, _ = channels_of(bytes(stream.received))
    lost_at = 10 * 160
    expected = audio[:lost_at] + b"\xff" * 160 + audio[lost_at + 160 :]
    assert lost.at_s == pytest.approx(0.2)
    got = left.strip(b"\xff")
    assert got == expected.strip(b"\xff"), "each packet once, in order, the lost one silence"
    metrics = (await asyncio.to_thread(srs.metrics.render)).decode()
    assert 'asr_rtp_packets_total{outcome="lost"} 1.0' in metrics
    assert 'asr_rtp_packets_total{outcome="duplicates"} 3.0' in metrics
    assert "asr_rtp_ssrc_changes_total 1.0" in metrics


@pytest.mark.parametrize(
    ("case", "status"),
    [("codec", "488"), ("not_allowed", "403"), ("capacity", "503")],
)
async def test_refusals(case: str, status: str, mock: MockProvider, tmp_path: Path) -> None:
    formats, rtpmap = (
        ("18 9", "a=rtpmap:18 G729/8000\na=rtpmap:9 G722/8000") if case == "codec" else ("0", "")
    )
    overrides: dict[str, object] = {"siprec_port": 0}
    if case == "not_allowed":
        overrides["siprec_allow"] = siprec_networks("10.0.0.0/8")
    if case == "capacity":
        overrides["max_sessions"] = 1
    async with running_worker(mock, **overrides) as worker:
        if case == "capacity":
            busy = worker.manager.join(CallKey("default", "busy"), AudioFormat(Encoding.MULAW, 8000, 1))
        scenario = render(
            "refused.xml",
            tmp_path / "refused.xml",
            status=status,
            formats=formats,
            rtpmap=rtpmap or "a=ptime:20",
        )
        run = await asyncio.to_thread(run_sipp, scenario, sip_port(worker), cwd=tmp_path)
        assert run.ok, run.output + run.errors
        assert not worker.siprec.calls and worker.siprec.ports.in_use == 0
        if case == "capacity":
            busy.end("end")
            busy.leave()


def siprec_networks(text: str) -> object:
    from asr_worker.transports.siprec.options import networks

    return networks(text)


async def test_options_ping_is_answered(srs: Worker, tmp_path: Path) -> None:
    run = await asyncio.to_thread(run_sipp, siprec.SCENARIOS / "options.xml", sip_port(srs), cwd=tmp_path)
    assert run.ok, run.output + run.errors


async def test_fifty_concurrent_calls_lose_nothing(srs: Worker, mock: MockProvider, tmp_path: Path) -> None:
    calls = 50
    customer, agent = noise(1.0, 7), noise(1.0, 8)
    packets = stream_packets(agent, 0, ssrc=0xA1) + stream_packets(customer, 1, ssrc=0xC1)
    write_pcap(tmp_path / "call.pcap", sorted(packets, key=lambda p: p.at_s))
    scenario = render("siprec_short.xml", tmp_path / "call.xml", pcap="call.pcap", pause="1500")
    watching = asyncio.create_task(watch(srs, calls))
    keys = {"agent_stream": AGENT_STREAM, "customer_stream": CUSTOMER_STREAM}
    run = await asyncio.to_thread(run_sipp, scenario, sip_port(srs), cwd=tmp_path, calls=calls, keys=keys)
    assert run.ok, run.output + run.errors
    events = await asyncio.wait_for(watching, 60)
    ended = [e for e in events if isinstance(e, SessionEnded)]
    assert sorted(e.interaction_id for e in ended) == sorted(f"siprec-call-{n}" for n in range(1, calls + 1))
    assert all(e.reason == "end" for e in ended)
    assert not [e for e in events if e.type == "error"]
    for event in ended:
        (stream,) = mock.streams_for(event.interaction_id)
        left, right = channels_of(bytes(stream.received))
        # Each stream's every byte, once and in order. Silence may sit between them: when sipp,
        # sending fifty calls on a busy machine, lets one stream lag the other by more than the
        # interleaver's bound, the lagging channel is padded so the call keeps going in real time.
        assert without_silence(left) == customer and without_silence(right) == agent, event.interaction_id
    metrics = (await asyncio.to_thread(srs.metrics.render)).decode()
    assert f'asr_rtp_packets_total{{outcome="received"}} {calls * 100}.0' in metrics
    assert 'asr_rtp_packets_total{outcome="lost"} 0.0' in metrics
