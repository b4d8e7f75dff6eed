"""Benchmark of the local engine: `python -m bench.local` (from the repository root).

1. Decode speed: real-time factor of the engine alone (one utterance at a time, and four in one
   batch), and of the whole pipeline (`transcribe`-style, a call fed as fast as it goes).
2. Capacity: a real worker (`asr-worker serve`, default settings but admission off, as its own
   process) takes N concurrent real-time contact-centre calls over the ingest WebSocket, for N
   rising: two legs of 8 kHz mu-law taking turns, utterances of people and of Piper's natural
   voice (`bench/conversations.py`), 20 ms frames at 1x, starts spread over 5 s. For each N:
   calls per core, end-of-speech-to-final latency p50/p95/max, finals missing, WER on the
   people and on the synthetic voice, the share of utterances of 2 s or more that got an
   interim before their final, the decode CPU per second of audio (finals, and all decodes),
   the worker's CPU per call-second, its RSS per call, and what the engine itself measures it
   can carry. N is sustained while p95 <= 1.5 s, no final is missing, every call ends cleanly
   and 75% of long utterances get an interim; the ramp stops after the first N that is not.
   `--parts burst`: twice the calls the engine says it carries, offered within 2 s with
   admission on: how many it admits, what the rest are told, and the admitted calls' latency.

3. Accuracy on recordings of people (`bench/local_accuracy.py`): streaming finals' word error
   rate at 8 kHz mu-law, 8 kHz linear16 and 16 kHz against faster-whisper on the whole file;
   then the mu-law recordings as real-time calls over each way a call arrives
   (`bench/local_calls.py`; `--paths ingest,twilio,dg`): the ingest WebSocket, Twilio Media
   Streams (events from the call's SSE stream) and `dg-server` through the official
   deepgram-sdk, each path's WER and finals latency; and where the VAD ends each utterance,
   from the end of its voice, with the engine's thresholds and with Silero's usual ones.

4. Languages (`bench/local_languages.py`, `--parts languages`): a call in each of English,
   Spanish, French and German (espeak-ng's voices, 8 kHz mu-law) into a real `serve` at 1x,
   with its language named and with `language=multi`: the engine, the WER, how many finals
   were detected in the call's language, and the decode cost per audio second (about 6
   minutes; alone: `python -m bench.local_languages`).

Prints tables. By default accuracy (about 7 minutes on 2 cores, of which the real-time calls
take some 80 s a path) and speed; `--parts capacity` runs the ramp (about a minute a step).
`ASR_LOCAL_ENGINE=whisper` measures Whisper. Needs espeak-ng (Debian) for speed, the test
install (Piper) and pip (and apt-get, where there is one) for the recordings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from tests.support.speech import SENTENCES, Speech

from asr_worker.config import Settings, load_settings
from asr_worker.core.audio import Encoding
from asr_worker.engine.capacity import CapacityModel
from asr_worker.engine.decoding import DecoderSettings
from asr_worker.engine.engines import EngineSet
from asr_worker.engine.languages import call_language
from asr_worker.engine.resample import SAMPLE_RATE
from asr_worker.providers import local
from asr_worker.tools.audio_files import AudioFile
from asr_worker.tools.transcribe import transcribe_files

from .common import proc_sample
from .conversations import LONG_S, Utterance, conversation, judge, play_call, pools
from .local_accuracy import accuracy
from .local_calls import PATHS, parse_paths, running

LATENCY_GOAL_S = 1.5
INTERIM_GOAL = 0.75


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
    options = settings.of(local.SETTINGS)
    num_workers = options.num_workers or max(1, os.cpu_count() or 1)
    engines, language = (
        EngineSet.configured(options.engine, options.model),
        call_language(None, options.language),
    )
    engine = engines.for_code(language.code) if language.code is not None else engines.detector
    assert engine is not None, f"no engine transcribes {options.language}"
    loading = DecoderSettings(options.model, options.compute_type, options.cpu_threads, num_workers)
    decoder = engine.load(loading)
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
        f"engine {engine.name} ({engine.describe(loading)}), {options.cpu_threads} thread(s) per "
        f"decode, {num_workers} decoder(s)"
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


async def gauge(http: aiohttp.ClientSession, port: int, name: str) -> float:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def _pid_on(port: int) -> int | None:
    """The pid of the process listening on this loopback port (the worker under test)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inode = cols[9]
    if inode is None:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
    return None


