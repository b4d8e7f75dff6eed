"""A call's keyterms named on the ingest socket's query (Deepgram's `keyterm` and `keywords`)
reach every provider stream the call opens: a real worker, real sockets on both of the
socket's roads (the raw path a fresh connection takes, aiohttp's for a kept-alive one), and
the mock provider, whose streams keep the request they were opened with."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import aiohttp
import pytest

from asr_worker.dgserver import Faults
from asr_worker.providers.mock import MockOptions, MockProvider
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.audio import frames, speechlike
from tests.support.client import CallClient, audio_url, connect
from tests.support.dg_server import deepgram_provider, deepgram_worker, running_dg_server

FORMAT = [("encoding", "linear16"), ("sample_rate", "8000"), ("channels", "1")]
TERMS = [
    ("keyterm", "Acme Cloud"),
    ("keyterm", "Zorblax"),
    ("keywords", "Quux:2"),  # Deepgram's boost, dropped
    ("keywords", "Acme  Cloud"),  # the same term again (whitespace runs are one space)
    ("keyterm", "order ZX-1234"),
]
EXPECTED = ("Acme Cloud", "Zorblax", "Quux", "order ZX-1234")


def query(*pairs: tuple[str, str]) -> str:
    return urlencode([*FORMAT, *pairs])


async def finish(call: CallClient, seconds: float = 0.4) -> None:
    await call.send_frames(frames(speechlike(seconds)))
    await call.end()
    await call.collect()
    assert not call.of("error") and call.of("session_ended")[0]["reason"] == "end"


@pytest.mark.parametrize("road", ["raw", "aiohttp"])
async def test_repeated_keyterm_and_keywords_values_reach_the_provider_in_order_once_each(road: str) -> None:
    provider = MockProvider()
    async with (
        running_worker(provider) as worker,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http,
    ):
        if road == "aiohttp":  # a kept-alive connection: the router gave it to aiohttp
            async with http.get(base_url(worker) + "/health") as response:
                assert response.status == 200
        call = await connect(http, worker, f"terms-{road}", query(*TERMS))
        assert worker.http_server is not None
        assert worker.http_server.raw_connections == (1 if road == "raw" else 0)
        await finish(call)
    [stream] = provider.streams_for(f"terms-{road}")
    assert stream.request.options.keyterms == EXPECTED


async def test_a_call_without_keyterms_asks_for_none(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    provider = mock_provider
    await finish(await connect(http, worker, "plain"))
    assert provider.streams_for("plain")[0].request.options.keyterms == ()


async def test_the_source_that_starts_the_call_fixes_its_keyterms(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    provider = mock_provider
    first = await connect(http, worker, "fixed", query(("keyterm", "Zorblax")))
    await first.next_event("session_started")
    second = await connect(http, worker, "fixed", query(("keyterm", "Other"), ("keywords", "More")))
    await second.send_frames(frames(speechlike(0.4)))
    await second.ws.close()
    await finish(first)
    assert [s.request.options.keyterms for s in provider.streams_for("fixed")] == [("Zorblax",)]


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ([("keyterm", "x" * 101)], "keyterm must be at most 100 characters"),
        ([("keywords", "y" * 101 + ":3")], "keywords must be at most 100 characters"),
        ([("keyterm", f"term{n}") for n in range(101)], "at most 100 keyterm/keywords values"),
    ],
)
async def test_a_bad_keyterm_refuses_the_socket_with_the_deepgram_servers_reason_and_one_log_line(
    worker: Worker,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    terms: list[tuple[str, str]],
    message: str,
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.ingest")
    ws = await http.ws_connect(audio_url(worker, "bad-terms", query(*terms)))
    error = json.loads((await ws.receive()).data)
    assert error["type"] == "error" and error["code"] == "bad_request" and error["message"] == message
    await ws.receive()
    assert ws.close_code == 1008 and worker.manager.sessions == []
    refusals = [
        r for r in caplog.records if r.name == "asr_worker.ingest" and r.getMessage() == "ingest refused"
    ]
    assert len(refusals) == 1 and refusals[0].__dict__["reason"] == message
    await finish(await connect(http, worker, "next", query(*terms[:100]) if len(terms) > 100 else None))


async def test_every_reconnect_asks_for_the_calls_keyterms_again(http: aiohttp.ClientSession) -> None:
    provider = MockProvider(MockOptions(drop_after_ms=600, drop_streams=2))
    async with running_worker(provider) as worker:
        call = await connect(http, worker, "flaky", query(*TERMS))
        await call.send_frames(frames(speechlike(2.4, seed=3)), pace_s=0.002)
        await call.end()
        await call.collect()
    assert call.of("session_ended")[0]["reconnects"] == 2
    requests = [s.request for s in provider.streams_for("flaky")]
    assert [r.reconnect for r in requests] == [False, True, True]
    assert [r.options.keyterms for r in requests] == [EXPECTED] * 3


async def test_a_call_moved_to_the_fallback_provider_keeps_its_keyterms(http: aiohttp.ClientSession) -> None:
    """The Deepgram primary drops the call and refuses every handshake after: the call moves
    to the mock fallback, whose stream is asked for the same keyterms."""
    fallback = MockProvider(MockOptions(), name="mock")
    faults = Faults(drop_after_ms=400, reject_status=503, accept_first=1)
    async with running_dg_server(faults=faults) as server:
        primary = deepgram_provider(server, breaker_threshold=1, breaker_cooldown_s=60.0)
        async with deepgram_worker(server, provider=primary, fallback=fallback) as worker:
            call = await connect(http, worker, "moved", query(*TERMS))
            await call.send_frames(frames(speechlike(1.2)), pace_s=0.002)
            await call.next_event("provider_changed")
            await call.end()
            await call.collect()
    assert server.connections[0].params.keyterms == EXPECTED
    assert [s.request.options.keyterms for s in fallback.streams_for("moved")] == [EXPECTED]


@pytest.mark.parametrize("road", ["raw", "aiohttp"])
async def test_the_most_keyterms_allowed_reach_deepgram_on_either_road(road: str) -> None:
    """100 terms of 100 characters: an 11 KB request line into the worker and out to dg-server
    (aiohttp's parser takes 8190 bytes unless told more)."""
    terms = tuple(f"{n:03d}" + "x" * 97 for n in range(100))
    async with (
        running_dg_server() as server,
        deepgram_worker(server) as worker,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http,
    ):
        if road == "aiohttp":
            async with http.get(base_url(worker) + "/health") as response:
                assert response.status == 200
        call = await connect(http, worker, f"most-{road}", query(*[("keyterm", t) for t in terms]))
        await finish(call)
    assert [c.params.keyterms for c in server.connections] == [terms]
