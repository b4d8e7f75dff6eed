"""`redact` on Deepgram's protocol, both ways. dg-server redacts its results as Deepgram does
(the official `deepgram-sdk` live client reads them with `redact=pci` and `redact=numbers`),
and the worker with `ASR_PROVIDER=deepgram` asks Deepgram to redact (the call's values and
ASR_REDACT's) while keeping its own redaction as the guarantee. The mock engine behind
dg-server speaks digit words here (`digits`), as a caller reading out a card does; the real
engine's turn is in tests/integration/test_redaction_local.py."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat
from asr_worker.credentials import Secret
from asr_worker.dgserver import server as dgserver_module
from asr_worker.providers.deepgram import DeepgramOptions, DeepgramProvider
from tests.support.audio import PCM8K, frames, silence, speechlike
from tests.support.client import connect
from tests.support.dg_server import deepgram_worker, running_dg_server

_TAG = re.compile(r"\[(?:CREDIT_CARD|CREDIT_CARD_EXPIRATION|CVV|SSN)_\d+\]|\[REDACTED\]")
_DIGIT_WORD = re.compile(r"\d|\b(?:zero|one|two|three|four|five|six|seven|eight|nine)\b")

# A caller reading out a card in groups: digits, a short pause between the groups.
CARD_READ_OUT = b"".join(speechlike(0.8, seed=s) + silence(0.3) for s in range(4)) + silence(1.2)


async def sdk_results(port: int, fmt: AudioFormat, data: bytes, redact: str) -> list[Any]:
    """Every `Results` message the official SDK's live client receives for `data`."""
    from deepgram import AsyncDeepgramClient
    from deepgram.core.events import EventType
    from deepgram.environment import DeepgramClientEnvironment

    client = AsyncDeepgramClient(
        api_key="sdk-key",
        environment=DeepgramClientEnvironment(
            base=f"http://127.0.0.1:{port}",
            production=f"ws://127.0.0.1:{port}",
            agent=f"ws://127.0.0.1:{port}",
            agent_rest=f"http://127.0.0.1:{port}",
        ),
    )
    received: list[Any] = []
    async with client.listen.v1.connect(
        model="nova-3",
        encoding=str(fmt.encoding),
        sample_rate=fmt.sample_rate,
        interim_results="true",
        redact=redact,
    ) as connection:
        connection.on(EventType.MESSAGE, received.append)
        async with asyncio.TaskGroup() as tg:
            listening = tg.create_task(connection.start_listening())
            for chunk in frames(data, fmt, ms=100):
                await connection.send_media(chunk)
            await connection.send_close_stream()
            await asyncio.wait_for(listening, 30)
    return [m for m in received if type(m).__name__ == "ListenV1Results"]


def shown(result: Any) -> tuple[str, list[tuple[str, str]]]:
    best = result.channel.alternatives[0]
    return best.transcript, [(w.word, w.punctuated_word) for w in best.words]


# deepgram-sdk 7.x uses websockets' legacy client, which warns that it is deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("redact", ["pci", "numbers"])
async def test_the_official_sdk_gets_deepgram_shaped_redacted_results_from_dg_server(redact: str) -> None:
    async with running_dg_server(digits=True) as server:
        results = await sdk_results(server.port, PCM8K, CARD_READ_OUT, redact)
    [connection] = server.connections
    assert ("redact", redact) in connection.query and connection.params.redact == (redact,)
    assert results and any(r.is_final for r in results) and any(not r.is_final for r in results)
    for result in results:
        transcript, words = shown(result)
        assert not _DIGIT_WORD.search(_TAG.sub("", transcript)), transcript
        # Deepgram's form: the transcript is its words, one each, every word a tag here.
        assert transcript == " ".join(p for _, p in words)
        assert all(_TAG.fullmatch(word) for word, _ in words), words
        assert all(w.start <= w.end for w in result.channel.alternatives[0].words)
    finals = " ".join(shown(r)[0] for r in results if r.is_final)
    assert "[CREDIT_CARD_1]" in finals, finals  # sixteen digits in all: a card, under both values


class _NoRedaction:
    """Stands for a Deepgram that missed what it was asked to redact."""

    @staticmethod
    def of(values: frozenset[str]) -> None:
        return None


async def test_a_worker_on_deepgram_asks_deepgram_to_redact_and_keeps_its_own_redaction(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dgserver_module, "Redactor", _NoRedaction)
    async with running_dg_server(digits=True) as server:
        configured = (("redact", "numbers"),)  # DEEPGRAM_PARAMS: kept, the call's added
        provider = DeepgramProvider(
            DeepgramOptions(url=server.url, api_key=Secret("k"), extra_params=configured)
        )
        async with deepgram_worker(server, provider=provider, redact=("ssn",)) as worker:
            call = await connect(http, worker, "dg-pci", "encoding=linear16&sample_rate=8000&redact=pci")
            await call.send_frames(frames(CARD_READ_OUT))
            await call.end()
            events = await call.collect()
    [connection] = server.connections
    assert sorted(v for k, v in connection.query if k == "redact") == ["numbers", "pci", "ssn"]
    assert any(_DIGIT_WORD.search(text) for text in connection.sent), "this Deepgram answered in clear"
    texts = [str(e["text"]) for e in events if e["type"] == "transcript"]
    assert texts and not [t for t in texts if _DIGIT_WORD.search(_TAG.sub("", t))], texts
    assert any("[CREDIT_CARD_1]" in t for t in texts), texts
