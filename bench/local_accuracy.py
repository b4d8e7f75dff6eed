"""Accuracy of the local engine on recordings of people (`tests/support/human_speech.py`).

For each recording (a call of short utterances separated by pauses) and for all of them:

* whole file: faster-whisper's own `transcribe` with the engine's model on the whole 8 kHz
  file at once, greedy at temperature 0 as the engine decodes, and with faster-whisper's
  defaults (beam 5, temperature fallback, seeded) - the bar a stream should reach;
* streaming WER of the finals at 8 kHz mu-law, 8 kHz linear16 and 16 kHz linear16, through the
  session pipeline (`asr-worker transcribe`, as fast as it goes; the finals are what a live call
  gets, since the engine cuts and decodes the same utterances whatever the pace);
* real time, by the three ways a call arrives (`bench/local_calls.py`): the mu-law recordings
  again, all at once, 20 ms at a time at 1x, over a real `asr-worker serve`'s ingest WebSocket,
  its Twilio Media Streams endpoint (the events read from the call's Server-Sent Events stream,
  as a Twilio user reads them) and `asr-worker dg-server` through the official `deepgram-sdk`,
  each path in turn with its calls alone on the server: the WER of the finals each path
  delivers, and finals latency from the client sending the end of an utterance to receiving the
  final that covers it (p50, p95, max over every utterance), interims per utterance, and whether
  every call ended cleanly (`session_ended`; the SDK's `Metadata`);
* endpointing alone, independent of the machine's speed: Silero and the segmenter over the
  mu-law recordings, with the engine's thresholds and with Silero's usual ones, and how long
  after the end of each utterance's voice its endpoint comes (the part of finals latency that
  is the VAD waiting for silence), with the number of utterances and the audio decoded.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr
from tests.support.human_speech import Recording, recordings, word_errors

from asr_worker.config import Settings
from asr_worker.core.audio import Encoding
from asr_worker.core.codecs import decode_g711
from asr_worker.engine.languages import engine_code
from asr_worker.engine.model import resolve_model
from asr_worker.engine.vad import Segmenter, SileroVad, VadConfig
from asr_worker.providers import local
from asr_worker.tools.audio_files import AudioFile
from asr_worker.tools.transcribe import transcribe_files

from .local_calls import call_latencies, paths_at_once

FORMATS = (
    ("8k mu-law", 8000, Encoding.MULAW),
    ("8k linear16", 8000, Encoding.LINEAR16),
    ("16k", 16000, Encoding.LINEAR16),
)


PATH_NAMES = {
    "ingest": "ingest WebSocket (serve)",
    "twilio": "Twilio Media Streams + SSE (serve)",
    "dg": "dg-server + deepgram-sdk",
}

REALTIME_HEADERS = [
    "path",
    "WER",
    "final p50 s",
    "p95 s",
    "max s",
    "utterances",
    "interims/utt",
    "calls ok",
    "load",
]

WHOLE: tuple[tuple[str, dict[str, float]], ...] = (
    ("whole file greedy", {"beam_size": 1, "temperature": 0.0}),
    ("whole file default", {}),
)


def whole_file(recs: list[Recording], settings: Settings) -> dict[str, list[str]]:
    """faster-whisper's `transcribe` on each whole 8 kHz recording with the engine's model and
    compute type: greedy at temperature 0, as the engine decodes; and faster-whisper's defaults
    (beam 5, temperature fallback), what a user gets offline - its random fallback seeded, so
    runs repeat."""
    import ctranslate2
    from faster_whisper import WhisperModel

    engine = settings.of(local.SETTINGS)
    model = WhisperModel(
        resolve_model(engine.model),
        device="cpu",
        compute_type=engine.compute_type,
        cpu_threads=max(1, engine.cpu_threads),
    )
    out: dict[str, list[str]] = {}
    for label, options in WHOLE:
        ctranslate2.set_random_seed(21)
        texts = []
        for rec in recs:
            audio = np.asarray(soxr.resample(rec.at(8000), 8000, 16000), dtype=np.float32)
            segments, _info = model.transcribe(audio, language=engine_code(engine.language), **options)
            texts.append(" ".join(s.text.strip() for s in segments))
        out[label] = texts
    return out


def streamed(recs: list[Recording], settings: Settings, rate: int, encoding: Encoding) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for rec in recs:
            call = rec.call(rate, encoding)
            files.append(AudioFile(Path(tmp) / f"{rec.name}.raw", call.fmt, call.data))
        with open(os.devnull, "w") as sink:
            results = asyncio.run(transcribe_files(files, settings, out=sink, err=sink))
    by_name = {r.name: r for r in results}
    return [" ".join(by_name[f.path.name].finals) if f.path.name in by_name else "" for f in files]


def wer_cell(pairs: list[tuple[int, int]]) -> str:
    errors = sum(e for e, _n in pairs)
    words = sum(n for _e, n in pairs)
    return f"{errors / words:.1%}" if words else "-"


def accuracy(settings: Settings, table: Callable[[list[str], list[list[str]]], str], paths: list[str]) -> str:
    """The tables; `paths` (of `local_calls.PATHS`) those to play the recordings over in real time."""
    recs = recordings()
    whole = whole_file(recs, settings)
    streams = {label: streamed(recs, settings, rate, enc) for label, rate, enc in FORMATS}
    columns = [*(label for label, _o in WHOLE), *(f"stream {label}" for label, _r, _e in FORMATS)]
    totals: dict[str, list[tuple[int, int]]] = {c: [] for c in columns}
    rows = []
    for i, rec in enumerate(recs):
        cells = {label: word_errors(rec.text, whole[label][i]) for label, _o in WHOLE}
        for label, _r, _e in FORMATS:
            cells[f"stream {label}"] = word_errors(rec.text, streams[label][i])
        for key, value in cells.items():
            totals[key].append(value)
        rows.append(
            [rec.name, f"{rec.seconds:.1f}", str(len(rec.spoken)), str(cells[columns[0]][1])]
            + [wer_cell([cells[c]]) for c in columns]
        )
    rows.append(
        [
            "all",
            f"{sum(r.seconds for r in recs):.1f}",
            str(sum(len(r.spoken) for r in recs)),
            str(sum(n for _e, n in totals[columns[0]])),
        ]
        + [wer_cell(totals[c]) for c in columns]
    )
    lines = [
        "Word error rate of finals on recordings of people (numbers spelled out before scoring)",
        table(["recording", "audio s", "utterances", "words", *columns], rows),
        "",
    ]
    for i, rec in enumerate(recs):
        lines.append(f"{rec.name}, reference:      {rec.text}")
        for label, _o in WHOLE:
            lines.append(f"{rec.name}, {label}: {whole[label][i]}")
        lines.append(f"{rec.name}, stream mu-law:  {streams['8k mu-law'][i]}")
    lines += ["", *endpointing_table(recs, settings, table)]
    if paths:
        lines += ["", *realtime_table(recs, paths, table)]
    return "\n".join(lines)


def endpointing_table(
    recs: list[Recording], settings: Settings, table: Callable[[list[str], list[list[str]]], str]
) -> list[str]:
    """Where the VAD ends each utterance, from the end of its voice: the engine's settings
    against Silero's usual thresholds (0.5 and 0.35, 500 ms of silence)."""
    silero = SileroVad.load()
    engine = settings.of(local.SETTINGS).vad
    usual = VadConfig(threshold=0.5, neg_threshold=0.35, min_silence_ms=500)
    rows = []
    for label, config in (("engine", engine), ("Silero's usual", usual)):
        delays, utterances, decoded_s = endpoint_delays(recs, silero, config)
        rows.append(
            [
                label,
                f"{config.threshold:g} / {config.neg_threshold:g}",
                str(config.min_silence_ms),
                str(utterances),
                f"{decoded_s:.1f}",
                *(f"{np.percentile(delays, q):.2f}" for q in (50, 95, 100)),
            ]
        )
    header = ["VAD", "start / end threshold", "silence ms", "utterances", "decoded s"]
    return [
        "Endpointing on the 8 kHz mu-law recordings: from the end of an utterance's voice to its "
        "endpoint, seconds of audio (no decoding, so the same on any machine)",
        table([*header, "p50 s", "p95 s", "max s"], rows),
    ]


