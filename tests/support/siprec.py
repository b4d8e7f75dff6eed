"""SIPREC and RTP for tests: sipp (Debian `sip-tester`) playing the scenario files under
`tests/transports/siprec/scenarios/`, RTP built into pcap files at test time (which sipp's
`play_pcap_audio` sends), and ffmpeg as a real RTP sender.

sipp plays a pcap's packets at their recorded times, each to the answered media port plus
its own destination port's offset from the capture's lowest one: a capture with stream 1 to
port 10000 and stream 2 to port 10002 reaches a call whose streams were answered on P and
P + 2, which is how the worker answers one call's streams (consecutive even ports).
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from asr_worker.transports.siprec import rtp

SCENARIOS = Path(__file__).resolve().parent.parent / "transports" / "siprec" / "scenarios"
CAPTURE_PORT = 10000  # stream N of a capture goes to CAPTURE_PORT + 2 * (N - 1)
FRAME_SAMPLES = 160  # 20 ms of 8 kHz G.711


def sipp_available() -> bool:
    return shutil.which("sipp") is not None


@dataclass(frozen=True)
class Packet:
    at_s: float  # when it is sent, from the capture's start
    stream: int  # 0, 1, ...: which of the call's streams (and so which port)
    data: bytes  # the RTP packet


def frames(audio: bytes, size: int = FRAME_SAMPLES) -> list[bytes]:
    """G.711 audio cut into 20 ms payloads (the last one padded with silence)."""
    out = [audio[i : i + size] for i in range(0, len(audio), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + b"\xff" * (size - len(out[-1]))
    return out


def stream_packets(
    audio: bytes,
    stream: int,
    *,
    ssrc: int,
    payload_type: int = 0,
    start_s: float = 0.0,
    first_seq: int = 1000,
    first_ts: int = 160_000,
) -> list[Packet]:
    """One stream's audio as RTP every 20 ms."""
    return [
        Packet(
            start_s + i * 0.02,
            stream,
            rtp.build(payload_type, first_seq + i, first_ts + i * FRAME_SAMPLES, ssrc, f),
        )
        for i, f in enumerate(frames(audio))
    ]


def dtmf_packets(
    digit: str, stream: int, *, ssrc: int, seq: int, ts: int, at_s: float, pt: int = 101
) -> list[Packet]:
    """One key press as RFC 4733 sends it: updates with growing durations, then the end three
    times, all with the event's timestamp."""
    event = rtp.EVENTS.index(digit)
    out = []
    for i, (duration, end) in enumerate(
        [(160, False), (320, False), (480, False), (640, True), (640, True), (640, True)]
    ):
        payload = bytes([event, (0x80 if end else 0) | 10]) + duration.to_bytes(2, "big")
        out.append(
            Packet(at_s + 0.02 * min(i, 3), stream, rtp.build(pt, seq + i, ts, ssrc, payload, marker=i == 0))
        )
    return out


def write_pcap(
    path: Path, packets: Iterable[Packet], src_ip: str = "127.0.0.1", dst_ip: str = "127.0.0.1"
) -> None:
    """A pcap (Ethernet, IPv4, UDP) of the packets in the order given; their times are kept as
    given too, so a packet listed before an earlier-timed one is sent reordered."""
    src, dst = bytes(int(x) for x in src_ip.split(".")), bytes(int(x) for x in dst_ip.split("."))
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for packet in packets:
            port = CAPTURE_PORT + 2 * packet.stream
            udp = struct.pack("!HHHH", 6000 + 2 * packet.stream, port, 8 + len(packet.data), 0) + packet.data
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
            ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
            frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
            seconds = int(packet.at_s)
            micros = round((packet.at_s - seconds) * 1_000_000)
            f.write(struct.pack("<IIII", seconds, micros, len(frame), len(frame)))
            f.write(frame)


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def render(name: str, target: Path, **values: str) -> Path:
    """A scenario of the repository with its `@NAME@` placeholders filled (the pcap files it
    plays, pauses), written to `target`."""
    text = (SCENARIOS / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key.upper()}@", value)
    left = re.findall(r"@[A-Z0-9_]+@", text)
    assert not left, f"unfilled placeholders in {name}: {left}"
    target.write_text(text)
    return target


