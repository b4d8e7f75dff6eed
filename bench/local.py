"""Benchmark of the local engine: `python -m bench.local` (from the repository root).

1. Decode speed: real-time factor of the engine alone (one utterance at a time, and four in one
   batch), and of the whole pipeline (`transcribe`-style, a call fed as fast as it goes).
2. Capacity: a real worker (`asr-worker serve`, default settings, as its own process) takes N
   concurrent real-time calls over the ingest WebSocket, for N rising; each call plays espeak-ng
   telephone audio (8 kHz mu-law) at 1x in 20 ms frames: four sentences, call i starting at
   sentence i of ten, its start delayed by up to 5 s (independent calls do not all stop talking
   at the same instant; the same audio started together would be a worst-case burst). For each
   N: end-of-speech-to-final latency p50/p95/max (from the client sending the last sound of a
   sentence to receiving the final that covers it), word error rate, interims per utterance,
   and the engine's own mean decode RTF. N is sustained while p95 <= 1.5 s, no final is
   missing and WER stays within 10%; the ramp stops after the first N that is not.

3. Accuracy on recordings of people (`bench/local_accuracy.py`): streaming finals' word error
   rate at 8 kHz mu-law, 8 kHz linear16 and 16 kHz against faster-whisper on the whole file;
   then the mu-law recordings as real-time calls over each way a call arrives
   (`bench/local_calls.py`; `--paths ingest,twilio,dg`): the ingest WebSocket, Twilio Media
   Streams (events from the call's SSE stream) and `dg-server` through the official
   deepgram-sdk, each path's WER and finals latency; and where the VAD ends each utterance,
   from the end of its voice, with the engine's thresholds and with Silero's usual ones.

Prints tables. By default accuracy (about 7 minutes on 2 cores, of which the real-time calls
take some 80 s a path) and speed; `--parts capacity` runs the ramp (about 4 minutes). Needs
espeak-ng (Debian) for speed and capacity, pip (and apt-get, where there is one) for the
recordings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
from tests.support.speech import SENTENCES, CallAudio, Speech, word_error_rate

from asr_worker.config import Settings
from asr_worker.core.audio import Encoding
from asr_worker.engine.model import resolve_model
from asr_worker.engine.resample import SAMPLE_RATE
from asr_worker.engine.whisper import WhisperDecoder, WhisperOptions
from asr_worker.providers import local
from asr_worker.tools.audio_files import AudioFile
from asr_worker.tools.transcribe import transcribe_files

from .local_accuracy import accuracy
from .local_calls import PATHS, call_latencies, ingest_call, parse_paths, running

LATENCY_GOAL_S = 1.5
WER_GOAL = 0.10


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, rule, *body])


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# --- 1. decode speed ---------------------------------------------------------------------------


def decode_speed(speech: Speech, settings: Settings) -> str:
    engine = settings.of(local.SETTINGS)
    num_workers = engine.num_workers or max(1, os.cpu_count() or 1)
    options = WhisperOptions(
        resolve_model(engine.model), engine.compute_type, engine.cpu_threads, num_workers, engine.language
    )
    decoder = WhisperDecoder.load(options)
    clips = []
    for text in SENTENCES[:8]:
        call = speech.call([text], SAMPLE_RATE, lead_s=0.2, tail_s=0.3)
        clips.append((np.frombuffer(call.data, dtype="<i2") / 32768).astype(np.float32))
    decoder.decode_batch(clips[:1])  # warm up
    audio_s = sum(c.size for c in clips) / SAMPLE_RATE
    started = time.perf_counter()
    for clip in clips:
        decoder.decode_batch([clip])
    single = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(0, len(clips), 4):
        decoder.decode_batch(clips[i : i + 4])
    batched = time.perf_counter() - started
    rows = [
        ["engine, one utterance per decode", f"{audio_s:.1f}", f"{single:.2f}", f"{single / audio_s:.3f}"],
        ["engine, four utterances per batch", f"{audio_s:.1f}", f"{batched:.2f}", f"{batched / audio_s:.3f}"],
    ]
    call = speech.call(list(SENTENCES), 8000, Encoding.MULAW, gap_s=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        audio = AudioFile(Path(tmp) / "call.ulaw", call.fmt, call.data)
        started = time.perf_counter()
        with open(os.devnull, "w") as sink:
            asyncio.run(transcribe_files([audio], settings, out=sink, err=sink))
        whole = time.perf_counter() - started
    call_s = call.fmt.seconds(len(call.data))
    rows.append(
        [
            "whole pipeline, 8 kHz mu-law call as fast as it goes (incl. start)",
            f"{call_s:.1f}",
            f"{whole:.2f}",
            f"{whole / call_s:.3f}",
        ]
    )
    header = (
        f"model {options.model.rsplit('/', 1)[-1]}, {options.compute_type}, "
        f"{options.cpu_threads} thread(s) per decode, {options.num_workers} decoder(s)"
    )
    return header + "\n" + table(["what", "audio s", "wall s", "RTF"], rows)


# --- 2. capacity -------------------------------------------------------------------------------


async def scrape(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    """The engine's counters and histogram sums, by series name."""
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r"^(asr_local_[a-z_]+(?:_sum|_count|_total)(?:\{[^}]*\})?) ([0-9.e+-]+)$", text, re.M
        )
    }


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def rotated(speech: Speech, i: int, sentences: int) -> CallAudio:
    texts = [SENTENCES[(i + k) % len(SENTENCES)] for k in range(sentences)]
    return speech.call(texts, 8000, Encoding.MULAW, gap_s=1.0)


