"""A call's `language` goes to each remote provider the way it takes one: Deepgram's `language`
query parameter (over DEEPGRAM_LANGUAGE; the project's own dg-server records it), OpenAI's
session `transcription.language` (ISO-639-1; none for `multi`, where the model detects it).
Every transcript then says the language it was transcribed in: the one Deepgram names in a
result (`multi`), else the one the stream asked for. Real worker, real sockets."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import aiohttp

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.provider_events import TranscriptResult
from asr_worker.credentials import Secret
from asr_worker.deepgram import protocol
from asr_worker.providers.deepgram import DeepgramOptions, DeepgramProvider
from asr_worker.providers.openai import OpenAIOptions, OpenAIProvider, transcription_language
from tests.conftest import running_worker
from tests.support.audio import frames, speechlike
from tests.support.client import connect
from tests.support.dg_server import deepgram_worker, running_dg_server
from tests.support.rt_server import running_rt_server

ULAW = AudioFormat(Encoding.MULAW, 8000, 1)
PCM = "encoding=linear16&sample_rate=8000&channels=1"


async def test_deepgram_is_asked_for_the_calls_language_and_transcripts_carry_it(
    http: aiohttp.ClientSession,
) -> None:
    async with running_dg_server() as server, deepgram_worker(server) as worker:
        for iid, asked in (("dg-es", "&language=es"), ("dg-default", ""), ("dg-multi", "&language=multi")):
            call = await connect(http, worker, iid, PCM + asked)
            await call.send_frames(frames(speechlike(0.6)))
            await call.end()
            await call.collect()
            assert call.of("transcript") and not call.of("error")
            languages = {t.get("language") for t in call.of("transcript")}
            # multi: Deepgram names what it hears in each result; this server names none
            assert languages == {{"dg-es": "es", "dg-default": "en-US", "dg-multi": None}[iid]}
    asked_for = [[v for k, v in c.query if k == "language"] for c in server.connections]
    assert asked_for == [["es"], ["en-US"], ["multi"]]


def test_the_calls_language_is_over_every_configured_one() -> None:
    provider = DeepgramProvider(
        DeepgramOptions(url="wss://dg.example/v1/listen?language=fr", api_key=Secret("k"), language="de")
    )
    fmt = AudioFormat(Encoding.MULAW, 8000, 1)
    assert [v for k, v in _query(provider.url_for(fmt)) if k == "language"] == ["fr"]
    assert [v for k, v in _query(provider.url_for(fmt, (), "es")) if k == "language"] == ["es"]
    assert (provider.language_for(None), provider.language_for("es"), provider.language_for("multi")) == (
        "fr",
        "es",
        None,
    )


def test_a_deepgram_result_names_the_language_it_detected() -> None:
    """With `language=multi` Deepgram lists the languages it heard, most spoken first, and
    names each word's; either is the result's language, over the one the stream asked for."""
    alternative: dict[str, object] = {
        "transcript": "hola amigo",
        "confidence": 0.9,
        "languages": ["es", "en"],
        "words": [{"word": "hola", "start": 0.1, "end": 0.4, "confidence": 0.9, "language": "es"}],
    }
    result = {
        "type": "Results",
        "channel_index": [0, 1],
        "start": 0.0,
        "duration": 1.0,
        "is_final": True,
        "channel": {"alternatives": [alternative]},
    }
    parsed = protocol.parse_server_message(json.dumps(result), 1, "en-US")
    assert isinstance(parsed, TranscriptResult) and parsed.language == "es"
    del alternative["languages"]
    parsed = protocol.parse_server_message(json.dumps(result), 1)
    assert isinstance(parsed, TranscriptResult) and parsed.language == "es"  # the word's
    alternative["words"] = []
    parsed = protocol.parse_server_message(json.dumps(result), 1, "en-US")
    assert isinstance(parsed, TranscriptResult) and parsed.language == "en-US"  # asked for


async def test_openai_is_asked_for_the_calls_language(http: aiohttp.ClientSession) -> None:
    ulaw = "encoding=mulaw&sample_rate=8000&channels=1"
    async with running_rt_server() as server:
        provider = OpenAIProvider(
            OpenAIOptions(base_url=server.base_url, api_key=Secret("sk-test-0123456789"), language="de")
        )
        async with running_worker(provider) as worker:
            for iid, asked in (("oa-es", "&language=es-ES"), ("oa-multi", "&language=multi")):
                call = await connect(http, worker, iid, ulaw + asked)
                await call.send_frames(frames(speechlike(0.4, ULAW), ULAW))
                await call.end()
                await call.collect()
                assert not call.of("error")
    spanish, detected = (transcription(c.sent("session.update")[0]) for c in server.connections)
    assert spanish["language"] == "es"
    assert "language" not in detected
    assert transcription_language(None, "de") == "de" and transcription_language(None, None) is None


def transcription(update: dict[str, object]) -> dict[str, object]:
    """A GA session.update's `session.audio.input.transcription`."""
    value: object = update
    for name in ("session", "audio", "input", "transcription"):
        assert isinstance(value, dict)
        value = value[name]
    assert isinstance(value, dict)
    return value


def _query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query)
