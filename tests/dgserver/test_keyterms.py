"""Deepgram's `keyterm` and `keywords` query parameters reach the engine through dg-server."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import pytest
from multidict import MultiDict
from websockets.asyncio.client import connect

from asr_worker.deepgram import protocol
from asr_worker.deepgram.protocol import ListenParams
from asr_worker.dgserver import DeepgramServer
from asr_worker.errors import ParamError
from asr_worker.providers.base import StreamRequest
from asr_worker.providers.mock import MockOptions, MockProvider, MockStream


class RecordingProvider(MockProvider):
    def __init__(self) -> None:
        super().__init__(MockOptions())
        self.requests: list[StreamRequest] = []

    async def open(self, request: StreamRequest) -> MockStream:
        self.requests.append(request)
        return await super().open(request)


async def test_keyterms_and_keywords_reach_the_engines_stream_request() -> None:
    provider = RecordingProvider()
    query = [
        ("encoding", "mulaw"),
        ("sample_rate", "8000"),
        ("keyterm", "Acme Cloud"),
        ("keyterm", "Zorblax"),
        ("keywords", "Quux:2"),
        ("keywords", "Acme Cloud"),
    ]
    server = DeepgramServer(provider)
    async with server.running(), connect(f"{server.url}?{urlencode(query)}") as ws:
        await ws.send(protocol.CLOSE_STREAM)
        async with asyncio.timeout(10):
            async for _message in ws:
                pass
    assert [r.options.keyterms for r in provider.requests] == [("Acme Cloud", "Zorblax", "Quux")]


def test_the_worker_side_sends_keyterms_as_deepgram_takes_them() -> None:
    params = ListenParams(keyterms=("Acme Cloud", "Zorblax"))
    assert ("keyterm", "Acme Cloud") in params.query() and ("keyterm", "Zorblax") in params.query()
    assert ListenParams.from_query(MultiDict(params.query())).keyterms == ("Acme Cloud", "Zorblax")


def test_a_keyterm_too_long_is_the_protocols_own_error() -> None:
    with pytest.raises(ParamError, match="keyterm"):
        ListenParams.from_query({"encoding": "linear16", "sample_rate": "8000", "keyterm": "x" * 101})