async def capacity(speech: Speech, steps: list[int], sentences: int, stagger_s: float) -> str:
    calls = [rotated(speech, i, sentences) for i in range(len(SENTENCES))]
    rows = []
    best = 0
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        running("serve", env={"ASR_MAX_SESSIONS": "1000"}) as port,
    ):
        rng = random.Random(4)
        for n in steps:
            before = await scrape(http, port)
            load_before = os.getloadavg()[0]
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(
                        ingest_call(
                            http, port, f"bench-{n}-{i}", calls[i % len(calls)], rng.uniform(0, stagger_s)
                        )
                    )
                    for i in range(n)
                ]
            runs = [t.result() for t in tasks]
            after = await scrape(http, port)
            played = [calls[i % len(calls)] for i in range(n)]
            latencies, missing = call_latencies(played, runs)
            wers = [word_error_rate(c.text, r.text) for c, r in zip(played, runs, strict=True)]
            p95 = percentile(latencies, 95)
            wer = statistics.mean(wers)
            ok = p95 <= LATENCY_GOAL_S and missing == 0 and wer <= WER_GOAL and all(r.ended for r in runs)
            decodes = delta(after, before, "asr_local_decode_rtf_count")
            mean_rtf = delta(after, before, "asr_local_decode_rtf_sum") / decodes if decodes else float("nan")
            final = '{kind="final"}'
            final_batches = delta(after, before, f"asr_local_decode_seconds_count{final}")
            final_s = delta(after, before, f"asr_local_decode_seconds_sum{final}") / max(1.0, final_batches)
            per_batch = delta(after, before, f"asr_local_decoded_utterances_total{final}") / max(
                1.0, final_batches
            )
            rows.append(
                [
                    str(n),
                    f"{percentile(latencies, 50):.2f}",
                    f"{p95:.2f}",
                    f"{max(latencies, default=float('nan')):.2f}",
                    str(missing),
                    f"{wer:.3f}",
                    f"{sum(r.interims for r in runs) / (n * sentences):.1f}",
                    f"{mean_rtf:.3f}",
                    f"{final_s:.2f} / {per_batch:.1f}",
                    f"{max(load_before, os.getloadavg()[0]):.1f}",
                    "yes" if ok else "NO",
                ]
            )
            print(table(HEADERS, rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
            if not ok:
                break
            best = n
    call_s = statistics.mean(c.fmt.seconds(len(c.data)) for c in calls)
    return (
        f"{sentences} sentences per call, {call_s:.1f} s of 8 kHz mu-law audio on average, real time, "
        f"20 ms frames, starts staggered over {stagger_s:g} s\n"
        + table(HEADERS, rows)
        + f"\n\nconcurrent real-time calls sustained (p95 <= {LATENCY_GOAL_S} s, none missing, "
        f"WER <= {WER_GOAL:.0%}): {best}"
    )


HEADERS = [
    "calls",
    "final p50 s",
    "final p95 s",
    "max s",
    "missing",
    "WER",
    "interims/utt",
    "decode RTF",
    "final batch s / size",
    "load",
    "sustained",
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="1,2,4,8,12,16,24,32,40", help="concurrent calls to try, in order")
    parser.add_argument("--sentences", type=int, default=4, help="sentences per call")
    parser.add_argument("--stagger-s", type=float, default=5.0, help="call starts spread over this long")
    parser.add_argument(
        "--parts",
        default="accuracy,speed",
        help="what to measure, of accuracy,speed,capacity (the capacity ramp takes about 4 minutes)",
    )
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help=f"accuracy: the real-time calls, by these of {','.join(PATHS)} (none: no real-time calls)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    steps = [int(s) for s in args.steps.split(",")]
    try:
        paths = [] if args.paths == "none" else parse_paths(args.paths)
    except ValueError as exc:
        parser.error(str(exc))
    settings = Settings()
    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}\n")
    if "accuracy" in parts:
        print(accuracy(settings, table, paths) + "\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        speech = Speech(Path(tmp))
        if "speed" in parts:
            print(
                "Decode speed (real-time factor: wall time / audio time)\n"
                + decode_speed(speech, settings)
                + "\n",
                flush=True,
            )
        if "capacity" in parts:
            print(
                "Concurrent real-time calls\n"
                + asyncio.run(capacity(speech, steps, args.sentences, args.stagger_s))
            )


if __name__ == "__main__":
    main()
