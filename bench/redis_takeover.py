"""How long a dead worker's calls go unserved: kill -9 one of N workers on one Redis mid-call
and measure, per orphaned call, the time from the kill to the new owner's first event
(its resumed `session_started`) and to its first transcript. Also checks that every call's
final words came out complete (mock provider: words are a function of the audio).

    python -m bench.redis_takeover                      # ASR_CLAIM_IDLE_S 2, 5, 15
    python -m bench.redis_takeover --claim-idle-s 15 --workers 3 --calls 9

Needs `redis-server` on PATH (scripts/test.sh installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_worker.bus.redis.wire import redis_client, transcript_key
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.providers.mock import expected_words
from asr_worker.tools.audio_files import AudioFile
from asr_worker.tools.publish import publish_call

FMT = AudioFormat(Encoding.LINEAR16, 8000, 1)
Event = dict[str, object]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def speech(seconds: float, seed: int) -> AudioFile:
    rng = np.random.default_rng(seed)
    samples = rng.integers(-12000, 12000, size=round(seconds * FMT.sample_rate), dtype=np.int16)
    return AudioFile(Path(f"call-{seed}.wav"), FMT, samples.astype("<i2").tobytes())


async def events_of(url: str, iid: str) -> list[Event]:
    r = redis_client(url)
    try:
        raw: object = await r.xrange(transcript_key(iid))
    finally:
        await r.aclose()
    out: list[Event] = []
    for _, fields in raw if isinstance(raw, list) else []:
        out.append(json.loads(fields[b"data"]))
    return out


@dataclass
class Row:
    claim_idle_s: float
    moved: int
    takeover_s: list[float]
    first_transcript_s: list[float]
    complete: str


async def run_once(claim_idle_s: float, workers: int, calls: int, workdir: Path) -> Row:
    port = free_port()
    redis_dir = workdir / f"redis-{claim_idle_s:g}"
    redis_dir.mkdir()
    server = await asyncio.create_subprocess_exec(
        *("redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(redis_dir)),
        stdout=asyncio.subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    procs: list[tuple[asyncio.subprocess.Process, Path]] = []
    try:
        await asyncio.sleep(0.3)
        for i in range(workers):
            log = workdir / f"worker-{claim_idle_s:g}-{i}.log"
            env = {
                **os.environ,
                "PORT": "0",
                "ASR_PROVIDER": "mock",
                "PUBSUB_ADAPTER": "redis_streams",
                "REDIS_URL": url,
                "ASR_CLAIM_IDLE_S": str(claim_idle_s),
            }
            with log.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "asr_worker", "serve", env=env, stderr=err
                )
            procs.append((proc, log))
        await asyncio.sleep(2.0)  # the workers connect
        call_s = claim_idle_s + 8.0
        audio = {f"bench-{claim_idle_s:g}-{i}": speech(call_s, seed=i) for i in range(calls)}
        async with asyncio.TaskGroup() as tg:
            for iid, a in audio.items():
                tg.create_task(publish_call(a, url, iid, speed=1))
            await asyncio.sleep(3.0)  # mid-call
            owners = {str(p[0].pid): taken(p[1]) for p in procs}
            victim = max(procs, key=lambda p: len(owners[str(p[0].pid)]))
            orphans = owners[str(victim[0].pid)]
            killed_at_ms = time.time_ns() // 1_000_000
            victim[0].send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 60
        done: dict[str, list[Event]] = {}
        while len(done) < len(audio) and time.monotonic() < deadline:
            for iid in audio:
                events = await events_of(url, iid)
                if any(e["type"] == "session_ended" for e in events):
                    done[iid] = events
            await asyncio.sleep(0.2)
    finally:
        for proc, _ in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        server.kill()
        await server.wait()
    takeover, first_transcript = [], []
    complete = 0
    for iid, events in done.items():
        finals = [
            w for e in events if e["type"] == "transcript" and e["is_final"] for w in str(e["text"]).split()
        ]
        complete += finals == expected_words(audio[iid].data, FMT)
        if iid not in orphans:
            continue
        resumed = next(i for i, e in enumerate(events) if e["type"] == "session_started" and e.get("resumed"))
        takeover.append((int(str(events[resumed]["timestamp_ms"])) - killed_at_ms) / 1000)
        after = next(e for e in events[resumed:] if e["type"] == "transcript")
        first_transcript.append((int(str(after["timestamp_ms"])) - killed_at_ms) / 1000)
    return Row(claim_idle_s, len(orphans), sorted(takeover), first_transcript, f"{complete}/{len(audio)}")


def taken(log: Path) -> list[str]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == "call taken":
                out.append(str(entry["interaction_id"]))
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claim-idle-s", type=float, nargs="+", default=[2.0, 5.0, 15.0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--calls", type=int, default=6)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (scripts/test.sh installs it)", file=sys.stderr)
        return 2
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for claim_idle_s in args.claim_idle_s:
            rows.append(await run_once(claim_idle_s, args.workers, args.calls, Path(tmp)))
    print(f"\nkill -9 of 1 of {args.workers} workers, {args.calls} calls at real time (mock provider)\n")
    print(
        "| ASR_CLAIM_IDLE_S | calls moved | kill to new owner's first event, s (min / median / max) "
        "| kill to first transcript, s (max) | calls with every word |"
    )
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        t = row.takeover_s
        span = f"{t[0]:.2f} / {statistics.median(t):.2f} / {t[-1]:.2f}" if t else "-"
        first = max(row.first_transcript_s, default=0.0)
        print(f"| {row.claim_idle_s:g} | {row.moved} | {span} | {first:.2f} | {row.complete} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
