"""What a SIPREC call costs the worker, next to the same call over the ingest socket.

    .venv/bin/python -m bench.siprec [--calls 50] [--seconds 20]

One `asr-worker serve` process (mock provider, the recording server on) takes, in turn:

1. siprec: N recorded sessions from sipp at once, each a multipart INVITE, two RTP streams of
   20 ms G.711 packets (sipp sends them from a capture, as an SBC would), BYE;
2. ingest: the same N calls' audio as two-channel mu-law in 20 ms messages over the ingest
   WebSocket, at real time, from a driver process.

Printed: the worker's CPU seconds (user + system, from /proc) per second of call audio, over
each phase's whole run (sipp's and the driver's own CPU are theirs, not the worker's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from tests.support.siprec import render, run_sipp, stream_packets, write_pcap

from .common import proc_sample
from .deepgram import free_port


def _noise(seconds: float, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0x10, 0x70, round(seconds * 8000), dtype=np.uint8).tobytes()


def _wait_ready(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the worker did not become ready at {url}")


async def _ingest_calls(port: int, calls: int, stereo: bytes) -> None:
    import websockets

    async def call(i: int) -> None:
        url = f"ws://127.0.0.1:{port}/v1/audio/bench-{i}?encoding=mulaw&sample_rate=8000&channels=2"
        async with websockets.connect(url, max_size=None) as ws:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for n, at in enumerate(range(0, len(stereo), 320)):
                await ws.send(stereo[at : at + 320])
                await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))
            await ws.send('{"type": "end"}')
            async for _ in ws:
                pass

    async with asyncio.TaskGroup() as tg:
        for i in range(calls):
            tg.create_task(call(i))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--drive-ingest", nargs=2, metavar=("PORT", "AUDIO_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive_ingest:  # the driver process of phase 2
        port, audio = args.drive_ingest
        asyncio.run(_ingest_calls(int(port), args.calls, Path(audio).read_bytes()))
        return
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed (Debian sip-tester; scripts/system-packages.sh)")
    http_port, sip_port = free_port(), free_port()
    env = {**os.environ, "ASR_PROVIDER": "mock", "PORT": str(http_port), "ASR_SIPREC_PORT": str(sip_port)}
    env["ASR_MAX_SESSIONS"] = str(args.calls * 2)
    worker = subprocess.Popen(
        [sys.executable, "-m", "asr_worker", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[tuple[str, float, float]] = []
    try:
        _wait_ready(f"http://127.0.0.1:{http_port}/ready")
        customer, agent = _noise(args.seconds, 1), _noise(args.seconds, 2)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            packets = stream_packets(agent, 0, ssrc=0xA1) + stream_packets(customer, 1, ssrc=0xC1)
            write_pcap(work / "call.pcap", sorted(packets, key=lambda p: p.at_s))
            pause = str(round(args.seconds * 1000) + 500)
            scenario = render("siprec_short.xml", work / "call.xml", pcap="call.pcap", pause=pause)
            keys = {"agent_stream": "c3RyZWFtLW9uZS0wMDAwMQ==", "customer_stream": "c3RyZWFtLXR3by0wMDAwMg=="}
            before = proc_sample(worker.pid, time.monotonic())
            run = run_sipp(
                scenario, sip_port, cwd=work, calls=args.calls, keys=keys, timeout_s=args.seconds + 60
            )
            after = proc_sample(worker.pid, time.monotonic())
            if not run.ok:
                raise SystemExit(f"sipp failed:\n{run.output}\n{run.errors}")
            rows.append(("siprec (sipp, RTP)", after.cpu_s - before.cpu_s, after.at - before.at))
            stereo = np.stack(
                [np.frombuffer(customer, np.uint8), np.frombuffer(agent, np.uint8)], axis=1
            ).tobytes()
            (work / "stereo.ulaw").write_bytes(stereo)
            before = proc_sample(worker.pid, time.monotonic())
            driver = [sys.executable, "-m", "bench.siprec", "--calls", str(args.calls)]
            driver += ["--drive-ingest", str(http_port), str(work / "stereo.ulaw")]
            subprocess.run(driver, check=True, timeout=args.seconds + 120)
            after = proc_sample(worker.pid, time.monotonic())
            rows.append(("ingest socket (WebSocket)", after.cpu_s - before.cpu_s, after.at - before.at))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    call_seconds = args.calls * args.seconds
    print(f"{args.calls} calls of {args.seconds:g} s, two channels of 8 kHz G.711, mock provider")
    print(f"{'path':28} {'worker CPU s':>13} {'wall s':>8} {'CPU ms per call-second':>23}")
    for name, cpu_s, wall_s in rows:
        print(f"{name:28} {cpu_s:13.2f} {wall_s:8.1f} {cpu_s / call_seconds * 1000:23.2f}")


if __name__ == "__main__":
    main()