async def capacity(steps: list[int], turns: int, stagger_s: float, engine: str) -> str:
    pool = pools()
    calls = [conversation(i, turns, pool) for i in range(max(steps))]
    rows = []
    best = 0
    env = {"ASR_MAX_SESSIONS": "1000", "ASR_LOCAL_ENGINE": engine, "ASR_LOCAL_CAPACITY": "1000"}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        running("serve", env=env) as port,
    ):
        pid = _pid_on(port)
        idle_rss = proc_sample(pid, time.monotonic()).rss_bytes if pid else 0
        rng = random.Random(4)
        for n in steps:
            before = await scrape(http, port)
            cpu_before = proc_sample(pid, time.monotonic()) if pid else None
            load_before = os.getloadavg()[0]
            peak_rss = 0

            async def watch_rss() -> None:
                nonlocal peak_rss
                while pid:
                    peak_rss = max(peak_rss, proc_sample(pid, time.monotonic()).rss_bytes)
                    await asyncio.sleep(1.0)

            async with asyncio.TaskGroup() as tg:
                watcher = tg.create_task(watch_rss())
                tasks = [
                    tg.create_task(
                        play_call(http, port, f"bench-{n}-{i}", calls[i], rng.uniform(0, stagger_s))
                    )
                    for i in range(n)
                ]
                await asyncio.wait(tasks)
                watcher.cancel()
            cpu_after = proc_sample(pid, time.monotonic()) if pid else None
            after = await scrape(http, port)
            cost = await gauge(http, port, "asr_local_decode_cost")  # admission is off here: the figure
            measure = CapacityModel(os.cpu_count() or 1, cost_s=cost).channels or 0  # it would admit
            heard = [t.result() for t in tasks]
            utterances = [u for i in range(n) for u in judge(calls[i], heard[i])]
            latencies = [u.latency_s for u in utterances if u.latency_s is not None]
            missing = sum(u.latency_s is None for u in utterances)
            long = [u for u in utterances if u.turn.end_s - u.turn.start_s >= LONG_S]
            interim_share = sum(u.interim for u in long) / len(long) if long else 1.0
            p95 = percentile(latencies, 95)
            ok = (
                p95 <= LATENCY_GOAL_S
                and missing == 0
                and interim_share >= INTERIM_GOAL
                and all(h.ended and not h.errors for h in heard)
            )
            final = '{kind="final"}'
            audio_final = delta(after, before, f"asr_local_decoded_audio_seconds_total{final}")
            cpu_final = delta(after, before, f"asr_local_decode_cpu_seconds_total{final}")
            audio_all = sum(
                delta(after, before, f'asr_local_decoded_audio_seconds_total{{kind="{k}"}}')
                for k in ("final", "interim")
            )
            cpu_all = sum(
                delta(after, before, f'asr_local_decode_cpu_seconds_total{{kind="{k}"}}')
                for k in ("final", "interim")
            )
            call_s = sum(c.seconds for c in calls[:n])
            worker_cpu = (cpu_after.cpu_s - cpu_before.cpu_s) if cpu_after and cpu_before else float("nan")
            rows.append(
                [
                    str(n),
                    f"{n / (os.cpu_count() or 1):.1f}",
                    f"{percentile(latencies, 50):.2f}",
                    f"{p95:.2f}",
                    f"{max(latencies, default=float('nan')):.2f}",
                    str(missing),
                    wer_of(utterances, "people"),
                    wer_of(utterances, "synthetic"),
                    f"{interim_share:.0%}",
                    f"{cpu_final / audio_final:.3f}" if audio_final else "-",
                    f"{cpu_all / audio_all:.3f}" if audio_all else "-",
                    f"{worker_cpu / call_s * 1000:.0f}",
                    f"{(peak_rss - idle_rss) / n / 2**20:.1f}",
                    f"{measure / 2:.0f}",
                    f"{max(load_before, os.getloadavg()[0]):.1f}",
                    "yes" if ok else "NO",
                ]
            )
            print(table(HEADERS, rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
            if not ok:
                break
            best = n
    mean_s = statistics.mean(c.seconds for c in calls)
    people = sum(t.source == "people" for c in calls for t in c.turns)
    every = sum(len(c.turns) for c in calls)
    return (
        f"engine {engine}; each call two legs of 8 kHz mu-law taking {turns} turns ({mean_s:.0f} s), "
        f"{people} of {every} utterances by people, real time, 20 ms frames, starts staggered over "
        f"{stagger_s:g} s; worker RSS idle {idle_rss / 2**20:.0f} MiB\n"
        + table(HEADERS, rows)
        + f"\n\ntwo-leg calls sustained (finals p95 <= {LATENCY_GOAL_S} s, none missing, an interim for "
        f">= {INTERIM_GOAL:.0%} of utterances of {LONG_S:g} s or more): {best} "
        f"({best / (os.cpu_count() or 1):.1f} per core)"
    )


async def burst(calls_asked: int, turns: int, stagger_s: float) -> str:
    """A burst past capacity, with admission on (the engine's own measure): `calls_asked` calls
    (0: twice what the engine says it carries) start within `stagger_s`. The admitted ones must
    keep their latency; the rest are refused with engine_full."""
    pool = pools()
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        running("serve", env={"ASR_MAX_SESSIONS": "1000"}) as port,
    ):
        measure = await gauge(http, port, "asr_local_capacity_channels")
        cost = await gauge(http, port, "asr_local_decode_cost")
        n = calls_asked or 2 * int(measure // 2)
        calls = [conversation(i, turns, pool) for i in range(n)]
        rng = random.Random(5)
        ready_during: list[str] = []

        async def look_at_ready() -> None:
            await asyncio.sleep(stagger_s + 5.0)
            async with http.get(f"http://127.0.0.1:{port}/ready") as response:
                ready_during.append(f"{response.status} {(await response.json())['reason']}")

        async with asyncio.TaskGroup() as tg:
            tg.create_task(look_at_ready())
            tasks = [
                tg.create_task(play_call(http, port, f"burst-{i}", calls[i], rng.uniform(0, stagger_s)))
                for i in range(n)
            ]
        heard = [t.result() for t in tasks]
    admitted = [i for i, h in enumerate(heard) if not h.errors]
    refused = [h.errors for h in heard if h.errors]
    utterances = [u for i in admitted for u in judge(calls[i], heard[i])]
    latencies = [u.latency_s for u in utterances if u.latency_s is not None]
    long = [u for u in utterances if u.turn.end_s - u.turn.start_s >= LONG_S]
    rows = [
        [
            f"{cost:.4f}",
            f"{measure:.0f} ({measure / 2:.0f} calls)",
            str(n),
            str(len(admitted)),
            f"{len(refused)} ({', '.join(sorted({e for r in refused for e in r}))})",
            ready_during[0] if ready_during else "-",
            f"{percentile(latencies, 50):.2f}",
            f"{percentile(latencies, 95):.2f}",
            f"{max(latencies, default=float('nan')):.2f}",
            str(sum(u.latency_s is None for u in utterances)),
            f"{sum(u.interim for u in long) / len(long):.0%}" if long else "-",
            f"{os.getloadavg()[0]:.1f}",
        ]
    ]
    headers = [
        "decode cost",
        "measured channels",
        "calls offered",
        "admitted",
        "refused",
        "/ready during",
        "admitted final p50 s",
        "p95 s",
        "max s",
        "missing",
        "long utt. with interim",
        "load",
    ]
    return (
        f"{n} two-leg calls offered within {stagger_s:g} s to a worker measuring its own capacity\n"
        + table(headers, rows)
    )


def wer_of(utterances: list[Utterance], source: str) -> str:
    mine = [u for u in utterances if u.turn.source == source]
    words = sum(u.words for u in mine)
    return f"{sum(u.errors for u in mine) / words:.1%}" if words else "-"


HEADERS = [
    "calls",
    "per core",
    "final p50 s",
    "p95 s",
    "max s",
    "missing",
    "WER people",
    "WER synthetic",
    "long utt. with interim",
    "final CPU s/audio s",
    "all decode CPU s/audio s",
    "worker CPU ms/call-s",
    "RSS MiB/call",
    "engine's measure, calls",
    "load",
    "sustained",
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.local", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", default="2,4,8,12,16,20,24,28,32,40", help="capacity: concurrent calls to try, in order"
    )
    parser.add_argument("--turns", type=int, default=10, help="capacity: turns per call (both legs)")
    parser.add_argument("--stagger-s", type=float, default=5.0, help="capacity: call starts spread over this")
    parser.add_argument(
        "--parts",
        default="accuracy,speed",
        help="what to measure, of accuracy,speed,capacity,burst,languages (the capacity ramp takes "
        "about 6 minutes; burst: calls past the engine's own measure at once, admission on; "
        "languages: calls in en, es, fr, de, named and multi)",
    )
    parser.add_argument(
        "--burst-calls", type=int, default=0, help="burst: calls offered (0: twice the measure)"
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
    settings = load_settings(os.environ)  # ASR_LOCAL_ENGINE=whisper and the like apply in-process too
    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}\n")
    if "accuracy" in parts:
        print(accuracy(settings, table, paths) + "\n", flush=True)
    if "languages" in parts:
        from .local_languages import languages

        print("Languages (espeak-ng voices, 8 kHz mu-law, 1x over the ingest socket)", flush=True)
        print(asyncio.run(languages(table)) + "\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        speech = Speech(Path(tmp))
        if "speed" in parts:
            print(
                "Decode speed (real-time factor: wall time / audio time)\n"
                + decode_speed(speech, settings)
                + "\n",
                flush=True,
            )
        if "burst" in parts:
            print("Burst past capacity\n" + asyncio.run(burst(args.burst_calls, args.turns, 2.0)) + "\n")
        if "capacity" in parts:
            print(
                "Concurrent real-time calls\n"
                + asyncio.run(
                    capacity(steps, args.turns, args.stagger_s, os.environ.get("ASR_LOCAL_ENGINE", "auto"))
                )
            )


if __name__ == "__main__":
    main()
