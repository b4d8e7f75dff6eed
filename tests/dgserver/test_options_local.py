"""dg-server's options where speech is the point, on the real local engine with a voice like a
person's, through the official `deepgram-sdk` client: `endpointing` changes when finals come
(and `false` means no speech_final at all), `numerals` writes spoken numbers in digits, and
`search` finds a spoken word with its time; a language the engine was not loaded for is refused."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from asr_worker.core.audio import Encoding
from asr_worker.dgserver import DeepgramServer
from asr_worker.providers.local import LocalOptions, LocalProvider
from tests.dgserver.test_options import _client, _dump, refusal
from tests.support.speech import CallAudio, Speech

GREETING = "Thank you for calling, how can I help you today?"
ORDER = "My order number is nine two eight, and it costs twenty three dollars."
DELIVERY = "I would like to change the delivery address for my package."


@asynccontextmanager
async def local_dg_server() -> AsyncIterator[DeepgramServer]:
    provider = LocalProvider(LocalOptions(num_workers=2))
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(provider.run())
        try:
            async with DeepgramServer(provider).running() as server:
                yield server
        finally:
            task.cancel()


async def stream(port: int, call: CallAudio, **query: object) -> list[dict[str, Any]]:
    """Every message the SDK receives for `call`, sent in 100 ms messages as fast as taken."""
    params: dict[str, Any] = {"model": "nova-3", "encoding": "mulaw", "sample_rate": 8000, **query}
    received: list[dict[str, Any]] = []
    async with _client(port).listen.v1.connect(**params) as connection:
        step = call.fmt.bytes_for(0.1)
        for i in range(0, len(call.data), step):
            await connection.send_media(call.data[i : i + step])
        await connection.send_close_stream()
        async with asyncio.timeout(60):
            async for message in connection:
                received.append(_dump(message))
    return received


def spoken_finals(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m
        for m in messages
        if m["type"] == "Results" and m.get("is_final") and m["channel"]["alternatives"][0]["words"]
    ]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK uses websockets' legacy client
@pytest.mark.timeout(240)
async def test_the_real_engine_ends_utterances_at_the_streams_endpointing_and_formats_and_searches(
    natural_speech: Speech,
) -> None:
    # Two sentences 0.6 s apart, then two seconds of silence.
    apart = natural_speech.call([GREETING, DELIVERY], 8000, Encoding.MULAW, gap_s=0.6, tail_s=2.0)
    numbers = natural_speech.call([ORDER, DELIVERY], 8000, Encoding.MULAW, gap_s=1.0)
    async with local_dg_server() as server:
        short = await stream(server.port, apart, endpointing=250)
        long = await stream(server.port, apart, endpointing=1500)
        off = await stream(server.port, apart, endpointing="false")
        formatted = await stream(server.port, numbers, numerals="true", search="delivery")
        plain = await stream(server.port, numbers)
        # A language no engine here transcribes: Deepgram's refusal, not English words.
        status, reason = await refusal(server.port, {"language": "tlh"})
        assert status == 400 and "No such model/language/tier combination found" in reason, reason

    def endpointed(messages: list[dict[str, Any]]) -> list[str]:
        return [
            m["channel"]["alternatives"][0]["transcript"]
            for m in spoken_finals(messages)
            if m["speech_final"]
        ]

    # 250 ms: the pause between the sentences ends the first; 1500 ms: it does not.
    assert len(endpointed(short)) == 2, endpointed(short)
    assert len(endpointed(long)) == 1 and "delivery" in endpointed(long)[0], endpointed(long)
    # false: finals still come, at the engine's own bounds, but none is speech_final.
    assert spoken_finals(off) and endpointed(off) == []

    said = " ".join(m["channel"]["alternatives"][0]["transcript"] for m in spoken_finals(formatted))
    assert re.search(r"\b23\b", said) and "twenty" not in said.lower(), said
    plain_said = " ".join(m["channel"]["alternatives"][0]["transcript"] for m in spoken_finals(plain))
    assert not re.search(r"\d", plain_said) and "twenty three" in plain_said.lower(), plain_said

    delivery_said = numbers.spoken[1]
    hits = [
        hit
        for m in spoken_finals(formatted)
        for found in m["channel"]["search"]
        for hit in found["hits"]
        if found["query"] == "delivery"
    ]
    assert hits, "the spoken word is found"
    best = max(hits, key=lambda h: h["confidence"])
    assert best["snippet"] == "delivery" and best["confidence"] > 0.5
    assert delivery_said.start_s - 0.3 <= best["start"] < best["end"] <= delivery_said.end_s + 0.3
