"""Benchmark: the worker's CPU per call-second for calls that arrive over OpenAI's Realtime API
(`/v1/realtime?intent=transcription`), next to the same calls over the ingest WebSocket, both
into the Deepgram provider and a Deepgram-protocol sink (`bench.dg_sink`), as `bench.deepgram`
runs them.

    python -m bench.realtime --calls 100 --seconds 20

Three runs, each process on its own (the worker pinned to CPU 0, the harness to CPU 1):

1. ingest 8k: `bench.deepgram`'s worker run: 8 kHz linear16 in 20 ms binary frames;
2. ingest 24k: the same calls at 24 kHz (960-byte frames), the Realtime API's pcm16 rate;
3. realtime 24k: the same 24 kHz bytes as base64 `input_audio_buffer.append` events on
   `/v1/realtime` (GA session, server VAD, the results mapped to items and deltas).

Runs 2 and 3 carry the same audio, so their difference is the transport alone: base64 and
JSON per frame, and the conversation items made of the results.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .deepgram import Run, run_phase

PHASES = (("ingest 8k", "worker", 8000), ("ingest 24k", "worker", 24000), ("realtime 24k", "realtime", 24000))


def table(runs: dict[str, Run], calls: int) -> str:
    def ms(cores: float) -> str:
        return "n/a" if np.isnan(cores) else f"{cores / calls * 1000:.3f} ms"

    def pct(run: Run, q: float) -> str:
        return f"{np.percentile(run.latencies_ms, q):.1f} ms" if len(run.latencies_ms) else "n/a"

    rows = [("", *runs)]
    rows.append(("worker CPU per call-second", *(ms(r.cores) for r in runs.values())))
    rows.append(("worker cores for all calls", *(f"{r.cores:.2f}" for r in runs.values())))
    rows.append(
        (
            "  of which user / system",
            *(f"{r.user_cores:.2f} / {r.cores - r.user_cores:.2f}" for r in runs.values()),
        )
    )
    rows.append(("forward latency p50", *(pct(r, 50) for r in runs.values())))
    rows.append(("forward latency p99", *(pct(r, 99) for r in runs.values())))
    rows.append(("memory per call", *(f"{r.rss_per_call / 1024:.0f} KiB" for r in runs.values())))
    rows.append(("frames lost", *(str(r.missing_frames) for r in runs.values())))
    rows.append(
        ("driver / sink cores", *(f"{r.driver_cores:.2f} / {r.sink_cores:.2f}" for r in runs.values()))
    )
    rows.append(("other processes' cores", *(f"{r.other_cores:.2f}" for r in runs.values())))
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(width[i]) for i, c in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in width))
    base, rt = runs.get("ingest 24k"), runs.get("realtime 24k")
    if base is not None and rt is not None:
        lines += ["", f"realtime 24k / ingest 24k worker CPU: {rt.cores / base.cores:.2f}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the worker to CPU 0, the harness to CPU 1"
    )
    args = parser.parse_args()
    pinned = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    load_before = os.getloadavg()
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rt-") as tmp:
        for name, mode, rate in PHASES:
            print(f"running {name}: {args.calls} calls x {args.seconds:g} s ...", file=sys.stderr, flush=True)
            runs[name] = run_phase(mode, args.calls, args.seconds, Path(tmp), {}, pinned, rate)
    print(
        f"python -m bench.realtime --calls {args.calls} --seconds {args.seconds:g}"
        f"   (load average before: {load_before[0]:.2f}, {os.cpu_count()} cores"
        + (", the worker on CPU 0, the harness on CPU 1)" if pinned else ")")
    )
    print(table(runs, args.calls))


if __name__ == "__main__":
    main()
