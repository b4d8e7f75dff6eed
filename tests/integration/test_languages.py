"""Calls in Spanish, French and German on the real engine: espeak-ng's voices of those languages
(`tests/support/languages.py`) as 8 kHz mu-law calls over the ingest WebSocket with
`language=multi`, all at once into a worker on the embedded `local` engine that detects among
English, Spanish, French and German (ASR_LOCAL_DETECT_LANGUAGES). Each call's finals must be
in its language, said on every transcript and in the call's document, with words of that
language (a bound on the word error rate each voice reaches at 8 kHz: espeak-ng's French is
hard for Whisper base, bench.local's `languages` part measures it on more sentences); an
English call with `multi` is heard as English; a language no engine here knows is refused
before the call starts. The calls are sent faster than real time (the finals are the same):
this is a test of languages, not of speed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from asr_worker.config import make_provider, settings_with
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.languages import CALLS, DETECT_AMONG, SENTENCES, call, word_error_rate
from tests.support.speech import CallAudio

pytestmark = pytest.mark.timeout(240)

# What each voice's two sentences reach here (espeak-ng at 8 kHz; bench.local measures more).
MAX_WER = {"es": 0.3, "fr": 0.75, "de": 0.35, "en": 0.25}
CHUNK_S = 0.2


@pytest.fixture
async def detecting_worker(http: aiohttp.ClientSession) -> AsyncIterator[Worker]:
    settings = settings_with(
        provider="local",
        local_detect_languages=tuple(DETECT_AMONG.split(",")),
        local_capacity=100,  # admission (a call on Whisper weighs several) is tested on its own
    )
    async with running_worker(make_provider(settings), settings=settings) as worker:
        async with asyncio.timeout(120):
            while True:
                async with http.get(f"{base_url(worker)}/ready") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
        yield worker


async def stream(
    http: aiohttp.ClientSession, worker: Worker, name: str, audio: CallAudio, language: str
) -> list[dict[str, object]]:
    """The call's audio in 200 ms messages at 4x real time, then `end`; every event it got."""
    query = f"encoding=mulaw&sample_rate=8000&language={language}"
    events: list[dict[str, object]] = []
    async with http.ws_connect(f"ws://127.0.0.1:{worker.port}/v1/audio/{name}?{query}") as ws:

        async def talk() -> None:
            step = audio.fmt.bytes_for(CHUNK_S)
            for i in range(0, len(audio.data), step):
                if ws.closed:
                    return  # refused: its events say why
                await ws.send_bytes(audio.data[i : i + step])
                await asyncio.sleep(CHUNK_S / 4)
            await ws.send_str(json.dumps({"type": "end"}))

        async with asyncio.timeout(120), asyncio.TaskGroup() as tg:
            tg.create_task(talk())
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    events.append(json.loads(msg.data))
    return events


async def test_calls_in_spanish_french_and_german_are_detected_and_transcribed_in_their_language(
    detecting_worker: Worker, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    calls = {lang: call(tmp_path, lang, c.sentences) for lang, c in CALLS.items()}
    calls["en"] = call(tmp_path, "en", SENTENCES["en"][:1])
    async with asyncio.TaskGroup() as tg:
        running = {
            lang: tg.create_task(stream(http, detecting_worker, f"call-{lang}", audio, "multi"))
            for lang, audio in calls.items()
        }
    report = []
    for lang, task in running.items():
        events = task.result()
        assert not [e for e in events if e["type"] == "error"], lang
        assert [e["reason"] for e in events if e["type"] == "session_ended"] == ["end"], lang
        finals = [e for e in events if e["type"] == "transcript" and e["is_final"] and e["text"]]
        heard = " ".join(str(e["text"]) for e in finals)
        wer = word_error_rate(calls[lang].text, heard)
        report.append(f"{lang}: WER {wer:.2f}, languages {[e['language'] for e in finals]} | {heard}")
        assert finals and all(e["language"] == lang for e in finals), report[-1]
        assert wer <= MAX_WER[lang], report[-1]
        async with http.get(f"{base_url(detecting_worker)}/v1/calls/call-{lang}/transcript") as response:
            document = await response.json()
        assert document["languages"] == [lang]
        assert {u["language"] for u in document["utterances"] if u["text"]} == {lang}
    print("\n".join(report))

    async with http.ws_connect(
        f"ws://127.0.0.1:{detecting_worker.port}/v1/audio/klingon?encoding=mulaw&sample_rate=8000&language=tlh"
    ) as ws:
        refusal = json.loads((await ws.receive()).data)
        assert refusal["type"] == "error" and refusal["code"] == "language_unsupported", refusal
        assert "tlh" in str(refusal["message"])
        await ws.receive()
        assert ws.close_code == 1008
