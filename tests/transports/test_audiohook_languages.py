"""AudioHook and a call's language, on the local provider with fake decoders (real VAD on real
speech): `opened` lists the engine's languages, `open`'s language is the call's and is on its
transcripts, `update` switches the call to another language from then on (its utterances go
to the engine that speaks it, answered `updated`), and an `update` to a language no engine
here knows changes nothing and is not answered. The messages are Genesys's, as its AudioHook
protocol documentation and reference implementation define them (its reference client has no
way to send `update`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from asr_worker.audiohook.signature import ApiKeys
from asr_worker.core.audio import Encoding
from asr_worker.engine.vad import SileroVad
from asr_worker.providers.local import LocalOptions, LocalProvider
from asr_worker.transports import audiohook as transport
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.providers.test_local_languages import FakeEngine
from tests.support.audiohook import Hook, connect
from tests.support.speech import SENTENCES, Speech

KEYS = ApiKeys.parse("key-1")
MONO_PCMU = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}


@pytest.fixture(autouse=True)
def no_failure_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "FAILURE_DELAY_S", 0.0)


@pytest.fixture
def engines() -> tuple[FakeEngine, FakeEngine]:
    return FakeEngine("moonshine"), FakeEngine("whisper")


@pytest.fixture
async def local_worker(engines: tuple[FakeEngine, FakeEngine]) -> AsyncIterator[Worker]:
    moonshine, whisper = engines
    provider = LocalProvider(
        LocalOptions(num_workers=1, first_interim_s=1000.0, interim_interval_s=1000.0, capacity=100),
        decoder=moonshine,
        vad=SileroVad.load(),
        others={"whisper": whisper},
    )
    async with running_worker(provider, audiohook_api_keys=KEYS) as worker:
        yield worker


async def final_transcript(hook: Hook) -> dict[str, Any]:
    """The next final with words among the server's messages."""
    async with asyncio.timeout(15):
        while True:
            message = await hook.receive()
            assert message is not None, hook.received
            if message["type"] != "event":
                continue
            for entity in message["parameters"]["entities"]:
                data = entity["data"]
                if entity["type"] == "transcript" and data["isFinal"]:
                    return dict(data)


async def test_open_names_the_calls_language_and_update_switches_it_from_then_on(
    local_worker: Worker, http: aiohttp.ClientSession, speech: Speech, engines: tuple[FakeEngine, FakeEngine]
) -> None:
    moonshine, whisper = engines
    hook = await connect(http, local_worker)
    opened = await hook.open(media=[MONO_PCMU], language="en-US", supportedLanguages=True)
    supported = opened["parameters"]["supportedLanguages"]
    assert {"en", "es", "fr", "de", "multi"} <= set(supported) and len(supported) == 101, "the engine's own"

    english = speech.call(SENTENCES[:1], 8000, Encoding.MULAW, tail_s=1.0)
    await hook.audio(english.data, bytes_per_second=8000)
    first = await final_transcript(hook)
    assert first["alternatives"][0]["languages"] == ["en-US"]
    assert first["alternatives"][0]["interpretations"][0]["transcript"] == "moonshine-en"

    await hook.send("update", {"language": "es-ES"})
    assert (await hook.expect("updated"))["parameters"] == {}
    spanish = speech.call(SENTENCES[1:2], 8000, Encoding.MULAW, lead_s=0.2, tail_s=1.0)
    await hook.audio(spanish.data, bytes_per_second=8000)
    second = await final_transcript(hook)
    assert second["alternatives"][0]["languages"] == ["es-ES"]
    assert second["alternatives"][0]["interpretations"][0]["transcript"] == "whisper-es"
    assert moonshine.asked == ["en"] and whisper.asked == ["es"]

    await hook.send("update", {"language": "tlh-KL"})  # no engine here speaks Klingon
    await hook.send("ping", {})
    assert (await hook.expect("pong"))["type"] == "pong", "not answered `updated`"
    assert not [m for m in hook.received if m["type"] == "updated"][1:]
    await hook.close()
    await hook.ws.close()