def endpoint_delays(
    recs: list[Recording], silero: SileroVad, config: VadConfig
) -> tuple[list[float], int, float]:
    """Per spoken utterance, seconds from the end of its voice to the endpoint of the utterance
    that covers it; and the utterances cut and the seconds of audio they span."""
    delays: list[float] = []
    utterances, decoded = 0, 0
    frame = 320  # 20 ms at 16 kHz, as calls arrive
    for rec in recs:
        call = rec.call(8000, Encoding.MULAW)
        pcm = np.frombuffer(decode_g711(call.data, Encoding.MULAW), dtype="<i2").astype(np.float32) / 32768
        audio = np.asarray(soxr.resample(pcm, 8000, 16000), dtype=np.float32)
        stream, segmenter = silero.stream(), Segmenter(config)
        closed: list[tuple[int, int]] = []  # (where the endpoint was decided, utterance end)
        for i in range(0, audio.size, frame):
            for utterance in segmenter.push(stream.push(audio[i : i + frame])):
                closed.append((segmenter.position, utterance.end))
                decoded += utterance.end - utterance.start
        utterances += len(closed)
        for spoken in rec.spoken:
            voice_end = round(spoken.end_s * 16000)
            decided = next((at for at, end in closed if end >= voice_end - 1600), None)
            if decided is not None:
                delays.append((decided - voice_end) / 16000)
    return delays, utterances, decoded / 16000