@dataclass(frozen=True)
class SippRun:
    returncode: int
    output: str
    errors: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_sipp(
    scenario: Path,
    port: int,
    *,
    cwd: Path,
    calls: int = 1,
    transport: str = "u1",
    media_port: int | None = None,
    keys: dict[str, str] | None = None,
    timeout_s: float = 120.0,
) -> SippRun:
    """sipp against the worker's SIP port, `calls` calls at once; its exit status is 0 when
    every call went as the scenario says. Unexpected messages are traced to a file read back.
    sipp's own media sockets (which it binds though the captures are sent raw) take free ports."""
    media_port = media_port or free_media_ports()
    cmd = ["sipp", f"127.0.0.1:{port}", "-sf", str(scenario), "-m", str(calls), "-l", str(calls)]
    cmd += ["-r", str(calls), "-rp", "1000", "-t", transport, "-i", "127.0.0.1", "-mi", "127.0.0.1"]
    cmd += [
        "-mp",
        str(media_port),
        "-timeout",
        f"{int(timeout_s)}s",
        "-timeout_error",
        "-trace_err",
        "-nostdin",
    ]
    cmd += ["-max_socket", "4096"]
    for key, value in (keys or {}).items():
        cmd += ["-key", key, value]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s + 30, check=False)
    errors = "".join(p.read_text(errors="replace") for p in cwd.glob("*_errors.log"))
    return SippRun(done.returncode, done.stdout[-4000:] + done.stderr[-2000:], errors[-4000:])


def free_media_ports() -> int:
    """An even port with the three above it free too (sipp binds audio and video RTP pairs)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1]) & ~1
        held = []
        try:
            for port in range(base, base + 4):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no four free UDP ports in a row")


def ffmpeg_rtp(mulaw: Path, port: int) -> subprocess.CompletedProcess[bytes]:
    """ffmpeg sending raw 8 kHz mu-law as RTP (PCMU, 20 ms a packet) at real time to
    127.0.0.1:`port`, the bytes as they are, as Asterisk's externalMedia channel would."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-f", "mulaw", "-ar", "8000"]
    cmd += ["-ac", "1", "-i", str(mulaw), "-c:a", "copy", "-f", "rtp", f"rtp://127.0.0.1:{port}?pkt_size=172"]
    return subprocess.run(cmd, capture_output=True, timeout=120, check=False)


def shuffled(packets: list[Packet], swaps: Iterator[int]) -> list[Packet]:
    """The packets with each listed index swapped with the next (sent out of order)."""
    out = list(packets)
    for i in swaps:
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


def _call_audio(path: Path | None) -> tuple[bytes, bytes]:
    """(customer, agent) as 8 kHz mu-law: a WAV's left and right channels (a mono file is the
    customer's, the agent silent), or two seconds of noise each."""
    import numpy as np
    import soxr

    from asr_worker.core.audio import Encoding
    from asr_worker.core.codecs import encode_g711
    from asr_worker.tools.audio_files import read_audio

    if path is None:
        rng = np.random.default_rng(1)
        noise = rng.integers(0x10, 0x70, (2, 16000), dtype=np.uint8)
        return noise[0].tobytes(), noise[1].tobytes()
    audio = read_audio(path)
    samples = np.frombuffer(audio.data, dtype="<i2").reshape(-1, audio.fmt.channels).astype(np.float32)
    legs = [samples[:, 0], samples[:, 1] if audio.fmt.channels > 1 else np.zeros(len(samples), np.float32)]
    out = []
    for leg in legs:
        resampled = soxr.resample(leg, audio.fmt.sample_rate, 8000) if audio.fmt.sample_rate != 8000 else leg
        out.append(encode_g711(np.clip(resampled, -32768, 32767).astype(np.int16), Encoding.MULAW))
    return out[0], out[1]


def main() -> None:
    """`python -m tests.support.siprec [FILE] --port 5060`: one recorded session from sipp."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="play a WAV file to the worker as a SIPREC recorded session")
    parser.add_argument("file", nargs="?", type=Path)
    parser.add_argument("--port", type=int, default=5060, help="the worker's ASR_SIPREC_PORT")
    parser.add_argument("--calls", type=int, default=1)
    args = parser.parse_args()
    customer, agent = _call_audio(args.file)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        packets = stream_packets(customer, 0, ssrc=0xC1) + stream_packets(agent, 1, ssrc=0xA1)
        write_pcap(work / "call.pcap", sorted(packets, key=lambda p: p.at_s))
        pause = str(round(len(customer) / 8) + 500)
        scenario = render("siprec_short.xml", work / "call.xml", pcap="call.pcap", pause=pause)
        # the metadata says: label 1 (the first stream) is the customer's, label 2 the agent's
        keys = {"customer_stream": "c3RyZWFtLW9uZS0wMDAwMQ==", "agent_stream": "c3RyZWFtLXR3by0wMDAwMg=="}
        run = run_sipp(
            scenario, args.port, cwd=work, calls=args.calls, keys=keys, timeout_s=len(customer) / 8000 + 60
        )
    print(run.output if not run.ok else f"{args.calls} recorded session(s) played and ended with BYE")
    raise SystemExit(run.returncode)


if __name__ == "__main__":
    main()
