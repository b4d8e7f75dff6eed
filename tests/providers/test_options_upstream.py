"""A call's own Deepgram options go to Deepgram with its stream, and what Deepgram reports of a
result (`search` hits, `entities`, `languages`) reaches the call's transcript events. Real
worker, real sockets: dg-server as the Deepgram for the options and search, and, for what
dg-server does not produce (entities, languages), a server that answers with a result shaped
as Deepgram documents it (the SDK's ListenV1Results type)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from websockets.asyncio.server import ServerConnection, serve

from asr_worker.credentials import Secret
from asr_worker.deepgram import protocol
from asr_worker.providers.deepgram import DeepgramOptions, DeepgramProvider
from asr_worker.providers.mock import expected_words
from tests.conftest import running_worker
from tests.support.audio import PCM8K, frames, silence, speechlike
from tests.support.client import connect
from tests.support.dg_server import deepgram_worker, running_dg_server

PCM = "encoding=linear16&sample_rate=8000&channels=1"


def searches(event: dict[str, object]) -> list[dict[str, Any]]:
    """A transcript event's `search` (none when it has no such field)."""
    found = event.get("search", [])
    assert isinstance(found, list)
    return found


async def test_a_calls_options_reach_deepgram_over_the_configured_ones_and_search_hits_come_back(
    http: aiohttp.ClientSession,
) -> None:
    audio = speechlike(1.0) + silence(1.2)
    term = expected_words(audio, PCM8K)[2]  # a word the engine behind this Deepgram will say
    asked = "&".join(
        (
            PCM,
            "endpointing=250",
            "utterance_end_ms=1500",
            "numerals=true",
            "profanity_filter=true",
            f"search={term}",
            "replace=foo:bar",
        )
    )
    configured = (("endpointing", "500"), ("search", "configured"), ("smart_format", "true"))
    async with running_dg_server() as server:
        provider = DeepgramProvider(
            DeepgramOptions(url=server.url, api_key=Secret("k"), extra_params=configured)
        )
        async with deepgram_worker(server, provider=provider) as worker:
            options = await connect(http, worker, "dg-options", asked)
            plain = await connect(http, worker, "dg-plain", PCM)
            for call in (options, plain):
                await call.send_frames(frames(audio))
                await call.end()
                await call.collect()
    with_options, without = (dict(c.query) for c in server.connections)
    query = server.connections[0].query
    assert with_options["endpointing"] == "250" and [v for k, v in query if k == "endpointing"] == ["250"]
    assert with_options["utterance_end_ms"] == "1500" and with_options["numerals"] == "true"
    assert with_options["profanity_filter"] == "true" and with_options["smart_format"] == "true"
    assert [v for k, v in query if k == "search"] == ["configured", term]  # added to the configured one
    assert [v for k, v in query if k == "replace"] == ["foo:bar"]
    # A call that names none gets the worker's defaults and DEEPGRAM_PARAMS', nothing more.
    assert (
        without["endpointing"] == "500"
        and "numerals" not in without
        and without["utterance_end_ms"] == "1000"
    )
    hits = [
        hit
        for event in options.of("transcript")
        for found in searches(event)
        if found["query"] == term
        for hit in found["hits"]
    ]
    assert hits and all(0 <= hit["start"] < hit["end"] <= 2.2 for hit in hits)
    searched = {found["query"] for event in plain.of("transcript") for found in searches(event)}
    assert searched <= {"configured"}  # DEEPGRAM_PARAMS' search is every call's


# A final as Deepgram documents it with language=multi, search and detect_entities.
DOCUMENTED_RESULT = {
    "type": "Results",
    "channel_index": [0, 1],
    "duration": 1.5,
    "start": 0.0,
    "is_final": True,
    "speech_final": True,
    "from_finalize": False,
    "channel": {
        "search": [
            {"query": "refund", "hits": [{"confidence": 0.87, "start": 0.9, "end": 1.3, "snippet": "refund"}]}
        ],
        "alternatives": [
            {
                "transcript": "i want three refund",
                "confidence": 0.95,
                "languages": ["en", "es"],
                "words": [
                    {"word": "i", "start": 0.1, "end": 0.2, "confidence": 0.9, "language": "en"},
                    {"word": "want", "start": 0.2, "end": 0.5, "confidence": 0.9, "language": "en"},
                    {"word": "three", "start": 0.5, "end": 0.9, "confidence": 0.9, "language": "en"},
                    {"word": "refund", "start": 0.9, "end": 1.3, "confidence": 0.9, "language": "en"},
                ],
            }
        ],
    },
    "entities": [
        {
            "label": "CARDINAL",
            "value": "3",
            "raw_value": "three",
            "confidence": 0.93,
            "start_word": 2,
            "end_word": 3,
        }
    ],
    "metadata": {
        "request_id": "req",
        "model_info": {"name": "nova-3", "version": "v", "arch": "nova-3"},
        "model_uuid": "uuid",
    },
}


@asynccontextmanager
async def documented_deepgram() -> AsyncIterator[str]:
    """A server that answers a stream's first audio with DOCUMENTED_RESULT, and CloseStream with
    Metadata and a close 1000."""

    async def handler(ws: ServerConnection) -> None:
        answered = False
        async for message in ws:
            if isinstance(message, bytes) and not answered:
                answered = True
                await ws.send(json.dumps(DOCUMENTED_RESULT))
            elif isinstance(message, str) and json.loads(message).get("type") == "CloseStream":
                await ws.send(json.dumps({"type": "Metadata", "request_id": "req", "duration": 1.5}))
                await ws.close(1000)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}{protocol.LISTEN_PATH}"


async def test_search_entities_and_languages_from_deepgram_survive_into_transcript_events(
    http: aiohttp.ClientSession,
) -> None:
    async with documented_deepgram() as url:
        provider = DeepgramProvider(DeepgramOptions(url=url, api_key=Secret("k")))
        async with running_worker(provider) as worker:
            calls = {}
            for iid, query in (("dg-extras", PCM), ("dg-extras-redacted", PCM + "&redact=numbers")):
                call = await connect(http, worker, iid, query)
                await call.send_frames(frames(speechlike(0.5)))
                await asyncio.sleep(0)
                await call.end()
                await call.collect()
                calls[iid] = call
    [plain] = [e for e in calls["dg-extras"].of("transcript") if e["is_final"]]
    assert plain["languages"] == ["en", "es"] and plain["language"] == "en"
    assert plain["search"] == [
        {"query": "refund", "hits": [{"confidence": 0.87, "start": 0.9, "end": 1.3, "snippet": "refund"}]}
    ]
    assert plain["entities"] == DOCUMENTED_RESULT["entities"]
    # A call that redacts never gets a number in an entity or a snippet: "3" quotes the words.
    [redacted] = [e for e in calls["dg-extras-redacted"].of("transcript") if e["is_final"]]
    entities = redacted["entities"]
    assert isinstance(entities, list) and len(entities) == 1
    assert (entities[0]["value"], entities[0]["raw_value"]) == ("[REDACTED]", "[REDACTED]")
