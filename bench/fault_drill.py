"""Fault drill: N real-time calls through the worker while its Deepgram misbehaves, then SIGTERM.

    python -m bench.fault_drill --calls 100 --minutes 30

Three processes, as in `bench.deepgram`: the driver (`bench.drive --mode churn`) keeps N calls
live over the ingest WebSocket, each 20-60 s of speech-like 8 kHz linear16 audio in stamped
20 ms frames (`common.call_audio`), each replaced when it ends; `asr-worker serve`
(ASR_PROVIDER=deepgram) forwards them to the sink (`bench.dg_sink`: dg-server over the mock
engine), which injects faults throughout (`--faults`, the dg-server's syntax; by default a
random 30% of connections is dropped without a close frame, closed 1011, stalled (it reads on
but answers nothing) or slowed, each at a random point of its first 20 s, and 5% of handshakes
are refused 429 with Retry-After: 1). At the end the driver stops starting calls and the
worker gets SIGTERM while calls are live: it must finalize them all (`session_ended`, reason
`shutdown`) and exit 0.

The outage phase: at `--outage-at` (a share of the run) the sink goes down for `--outage-s`
seconds (every live connection dropped without a close frame, every handshake refused 503),
and the worker runs with a fallback provider. By default it is the real local engine
(`--fallback local`), sized by what it measures it can carry (ASR_FALLBACK_MAX_CALLS unset):
the calls then say real speech (`bench/drill_speech.py`), as many live calls as the engine
takes move there, and the rest get `fallback_full` once and stay on their primary, retrying,
until it is back. A moved call must lose no word: its primary's finals must be exactly the
mock engine's words up to where they end, and every utterance after that must come back from
the local engine, scored against what it says (WER and utterances lost); its finals must keep
their latency (the local engine's finals p99, from the end of the voice of an utterance
spoken after the call moved: what was said before the move waited for the outage, not for the
engine). A call told `fallback_full` that ends before its primary is back cannot have its last
words heard by anyone (the finalize wait gives up): such calls are counted apart, with the words
and frames nobody heard, not as the worker's losses. With
`--fallback mock` the fallback is the sink's own engine with room for every call, and every
live call must move with every word once. The table shows how long agents saw no transcript,
the gap from the outage to each moved call's first final from the fallback (p50 / p99 / max).
New calls during the outage start on the fallback while it has room; after it they return to
Deepgram.

What is counted, and how:

* words: each call's final transcript must equal `expected_words` of the audio the worker
  took (the whole call, or up to SIGTERM: `session_ended.audio_s`); the difference, aligned
  word by word, is "words lost" (expected, missing) and "words repeated" (present, not
  expected). This is the end-to-end check: replay means the sink hears some audio twice, and
  only the transcript says whether the worker made that exactly-once.
* frames: a frame the worker took is lost if the sink's engine never heard it on any
  connection (the stamps say which call and frame each 320 bytes are); frames heard more than
  once are the replays (audio no final had covered when a connection failed). A call's frames
  from its move to the fallback on (`provider_changed.at`), and those of calls that started on
  the fallback, go to the fallback and are counted by the words alone.
* forward latency: a frame's send at the driver to its first hearing at the sink; transcript
  latency: the send of the last frame a final covers to the final's arrival at the driver
  (both include the outages the faults cause).
* memory: the worker's RSS every 0.5 s; "flat" means the RSS at the end (median of the last
  30 s before SIGTERM) is within 5% of the RSS at half-time (median of the 30 s around it).
  The first half is left out because the worker keeps, by design, the events of its last
  1000 calls for Server-Sent Events replay (a bounded history that at 100 calls of 20-60 s
  fills in about 7 minutes); over the second half the calls turn over again and again
  (about 2,000 calls in a 30-minute run at 100), so a leak of even a few KiB per call shows.
  The RSS at 5 minutes is printed as well.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tests.support.human_speech import word_errors

from asr_worker.core.audio import AudioFormat
from asr_worker.providers.mock import MockOptions, expected_words

from . import drill_speech
from .common import FRAME_MS, call_audio, frame_pool
from .deepgram import Sampler, deepgram_worker_env, free_port, process, wait_http
from .dg_sink import engine_options

PCM8K = AudioFormat.parse("linear16", 8000, 1)
DEFAULT_FAULTS = (
    "fault_percent=30,drop_after_ms=20000,close_1011_after_ms=20000,stall_after_ms=20000,"
    "reply_delay_ms=250,reject_status=429,reject_percent=5,retry_after_s=1,seed=1"
)
FLAT_PERCENT = 5.0
FRAMES_PER_S = 1000 // FRAME_MS


@dataclass
class Drill:
    """Everything the table shows."""

    calls: int
    minutes: float
    faults: str
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    started: int = 0
    completed: int = 0  # ended by their own `end`
    shutdown: int = 0  # live at SIGTERM, ended with reason `shutdown`
    failed: list[str] = field(default_factory=list)  # calls that ended otherwise
    refused: Counter[str] = field(default_factory=Counter)
    frames_sent: int = 0
    frames_taken: int = 0
    frames_lost: int = 0
    frames_heard_again: int = 0
    words_expected: int = 0
    words_lost: int = 0
    words_repeated: int = 0
    calls_exact: int = 0
    reconnects: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    injected: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    handshakes: int = 0
    forward_ms: list[float] = field(default_factory=list)  # p50, p99, max
    transcript_ms: list[float] = field(default_factory=list)
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (seconds into the run, MiB)
    rss_peak_mib: float = 0.0
    rss_5min_mib: float = float("nan")
    rss_mark_mib: float = 0.0
    rss_end_mib: float = 0.0
    mark_s: float = 0.0
    worker_cores: float = float("nan")
    other_cores: float = float("nan")
    # Calls whose session_ended came after SIGTERM (or never): the ones the drain had to end,
    # by the driver's own records. /health's count a moment before the signal is not it: a call
    # can end by itself between that reading and the signal (it did once in a 30-minute drill).
    live_at_sigterm: int = 0
    drained_exact: int = 0  # ...of which ended with every word, once
    last_ended_s: float = float("nan")  # SIGTERM to the last session_ended at the driver
    drain_s: float = float("nan")  # SIGTERM to the worker's exit
    exit_code: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    outage_at_s: float = float("nan")  # seconds into the run the outage began (nan: none)
    outage_s: float = 0.0
    live_at_outage: int = 0  # calls live when it began (started before, ended after)
    live_moved: int = 0  # ...of which moved to the fallback
    calls_moved: int = 0  # calls with a provider_changed (some begin during the outage)
    calls_on_fallback: int = 0  # calls that started on the fallback
    moved_exact: int = 0  # moved calls that ended with every word, once
    outage_gap_ms: list[float] = field(default_factory=list)  # outage -> first fallback final
    outage_move_ms: list[float] = field(default_factory=list)  # outage -> provider_changed
    exact_calls: set[int] = field(default_factory=set)  # indexes of the calls with every word once
    fallback: str = "mock"
    speech: bool = False  # the calls said speech (drill_speech), not noise
    live_full: int = 0  # live at the outage, told fallback_full (stayed on their primary)
    local_words: int = 0  # words said while a call was on the local fallback...
    local_errors: int = 0  # ...and the errors in what it gave them
    local_utterances: int = 0
    local_lost: int = 0  # utterances on the local fallback that no final gave a word of
    local_final_ms: list[float] = field(default_factory=list)  # end of voice -> local final
    waited_out: int = 0  # calls that ended during the outage waiting for their primary (fallback full)
    waited_words_lost: int = 0  # ...the words nobody could hear
    waited_frames: int = 0

    @property
    def rss_growth_percent(self) -> float:
        return (self.rss_end_mib - self.rss_mark_mib) / self.rss_mark_mib * 100 if self.rss_mark_mib else 0.0

    def goals(self) -> dict[str, bool]:
        goals = {
            "0 words lost": self.words_lost == 0 and not self.failed,
            "0 words repeated": self.words_repeated == 0,
            "0 frames lost": self.frames_lost == 0,
            f"memory flat (<{FLAT_PERCENT:g}% growth over the second half)": self.rss_growth_percent
            < FLAT_PERCENT,
            "SIGTERM: every live call drained, exit 0": self.exit_code == 0
            and self.live_at_sigterm > 0
            and self.drained_exact == self.live_at_sigterm,
        }
        if self.outage_s and self.fallback == "local":
            goals["outage: live calls moved up to the engine's measure, the rest told fallback_full"] = (
                self.live_moved > 0 and self.live_moved + self.live_full == self.live_at_outage
            )
            goals["outage: moved calls lost no word (primary's exact; no utterance lost on the engine)"] = (
                self.moved_exact == self.calls_moved and self.local_lost == 0
            )
            goals["outage: the engine's finals kept their latency (p99 <= 1.5 s)"] = (
                bool(np.isnan(self.local_final_ms[1]))
                or self.local_final_ms[1] <= 1500  # nan: none said after a move
            )
        elif self.outage_s:
            goals["outage: every live call moved to the fallback, every word once"] = (
                self.live_at_outage > 0
                and self.live_moved == self.live_at_outage
                and self.moved_exact == self.calls_moved
            )
        return goals


def scrape(url: str) -> dict[str, float]:
    """The worker's /metrics, summed over labels per series name."""
    totals: dict[str, float] = {}
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            with contextlib.suppress(ValueError):
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def run(args: argparse.Namespace, tmp: Path) -> Drill:
    drill = Drill(
        args.calls,
        args.minutes,
        args.faults,
        load_before=os.getloadavg(),
        fallback=args.fallback if args.outage_s > 0 else "mock",
        speech=_speech(args),
    )
    py = sys.executable
    run_s = args.minutes * 60
    drive_out, sink_out, worker_log = tmp / "drive.npz", tmp / "sink.npz", tmp / "worker.log"
    with contextlib.ExitStack() as stack, Sampler() as sampler:
        sink_port = free_port()
        sink = stack.enter_context(
            process(
                [
                    py,
                    "-m",
                    "bench.dg_sink",
                    "--port",
                    str(sink_port),
                    "--out",
                    str(sink_out),
                    "--faults",
                    args.faults,
                ],
                wait_line="ready",
            )
        )
        sampler.watch("sink", sink.pid)
        port = free_port()
        log = stack.enter_context(worker_log.open("w"))
        worker = subprocess.Popen(
            [py, "-m", "asr_worker", "serve"],
            env={
                **os.environ,
                **deepgram_worker_env(
                    port,
                    f"ws://127.0.0.1:{sink_port}/v1/listen",
                    args.calls,
                    {**_fallback_env(args), **dict(item.split("=", 1) for item in args.worker_env)},
                ),
            },
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        stack.callback(_kill, worker)
        http = f"http://127.0.0.1:{port}"
        wait_http(f"{http}/health")
        sampler.watch("worker", worker.pid)
        driver = subprocess.Popen(
            [
                *(py, "-m", "bench.drive", "--mode", "churn", "--url", f"ws://127.0.0.1:{port}"),
                *("--calls", str(args.calls), "--seconds", str(run_s + 600)),
                *("--call-seconds", args.call_seconds, "--out", str(drive_out)),
                *(["--speech"] if _speech(args) else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(_kill, driver)
        sampler.watch("driver", driver.pid)
        t0 = time.monotonic()
        # (when, signal to the sink): the outage phase, if any
        phases = [
            (t0 + args.outage_at * run_s, signal.SIGUSR1),
            (t0 + args.outage_at * run_s + args.outage_s, signal.SIGUSR2),
        ]
        phases = phases if args.outage_s > 0 else []
        while time.monotonic() < t0 + run_s and driver.poll() is None and worker.poll() is None:
            if phases and time.monotonic() >= phases[0][0]:
                if phases[0][1] is signal.SIGUSR1:
                    t_outage = time.monotonic()
                    drill.outage_at_s, drill.outage_s = t_outage - t0, args.outage_s
                sink.send_signal(phases.pop(0)[1])
            wake = min([t0 + run_s, *(at for at, _ in phases[:1])])
            time.sleep(min(1.0, max(0.0, wake - time.monotonic())))
        drill.metrics = scrape(f"{http}/metrics")
        t_term = time.monotonic()
        driver.send_signal(signal.SIGUSR1)  # no new calls; the live ones go on until the worker ends them
        worker.send_signal(signal.SIGTERM)
        try:
            drill.exit_code = worker.wait(60)
            drill.drain_s = time.monotonic() - t_term
        except subprocess.TimeoutExpired:
            drill.exit_code = None  # a hang at SIGTERM: the table says so
        driver.communicate(timeout=120)
        drill.worker_cores = sampler.cpu_cores("worker", t0 + 5, t_term)
        ours = sum(sampler.cpu_cores(name, t0 + 5, t_term) for name in ("worker", "driver", "sink"))
        drill.other_cores = max(0.0, sampler.cpu_cores("machine", t0 + 5, t_term) - ours)
        rss = [(s.at - t0, s.rss_bytes / 2**20) for s in sampler.samples["worker"] if t0 <= s.at <= t_term]
        stack.close()  # SIGTERM to the sink, which writes what it heard
    drill.load_after = os.getloadavg()
    _memory(drill, rss, t_term - t0, args.rss_every_s)
    _analyse(drill, np.load(drive_out), np.load(sink_out), t_term)
    if drill.outage_s:
        _outage(drill, json.loads(str(np.load(drive_out)["calls"][0])), t0 + drill.outage_at_s)
    return drill


def _speech(args: argparse.Namespace) -> bool:
    return bool(args.outage_s > 0 and args.fallback == "local")


def _fallback_env(args: argparse.Namespace) -> dict[str, str]:
    """With an outage phase: the local engine as the fallback, as many calls as it measures it
    can carry; or the sink's engine, room for every call."""
    if args.outage_s <= 0:
        return {}
    if args.fallback == "local":
        return {"ASR_FALLBACK_PROVIDER": "local"}
    options = engine_options()
    return {
        "ASR_FALLBACK_PROVIDER": "mock",
        "ASR_MOCK": f"word_ms={options.word_ms},words_per_final={options.words_per_final}",
        "ASR_FALLBACK_MAX_CALLS": str(args.calls + 10),
    }


def _outage(drill: Drill, calls: list[dict[str, object]], t_outage: float) -> None:
    """Which calls the outage moved, whether each kept every word once, and how long each call
    live at the outage went without a transcript: from the outage to its first final from the
    fallback. (A call that begins during the outage while the breaker is half-open tries
    Deepgram first and moves then: it counts among the moved calls, not in the gaps.)"""
    gaps, moves = [], []
    for call in calls:
        started, ended_at = float(str(call["started"])), float(str(call["ended_at"]))
        live = started < t_outage and not ended_at < t_outage  # nan (never ended) counts as live
        if str(call["started_on"]) == drill.fallback:
            drill.calls_on_fallback += 1
        elif live:
            drill.live_at_outage += 1
            drill.live_moved += call["changed"] is not None
            errors = call["errors"]
            drill.live_full += (
                call["changed"] is None and isinstance(errors, dict) and "fallback_full" in errors
            )
        if call["changed"] is None:
            continue
        drill.calls_moved += 1
        drill.moved_exact += int(str(call["index"])) in drill.exact_calls
        if live:
            gaps.append((float(str(call["fallback_final_at"])) - t_outage) * 1000)
            moves.append((float(str(call["changed_at"])) - t_outage) * 1000)
    drill.outage_gap_ms = _percentiles(np.array([g for g in gaps if not np.isnan(g)]))
    drill.outage_move_ms = _percentiles(np.array([m for m in moves if not np.isnan(m)]))


def _engine_call(
    drill: Drill, call: dict[str, object], audio: bytes, options: MockOptions, sent_at: np.ndarray, base: int
) -> tuple[list[str], int, int]:
    """A call that the local engine carried a part of: the primary's finals must be the mock's
    words exactly up to where they end; every utterance after that is scored against the words
    the local engine's finals gave it (each word to the utterance its time falls nearest), and
    its latency, for an utterance spoken after the call moved, is from the end of its voice."""
    texts = call["final_texts"]
    assert isinstance(texts, list)
    primary = [f for f in texts if str(f[0]) != drill.fallback]
    switch_s = max((float(f[2]) for f in primary), default=0.0)
    expected = expected_words(audio[: PCM8K.bytes_for(switch_s)], PCM8K, options)
    lost, repeated = _word_diff(expected, [w for f in primary for w in str(f[3]).split()])
    _audio, said = drill_speech.script(int(str(call["index"])), int(str(call["frames"])))
    taken_s = PCM8K.seconds(len(audio))
    after = [u for u in said if u.start_s >= switch_s and u.end_s + 1.0 <= taken_s]
    heard: dict[int, list[str]] = {i: [] for i in range(len(after))}
    arrived: dict[int, float] = {}
    final_times = call["finals"]
    assert isinstance(final_times, list)
    arrivals = {round(float(e), 3): float(a) for e, a in final_times}
    for f in texts:
        if str(f[0]) != drill.fallback or not after:
            continue
        for middle, word in f[4]:
            nearest = min(
                range(len(after)),
                key=lambda i: max(0.0, after[i].start_s - middle, middle - after[i].end_s),
            )
            heard[nearest].append(str(word))
            arrived.setdefault(nearest, arrivals.get(round(float(f[2]), 3), float("nan")))
    moved_at = float(str(call["changed_at"])) if call["changed"] is not None else 0.0
    frames = len(audio) // PCM8K.bytes_for(FRAME_MS / 1000)
    for i, utterance in enumerate(after):
        errors, words = word_errors(utterance.text, " ".join(heard[i]))
        drill.local_utterances += 1
        drill.local_words += words
        drill.local_errors += errors
        drill.local_lost += not heard[i]
        frame = min(frames, int(np.ceil(utterance.end_s * FRAMES_PER_S))) - 1
        spoke_at = float(sent_at[base + frame]) if frame >= 0 else float("nan")
        if i in arrived and not np.isnan(spoke_at) and spoke_at >= moved_at:  # said on the engine
            drill.local_final_ms.append((arrived[i] - spoke_at) * 1000)
    return expected, lost, repeated


def _kill(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _memory(drill: Drill, rss: list[tuple[float, float]], end_s: float, every_s: float) -> None:
    if not rss:
        return
    drill.mark_s = end_s / 2
    drill.rss_peak_mib = max(m for _, m in rss)
    at_5min = [m for t, m in rss if abs(t - 300) <= 15]
    if at_5min:
        drill.rss_5min_mib = float(np.median(at_5min))
    around = [m for t, m in rss if abs(t - drill.mark_s) <= 15] or [rss[0][1]]
    last = [m for t, m in rss if t >= end_s - 30] or [rss[-1][1]]
    drill.rss_mark_mib, drill.rss_end_mib = float(np.median(around)), float(np.median(last))
    next_at = every_s
    for t, mib in rss:
        if t >= next_at:
            drill.rss_mib.append((t, mib))
            next_at += every_s


def _analyse(drill: Drill, drive: np.lib.npyio.NpzFile, sink: np.lib.npyio.NpzFile, t_term: float) -> None:
    calls = json.loads(str(drive["calls"][0]))
    offsets, sent_at = drive["offsets"], drive["sent_at"]
    server = json.loads(str(sink["server"][0]))
    drill.injected, drill.connections = server["injected"], server["accepted"]
    drill.handshakes = server["handshakes"]
    pool, options = frame_pool(), engine_options()
    key_span = int(max((c["frames"] for c in calls), default=0)) + 1
    taken_keys = []
    transcript_ms = []
    for call in calls:
        if call["refused"] and call["ended"] is None:
            drill.refused[call["refused"]] += 1
            continue
        drill.started += 1
        drill.frames_sent += call["sent"]
        for code, n in call["errors"].items():
            drill.errors[code] += n
        ended = call["ended"]
        reason = None if ended is None else ended["reason"]
        if reason == "end":
            drill.completed += 1
        elif reason == "shutdown":
            drill.shutdown += 1
            since_sigterm = call["ended_at"] - t_term
            if not since_sigterm <= drill.last_ended_s:  # nan at first
                drill.last_ended_s = since_sigterm
        else:
            drill.failed.append(f"drill-{call['index']}: {reason or 'no session_ended'}")
        taken = round(float(ended["audio_s"]) * FRAMES_PER_S) if ended else call["sent"]
        drill.frames_taken += taken
        drill.reconnects += int(ended["reconnects"]) if ended else 0
        heard_by_sink = taken  # the fallback hears the rest of a moved call, and all of one begun there
        if call["started_on"] == drill.fallback:
            heard_by_sink = 0
        elif call["changed"] is not None:
            heard_by_sink = min(taken, round(float(call["changed"]["at"]) * FRAMES_PER_S))
        # Ended while its primary was down and the fallback full: nobody could hear what its
        # finals had not covered (counted apart: the price of a fallback that is full).
        errors = call["errors"]
        waited = call["changed"] is None and "fallback_full" in errors and "finalize_timeout" in errors
        if waited:
            covered = round(float(call["finals"][-1][0]) * FRAMES_PER_S) if call["finals"] else 0
            heard_by_sink = min(heard_by_sink, covered)
        taken_keys.append((call["index"] & 0xFFFF) * key_span + np.arange(heard_by_sink))
        speech = drill.speech
        audio = (
            drill_speech.call_audio(call["index"], call["frames"], taken)
            if speech
            else call_audio(pool, call["index"], taken)
        )
        on_engine = speech and (call["changed"] is not None or call["started_on"] == drill.fallback)
        if on_engine:
            base = int(offsets[call["index"]])
            expected, lost, repeated = _engine_call(drill, call, audio, options, sent_at, base)
        else:
            expected = expected_words(audio, PCM8K, options)
            lost, repeated = _word_diff(expected, call["words"])
        drill.words_expected += len(expected)
        if waited:
            drill.waited_out += 1
            drill.waited_words_lost += lost
            drill.waited_frames += taken - heard_by_sink
        else:
            drill.words_lost += lost
        drill.words_repeated += repeated
        exact = lost == 0 and repeated == 0 and ended is not None
        drill.calls_exact += exact
        if exact:
            drill.exact_calls.add(int(call["index"]))
        if ended is None or not call["ended_at"] < t_term:  # live when the worker got SIGTERM
            drill.live_at_sigterm += 1
            drill.drained_exact += exact
        base = offsets[call["index"]]
        for end_s, arrived in call["finals"]:
            frame = min(taken, int(np.ceil(end_s * FRAMES_PER_S - 1e-6))) - 1
            if frame >= 0 and not np.isnan(sent_at[base + frame]):
                transcript_ms.append((arrived - sent_at[base + frame]) * 1000)
    keys = (sink["calls"].astype(np.int64) & 0xFFFF) * key_span + sink["frames"]
    order = np.lexsort((sink["times"], keys))
    keys, times = keys[order], sink["times"][order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    drill.frames_heard_again = int(np.count_nonzero(~first))
    heard, heard_at = keys[first], times[first]
    wanted = np.concatenate(taken_keys) if taken_keys else np.zeros(0, dtype=np.int64)
    drill.frames_lost = len(np.setdiff1d(wanted, heard))
    # forward latency of every frame heard: find its call's row in the driver's send times
    index_of_stamp = np.full(1 << 16, -1, dtype=np.int64)
    for call in calls:
        index_of_stamp[int(call["index"]) & 0xFFFF] = int(call["index"])
    call_of, frame_of = index_of_stamp[heard // key_span], heard % key_span
    ok = call_of >= 0
    sent = sent_at[offsets[call_of[ok]] + frame_of[ok]]
    forward = (heard_at[ok] - sent) * 1000
    forward = forward[~np.isnan(forward)]
    drill.forward_ms = _percentiles(forward)
    drill.transcript_ms = _percentiles(np.array(transcript_ms))
    drill.local_final_ms = _percentiles(np.array(drill.local_final_ms))


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _word_diff(expected: list[str], got: list[str]) -> tuple[int, int]:
    """Words missing from `got`, and words in it that are not expected, aligned in order."""
    lost = repeated = 0
    matcher = difflib.SequenceMatcher(None, expected, got, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("delete", "replace"):
            lost += i2 - i1
        if tag in ("insert", "replace"):
            repeated += j2 - j1
    return lost, repeated


def _percentiles(values: np.ndarray) -> list[float]:
    if not len(values):
        return [float("nan")] * 3
    return [float(np.percentile(values, 50)), float(np.percentile(values, 99)), float(values.max())]


def table(drill: Drill) -> str:
    def ms(values: list[float]) -> str:
        return " / ".join(f"{v:.0f}" for v in values) + " ms"

    injected = ", ".join(f"{k} {v}" for k, v in sorted(drill.injected.items())) or "none"
    errors = ", ".join(f"{k} {v}" for k, v in sorted(drill.errors.items())) or "none"
    m = drill.metrics
    rows = [
        ("calls live at a time x minutes", f"{drill.calls} x {drill.minutes:g}"),
        (
            "calls started / completed / drained at SIGTERM",
            f"{drill.started} / {drill.completed} / {drill.shutdown}",
        ),
        ("calls failed / refused", f"{len(drill.failed)} / {sum(drill.refused.values())}"),
        ("calls with every word, once", f"{drill.calls_exact} / {drill.started}"),
        (
            "words expected / lost / repeated",
            f"{drill.words_expected} / {drill.words_lost} / {drill.words_repeated}",
        ),
        ("frames sent / taken by the worker", f"{drill.frames_sent} / {drill.frames_taken}"),
        ("frames lost (taken, never heard)", str(drill.frames_lost)),
        ("frames heard again (replays)", str(drill.frames_heard_again)),
        ("faults injected", injected),
        ("sink handshakes / connections", f"{drill.handshakes} / {drill.connections}"),
        ("reconnects (session_ended)", str(drill.reconnects)),
        (
            "worker: replayed / dropped audio",
            f"{m.get('asr_audio_replayed_seconds_total', 0):.1f} s / "
            f"{m.get('asr_audio_dropped_seconds_total', 0):.1f} s",
        ),
        ("error events", errors),
        ("forward latency p50 / p99 / max", ms(drill.forward_ms)),
        *_outage_rows(drill, ms),
        ("transcript latency p50 / p99 / max", ms(drill.transcript_ms)),
        ("worker cores (mean) / other processes'", f"{drill.worker_cores:.2f} / {drill.other_cores:.2f}"),
        ("worker RSS peak", f"{drill.rss_peak_mib:.0f} MiB"),
        ("worker RSS at 5 min", "n/a" if np.isnan(drill.rss_5min_mib) else f"{drill.rss_5min_mib:.0f} MiB"),
        (
            f"worker RSS at half-time ({_clock(drill.mark_s)}) / at the end",
            f"{drill.rss_mark_mib:.0f} / {drill.rss_end_mib:.0f} MiB ({drill.rss_growth_percent:+.1f}%)",
        ),
        (
            "SIGTERM: calls live / drained with every word",
            f"{drill.live_at_sigterm} / {drill.drained_exact}",
        ),
        (
            "SIGTERM: last session_ended / exit, after",
            f"{drill.last_ended_s:.2f} s / {drill.drain_s:.2f} s, exit code {drill.exit_code}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    lines.insert(1, "-" * width + "  " + "-" * 20)
    if drill.rss_mib:
        lines.append("")
        lines.append("worker RSS over time (min:s MiB):")
        cells = [f"{_clock(t)} {mib:.0f}" for t, mib in drill.rss_mib]
        lines.extend("  " + ", ".join(cells[i : i + 8]) for i in range(0, len(cells), 8))
    lines.append("")
    for goal, met in drill.goals().items():
        lines.append(f"{'MET ' if met else 'MISSED'}  {goal}")
    for failure in drill.failed[:10]:
        lines.append(f"failed: {failure}")
    return "\n".join(lines)


def _outage_rows(drill: Drill, ms: Callable[[list[float]], str]) -> list[tuple[str, str]]:
    if not drill.outage_s:
        return [("outage phase", "none")]
    return [
        ("outage: began at / lasted", f"{_clock(drill.outage_at_s)} / {drill.outage_s:g} s"),
        (
            "outage: calls live / of them moved",
            f"{drill.live_at_outage} / {drill.live_moved}",
        ),
        (
            "outage: calls moved / moved with every word once",
            f"{drill.calls_moved} / {drill.moved_exact}",
        ),
        ("outage: calls started on the fallback", str(drill.calls_on_fallback)),
        ("outage -> provider_changed p50 / p99 / max (live calls)", ms(drill.outage_move_ms)),
        ("outage -> first fallback final p50 / p99 / max (live calls)", ms(drill.outage_gap_ms)),
        *_engine_rows(drill, ms),
    ]


def _engine_rows(drill: Drill, ms: Callable[[list[float]], str]) -> list[tuple[str, str]]:
    if drill.fallback != "local":
        return []
    wer = drill.local_errors / drill.local_words if drill.local_words else float("nan")
    return [
        ("outage: live calls told fallback_full (stayed on their primary)", str(drill.live_full)),
        (
            "outage: calls that ended waiting for their primary / words unheard / frames",
            f"{drill.waited_out} / {drill.waited_words_lost} / {drill.waited_frames}",
        ),
        (
            "local engine: utterances / lost / WER",
            f"{drill.local_utterances} / {drill.local_lost} / {wer:.1%}",
        ),
        ("local engine: end of voice -> final p50 / p99 / max", ms(drill.local_final_ms)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100, help="calls live at a time")
    parser.add_argument("--minutes", type=float, default=30.0, help="until SIGTERM")
    parser.add_argument("--call-seconds", default="20-60", help="each call's length, LO-HI seconds")
    parser.add_argument("--faults", default=DEFAULT_FAULTS, help="the sink's faults (dg-server syntax)")
    parser.add_argument(
        "--outage-at", type=float, default=0.4, help="the outage phase begins at this share of the run"
    )
    parser.add_argument(
        "--outage-s",
        type=float,
        help="how long it lasts (default: a quarter of the run, at most 30 s; 0: none)",
    )
    parser.add_argument(
        "--fallback",
        choices=("local", "mock"),
        default="local",
        help="the outage's fallback: the real local engine (its measured capacity; calls say speech) "
        "or the sink's mock engine (room for every call)",
    )
    parser.add_argument("--rss-every-s", type=float, default=30.0, help="RSS over time: one figure per")
    parser.add_argument("--worker-env", action="append", default=[], metavar="K=V")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", help="keep the raw records and the worker's log in this directory")
    args = parser.parse_args()
    if args.outage_s is None:
        args.outage_s = min(30.0, args.minutes * 60 / 4)
    with tempfile.TemporaryDirectory(prefix="fault-drill-") as scratch:
        tmp = Path(args.keep or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        print(f"fault drill: {args.calls} calls x {args.minutes:g} min ...", file=sys.stderr, flush=True)
        drill = run(args, tmp)
    print(
        f"python -m bench.fault_drill --calls {args.calls} --minutes {args.minutes:g}"
        f"   (load average {drill.load_before[0]:.2f} before, {drill.load_after[0]:.2f} after; "
        f"{os.cpu_count()} cores)"
    )
    print(f"faults: {args.faults}")
    print(table(drill))
    if args.json:
        figures = {
            key: value
            for key, value in vars(drill).items()
            if isinstance(value, int | float | str | list | dict | tuple) or value is None
        }
        figures["goals"] = drill.goals()
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    sys.exit(0 if all(drill.goals().values()) else 1)


if __name__ == "__main__":
    main()
