"""A call's keyterms, named on the ingest socket, go to each provider the way it takes them:
into the local engine's Whisper prompt (after the worker-wide ones), to Deepgram as one
`keyterm` query parameter each (the project's own dg-server, which records every
connection, stands in for it), to an OpenAI Realtime server in the transcription session's
`prompt` (the worker's own `/v1/realtime` behind a recording proxy). Real worker, real
sockets."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.call_options import CallOptions
from asr_worker.credentials import Secret
from asr_worker.dgserver import Faults
from asr_worker.engine.vad import SileroVad
from asr_worker.openai_realtime.protocol import MAX_PROMPT_CHARS
from asr_worker.providers.deepgram import DeepgramOptions, DeepgramProvider
from asr_worker.providers.local import LocalOptions, LocalProvider
from asr_worker.providers.mock import expected_words
from asr_worker.providers.openai import OpenAIOptions, OpenAIProvider, keyterms_prompt
from tests.conftest import running_worker
from tests.support.audio import PCM8K, frames, silence, speechlike
from tests.support.client import connect
from tests.support.dg_server import deepgram_worker, running_dg_server
from tests.support.rt_server import running_rt_server
from tests.support.speech import SENTENCES, Speech

from .test_local import FakeWhisper

ULAW = AudioFormat(Encoding.MULAW, 8000, 1)
TERMS = [
    ("keyterm", "Acme Cloud"),
    ("keywords", "Zorblax:1.5"),
    ("keyterm", "Acme Cloud"),
    ("keyterm", "ZX-1234"),
]
EXPECTED = ("Acme Cloud", "Zorblax", "ZX-1234")


def query(fmt: str = "encoding=linear16&sample_rate=8000&channels=1") -> str:
    return f"{fmt}&{urlencode(TERMS)}"


async def test_deepgram_receives_the_calls_keyterms_as_keyterm_parameters(
    http: aiohttp.ClientSession,
) -> None:
    audio = speechlike(0.8)
    async with running_dg_server() as server, deepgram_worker(server) as worker:
        call = await connect(http, worker, "dg-terms", query())
        await call.send_frames(frames(audio))
        await call.end()
        await call.collect()
    assert call.final_words() == expected_words(audio, PCM8K) and not call.of("error")
    [conn] = server.connections
    assert [v for k, v in conn.query if k == "keyterm"] == list(EXPECTED)
    assert conn.params.keyterms == EXPECTED  # what dg-server's own parser made of them


async def test_a_deepgram_reconnect_asks_for_the_keyterms_again(http: aiohttp.ClientSession) -> None:
    audio = speechlike(1.3) + silence(0.5) + speechlike(1.2, seed=3)
    async with (
        running_dg_server(faults=Faults(drop_after_ms=1500, fault_connections=1)) as server,
        deepgram_worker(server) as worker,
    ):
        call = await connect(http, worker, "dg-drop", query())
        await call.send_frames(frames(audio), pace_s=0.004)
        await call.end()
        await call.collect()
    assert call.of("session_ended")[0]["reconnects"] == 1
    assert [c.params.keyterms for c in server.connections] == [EXPECTED, EXPECTED]


def test_configured_keyterms_are_kept_and_the_calls_are_added_once() -> None:
    """A `keyterm` in DEEPGRAM_PARAMS (or DEEPGRAM_URL's query) is for every call: a call's own
    are added to it, a term both name goes once, and a call with none asks for the configured
    ones alone."""
    provider = DeepgramProvider(
        DeepgramOptions(
            url="ws://dg.example/v1/listen?keyterm=Everywhere",
            extra_params=(("keyterm", "Acme Cloud"), ("smart_format", "true")),
        )
    )
    fmt = AudioFormat(Encoding.MULAW, 8000, 1)

    def keyterms(url: str) -> list[str]:
        return [v for k, v in parse_qsl(urlsplit(url).query) if k == "keyterm"]

    with_terms = provider.url_for(fmt, CallOptions(keyterms=("Zorblax", "Acme Cloud")))
    assert sorted(keyterms(with_terms)) == ["Acme Cloud", "Everywhere", "Zorblax"]
    assert dict(parse_qsl(urlsplit(with_terms).query))["smart_format"] == "true"
    assert sorted(keyterms(provider.url_for(fmt))) == ["Acme Cloud", "Everywhere"]
    plain = DeepgramProvider(DeepgramOptions(url="ws://dg.example/v1/listen"))
    assert keyterms(plain.url_for(fmt, CallOptions(keyterms=("a b", "c&d=e")))) == [
        "a b",
        "c&d=e",
    ]  # encoded, not pasted
    assert keyterms(plain.url_for(fmt)) == []


async def test_openai_receives_the_calls_keyterms_in_the_transcription_prompt(
    http: aiohttp.ClientSession,
) -> None:
    ulaw = "encoding=mulaw&sample_rate=8000&channels=1"
    async with running_rt_server() as server:
        provider = OpenAIProvider(
            OpenAIOptions(base_url=server.base_url, api_key=Secret("sk-test-0123456789"))
        )
        async with running_worker(provider) as worker:
            for call in [
                await connect(http, worker, "oa-terms", query(ulaw)),
                await connect(http, worker, "oa-plain", ulaw),
            ]:
                await call.send_frames(frames(speechlike(0.4, ULAW), ULAW))
                await call.end()
                await call.collect()
                assert not call.of("error")
    with_terms, without = server.connections
    [update] = with_terms.sent("session.update")
    session = update["session"]
    assert isinstance(session, dict)
    assert session["audio"]["input"]["transcription"]["prompt"] == "Acme Cloud, Zorblax, ZX-1234"
    [updated] = with_terms.of("session.updated")  # the server took it
    assert updated["session"]["audio"]["input"]["transcription"]["prompt"] == "Acme Cloud, Zorblax, ZX-1234"  # type: ignore[index]
    [update] = without.sent("session.update")
    assert "prompt" not in update["session"]["audio"]["input"]["transcription"]  # type: ignore[index]


def test_the_prompt_lists_as_many_whole_terms_as_fit() -> None:
    assert keyterms_prompt(()) is None
    terms = tuple(f"{n:03d}" + "x" * 96 for n in range(100))  # 100 terms of 100 characters
    prompt = keyterms_prompt(terms)
    assert prompt is not None and len(prompt) <= MAX_PROMPT_CHARS
    kept = prompt.split(", ")
    assert kept == list(terms[: len(kept)]) and len(kept) == (MAX_PROMPT_CHARS + 2) // 102


async def test_the_local_engine_prompts_whisper_with_the_worker_and_call_keyterms(
    http: aiohttp.ClientSession, speech: Speech
) -> None:
    """Through the real engine (Silero VAD, the decode pool) with a fake Whisper that records
    the prompt of every decode."""
    call_audio = speech.call(SENTENCES[:1], 8000, Encoding.MULAW, gap_s=0.5)
    decoder = FakeWhisper()
    provider = LocalProvider(
        LocalOptions(num_workers=1, keyterms=("Acme Cloud", "Everywhere")),
        decoder=decoder,
        vad=SileroVad.load(),
    )
    async with running_worker(provider) as worker:
        call = await connect(http, worker, "local-terms", query("encoding=mulaw&sample_rate=8000&channels=1"))
        await call.send_frames(frames(call_audio.data, call_audio.fmt))
        await call.end()
        await call.collect()
    assert [e for e in call.of("transcript") if e["is_final"] and e["text"]] and not call.of("error")
    assert decoder.prompts and all(p == "Acme Cloud, Everywhere, Zorblax, ZX-1234." for p in decoder.prompts)
