"""The local engine's languages: `python -m bench.local_languages` (or `bench.local --parts
languages`), about 6 minutes on 2 cores.

One real `asr-worker serve` (default settings, the embedded engine, ASR_LOCAL_DETECT_LANGUAGES
en,es,fr,de as a contact centre serving those four would set it) takes, one at a time, a call
in English, Spanish, French and German (the eight sentences of each in
`tests/support/languages.py`, espeak-ng's voice of the language, 8 kHz mu-law, 1.2 s between
sentences) over the ingest WebSocket, 20 ms at a time at 1x, twice: with the call's language
named (`language=en` is Moonshine's, the others Whisper's) and with `language=multi` (Whisper
detects each utterance's). For each: the engine that decoded it, the word error rate of the
finals, how many of the finals with words were in the call's language, and the decode cost:
CPU seconds of the decoding threads per second of audio decoded for finals (from the worker's
`/metrics`; CTranslate2 decodes Whisper in threads of its own, which the counter does not see,
so Whisper's figure is the wall time of its decodes per audio second instead, as the engine's
admission measures it). Beside them, the bar: faster-whisper's own `transcribe` with Whisper
base on each whole call at once (greedy, temperature 0, told the language), which says what
the model hears in these voices at 8 kHz, stream or not. Above the table, what admission
weighs a call by once the calls are done: each engine's decode cost as the worker measures it
(`asr_local_engine_decode_cost`) and their ratio.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import aiohttp
from tests.support.languages import DETECT_AMONG, SENTENCES, VOICES, call, word_errors
from tests.support.speech import CallAudio

from .local_calls import CALL_TIMEOUT_S, CallRun, play, running

LANGUAGES = ("en", "es", "fr", "de")


async def _metrics(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("asr_local_decode") and 'kind="final"' in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def _weights(http: aiohttp.ClientSession, port: int) -> str:
    """What admission weighs calls by at the end: each engine's decode cost and the capacity."""
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    costs: dict[str, float] = {}
    channels = "unknown"
    for line in text.splitlines():
        if line.startswith("asr_local_engine_decode_cost{"):
            name, value = line.rsplit(" ", 1)
            costs[name.split('"')[1]] = float(value)
        elif line.startswith("asr_local_capacity_channels "):
            channels = line.rsplit(" ", 1)[1]
    said = ", ".join(f"{engine} {cost:.3f}" for engine, cost in sorted(costs.items()))
    ratio = costs.get("whisper", float("nan")) / costs.get("moonshine", float("nan"))
    return (
        f"admission's decode cost per engine at the end (asr_local_engine_decode_cost): {said}; "
        f"a Whisper channel weighs {ratio:.1f} of Moonshine's; capacity {channels} channels"
    )


async def _call(
    http: aiohttp.ClientSession, port: int, name: str, audio: CallAudio, language: str
) -> list[dict[str, object]]:
    """One call at 1x with this `language`; its finals with words."""
    query = f"encoding=mulaw&sample_rate=8000&language={language}"
    finals: list[dict[str, object]] = []
    async with http.ws_connect(f"ws://127.0.0.1:{port}/v1/audio/{name}?{query}") as ws:

        async def talk() -> None:
            await play(CallRun(), audio, lambda _n, frame: ws.send_bytes(frame))
            await ws.send_str(json.dumps({"type": "end"}))

        async with asyncio.timeout(CALL_TIMEOUT_S), asyncio.TaskGroup() as tg:
            tg.create_task(talk())
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    event = json.loads(msg.data)
                    if event["type"] == "error":
                        raise RuntimeError(f"{name}: {event}")
                    if event["type"] == "transcript" and event["is_final"] and event["text"]:
                        finals.append(event)
    return finals


def whole_file(audio: CallAudio, language: str) -> str:
    """faster-whisper's `transcribe` of the whole call (8 kHz mu-law, as 16 kHz float), greedy."""
    import numpy as np
    import soxr
    from faster_whisper import WhisperModel

    from asr_worker.core.codecs import decode_g711
    from asr_worker.engine.model import ModelChoice, resolve_model

    model = WhisperModel(resolve_model(ModelChoice()), device="cpu", compute_type="int8", cpu_threads=1)
    pcm = decode_g711(audio.data, audio.fmt.encoding).astype(np.float32) / 32768
    wide = np.asarray(soxr.resample(pcm, 8000, 16000), dtype=np.float32)
    segments, _info = model.transcribe(
        wide, language=language, beam_size=1, temperature=0.0, condition_on_previous_text=False
    )
    return " ".join(s.text.strip() for s in segments)


def _delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


async def languages(table: Callable[[list[str], list[list[str]]], str]) -> str:
    """The table (rows per language and way of naming it) as text."""
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-languages-") as tmp:
        calls = {lang: call(Path(tmp), lang, SENTENCES[lang]) for lang in LANGUAGES}
        bar = {}
        for lang, audio in calls.items():
            errors, words = word_errors(audio.text, await asyncio.to_thread(whole_file, audio, lang))
            bar[lang] = f"{errors / words:.1%}"
        env = {"ASR_LOCAL_DETECT_LANGUAGES": DETECT_AMONG}
        async with aiohttp.ClientSession() as http, running("serve", env=env) as port:
            for mode in ("named", "multi"):
                for lang in LANGUAGES:
                    audio = calls[lang]
                    before = await _metrics(http, port)
                    finals = await _call(
                        http, port, f"{lang}-{mode}", audio, lang if mode == "named" else "multi"
                    )
                    after = await _metrics(http, port)
                    heard = " ".join(str(f["text"]) for f in finals)
                    errors, words = word_errors(audio.text, heard)
                    in_language = sum(str(f.get("language", "")).split("-")[0] == lang for f in finals)
                    audio_s = _delta(after, before, 'asr_local_decoded_audio_seconds_total{kind="final"}')
                    cpu_s = _delta(after, before, 'asr_local_decode_cpu_seconds_total{kind="final"}')
                    wall_s = _delta(after, before, 'asr_local_decode_seconds_sum{kind="final"}')
                    engine = "moonshine" if mode == "named" and lang == "en" else "whisper"
                    cost = (cpu_s if engine == "moonshine" else wall_s) / audio_s if audio_s else float("nan")
                    rows.append(
                        [
                            lang,
                            f"{VOICES[lang][1]}, {VOICES[lang][3]}",
                            lang if mode == "named" else "multi",
                            engine,
                            f"{audio.fmt.seconds(len(audio.data)):.1f}",
                            str(words),
                            bar[lang],
                            f"{errors / words:.1%}",
                            f"{in_language}/{len(finals)}",
                            f"{cost:.3f}",
                        ]
                    )
                    print(f"  {lang} {mode}: {heard}", flush=True)
            weights = await _weights(http, port)
    return (
        weights
        + "\n\n"
        + table(
            [
                "language",
                "espeak-ng voice, wpm",
                "language=",
                "engine",
                "audio s",
                "words",
                "whole file WER",
                "stream WER",
                "finals in the language",
                "decode s per audio s",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    import os

    from .local import table

    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}\n", flush=True)
    print(asyncio.run(languages(table)))