def realtime_table(
    recs: list[Recording], paths: list[str], table: Callable[[list[str], list[list[str]]], str]
) -> list[str]:
    """The mu-law recordings as real-time calls, all at once, over each path: its finals' WER
    and latency."""
    calls = [rec.call(8000, Encoding.MULAW) for rec in recs]
    runs = asyncio.run(paths_at_once([(rec.name, c) for rec, c in zip(recs, calls, strict=True)], paths))
    utterances = sum(len(c.spoken) for c in calls)
    rows, lines = [], []
    for path, path_run in runs.items():
        path_runs = path_run.runs
        lat, missing = call_latencies(calls, path_runs)
        pairs = [word_errors(rec.text, run.text) for rec, run in zip(recs, path_runs, strict=True)]
        rows.append(
            [
                PATH_NAMES[path],
                wer_cell(pairs),
                *(f"{np.percentile(lat, q):.2f}" if lat else "-" for q in (50, 95, 100)),
                f"{utterances - missing}/{utterances}",
                f"{sum(r.interims for r in path_runs) / utterances:.1f}",
                f"{sum(r.ended and not r.errors for r in path_runs)}/{len(path_runs)}",
                f"{path_run.load:.1f}",
            ]
        )
        for rec, run in zip(recs, path_runs, strict=True):
            problems = ", ".join([*run.errors, *([] if run.ended else ["no end"])])
            lines.append(f"{rec.name}, {path}: {run.text}" + (f"  [{problems}]" if problems else ""))
    return [
        f"Real time: the {len(recs)} recordings as 8 kHz mu-law calls at once, 20 ms frames at 1x, "
        "over each path in turn (finals latency: from sending the end of an utterance to "
        "receiving the final that covers it; utterances: those a final covered; calls ok: ended "
        "without an error; load: the load average as the path's calls ended)",
        table(REALTIME_HEADERS, rows),
        "",
        *lines,
    ]
