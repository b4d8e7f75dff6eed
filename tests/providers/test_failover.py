"""Failover end to end: a real worker whose primary is the Deepgram provider, pointed at the
Deepgram-protocol test server (which records every connection and refuses or drops on
demand), and whose fallback is the mock provider (its words follow from the audio, so what a
call must come out as is exact). Real sockets; the core's own tests cover each trigger on a
fake clock (tests/core/test_failover.py)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from asr_worker.dgserver import Faults
from asr_worker.providers.mock import MockOptions, MockProvider, expected_words
from asr_worker.worker import Worker
from tests.conftest import base_url
from tests.support.audio import PCM8K, frames, silence, speechlike
from tests.support.client import CallClient, connect
from tests.support.dg_server import deepgram_provider, deepgram_worker, running_dg_server
from tests.support.wait import until


async def _metrics(http: aiohttp.ClientSession, worker: Worker) -> str:
    async with http.get(f"{base_url(worker)}/metrics") as response:
        return await response.text()


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _finals(call: CallClient) -> list[dict[str, object]]:
    return [e for e in call.of("transcript") if e["is_final"]]


def _words_of(events: list[dict[str, object]]) -> list[str]:
    return [w for e in events for w in str(e["text"]).split()]


def _word_starts(events: list[dict[str, object]]) -> list[float]:
    starts = []
    for event in events:
        words = event["words"]
        assert isinstance(words, list)
        starts += [float(w["start"]) for w in words]
    return starts


async def test_a_call_whose_provider_drops_and_then_refuses_finishes_on_the_fallback_word_for_word(
    http: aiohttp.ClientSession,
) -> None:
    """The server serves the call's first 1.5 s, drops it, and refuses every handshake after:
    the words before the drop come from Deepgram, the rest from the fallback, none missing
    or repeated, in call time, with one `provider_changed`."""
    audio = speechlike(1.3) + silence(0.5) + speechlike(2.2, seed=3)
    faults = Faults(drop_after_ms=1500, fault_connections=1, reject_status=503, accept_first=1)
    fallback = MockProvider(MockOptions(), name="mock")
    async with (
        running_dg_server(faults=faults) as server,
        deepgram_worker(server, fallback=fallback) as worker,
    ):
        call = await connect(http, worker, "outage-1")
        await call.send_frames(frames(audio), pace_s=0.01)
        await call.end()
        await call.collect()
        metrics = await _metrics(http, worker)
    # The server: one connection, cut after 1.5 s of audio; every later handshake refused.
    (first,) = server.connections
    assert first.closed_by in ("abort", "server") and len(server.handshakes) >= 2
    assert all(h.status == 503 for h in list(server.handshakes)[1:])
    # The fallback heard exactly the audio no Deepgram final covered, from that byte on.
    (changed,) = call.of("provider_changed")
    assert (changed["from"], changed["to"], changed["reason"]) == ("deepgram", "mock", "handshake_refused")
    covered = PCM8K.bytes_for(float(str(changed["at"])))
    assert 0 < covered < len(first.audio)
    (moved,) = fallback.streams_for("outage-1")
    assert bytes(first.audio[:covered]) + bytes(moved.received) == audio
    # The words: Deepgram's up to the drop, the fallback's after, the whole call once, in order.
    finals = _finals(call)
    providers = [e["provider"] for e in finals if e["text"]]
    assert providers == sorted(providers, key=lambda p: p == "mock") and set(providers) == {
        "deepgram",
        "mock",
    }
    before = [e for e in finals if e["provider"] == "deepgram"]
    after = [e for e in finals if e["provider"] == "mock"]
    assert _words_of(before) == expected_words(audio[:covered], PCM8K)
    assert _words_of(after) == expected_words(audio[covered:], PCM8K)
    assert call.final_words() == expected_words(audio, PCM8K)
    starts = _word_starts([e for e in finals if e["text"]])
    assert starts == sorted(starts) and len(starts) == len(set(starts))
    assert (
        min(_word_starts(after)) >= float(str(changed["at"])) and float(str(finals[-1]["end"])) <= 4.0 + 1e-6
    )
    ended = call.of("session_ended")[0]
    assert ended["provider"] == "mock" and ended["reason"] == "end" and not call.of("error")
    assert call.of("session_started")[0]["provider"] == "deepgram"
    assert _sample(metrics, "asr_failovers_total", **{"from": "deepgram", "to": "mock"}) == 1


@pytest.mark.parametrize("failback_after_s", [0.0, 0.2], ids=["stays", "returns"])
async def test_new_calls_use_the_fallback_while_the_breaker_is_open_and_the_primary_once_it_recovers(
    http: aiohttp.ClientSession, failback_after_s: float
) -> None:
    """Deepgram refuses everything: the first call moves (the breaker opened), the next finds
    the fallback full (one slot) and waits on Deepgram, saying so. Deepgram comes back: the
    waiting call's retry is the probe that closes the breaker, and a new call uses Deepgram.
    The moved call finishes on the fallback; with ASR_FAILBACK_AFTER_S, once Deepgram has
    carried new connections that long, it returns to Deepgram at its next pause instead, the
    words before the return from the fallback and after it from Deepgram, none missing or
    repeated."""
    faults = Faults(reject_status=503)
    fallback = MockProvider(MockOptions(), name="mock")
    a_audio = (speechlike(0.6), speechlike(0.8, seed=4) + silence(0.4), speechlike(0.8, seed=7))
    a_all = b"".join(a_audio)
    b_audio = speechlike(0.6, seed=5)
    c_audio = speechlike(0.8, seed=6)
    returns = failback_after_s > 0
    async with running_dg_server(faults=faults) as server:
        provider = deepgram_provider(server, breaker_threshold=2, breaker_cooldown_s=1.0)
        async with deepgram_worker(
            server,
            provider=provider,
            fallback=fallback,
            fallback_max_calls=1,
            failback_after_s=failback_after_s,
        ) as worker:
            a = await connect(http, worker, "moved")
            await a.send_frames(frames(a_audio[0]))
            changed = await a.next_event("provider_changed")
            b = await connect(http, worker, "waiting")
            await b.send_frames(frames(b_audio))
            full = await b.next_event("error")
            async with http.get(f"{base_url(worker)}/health") as response:
                down = await response.json()
            during = await _metrics(http, worker)
            faults.reject_status = 0  # Deepgram is back
            await until(lambda: provider.breaker.opened_at is None)  # the waiting call's probe closed it
            c = await connect(http, worker, "after")
            await c.send_frames(frames(c_audio))
            watch = worker.manager.primary_watch
            assert watch is not None

            def primary_up_long_enough() -> bool:
                since = watch.up_since()
                return since is not None and worker.clock.monotonic() >= since + 0.2

            await until(primary_up_long_enough)  # (with or without failback: the same wait)
            await a.send_frames(frames(a_audio[1]), pace_s=0.01)
            if returns:
                back = await a.next_event("provider_changed")  # at the pause
            async with http.get(f"{base_url(worker)}/health") as response:
                fallback_calls = (await response.json())["checks"]["fallback"]["calls"]
            assert fallback_calls == (0 if returns else 1)  # a call that returned gave its slot back
            await a.send_frames(frames(a_audio[2]))
            for call in (a, b, c):
                await call.end()
            await asyncio.gather(a.collect(), b.collect(), c.collect())
            async with http.get(f"{base_url(worker)}/health") as response:
                up = await response.json()
            after = await _metrics(http, worker)
    assert changed["reason"] == "circuit_open" and changed["from"] == "deepgram"
    assert full["code"] == "fallback_full" and [e["code"] for e in b.of("error")] == ["fallback_full"]
    assert down["status"] == "degraded" and not down["checks"]["provider"]["ok"]
    assert down["checks"]["provider"]["state"] == "failing"
    assert down["checks"]["provider"]["detail"].endswith(
        "new calls wait on deepgram: the fallback, mock, carries as many calls as it may "
        "(ASR_FALLBACK_MAX_CALLS, 1)"
    )
    assert down["checks"]["fallback"] == {
        "state": "ok",
        "ok": True,
        "detail": "",
        "provider": "mock",
        "calls": 1,
        "maxCalls": 1,
    }
    assert _sample(during, "asr_provider_calls_active", provider="mock") == 1
    assert _sample(during, "asr_provider_calls_active", provider="deepgram") == 1
    assert _sample(during, "asr_provider_connections_active", provider="mock") == 1
    assert a.final_words() == expected_words(a_all, PCM8K)  # every word once, in order
    starts = _word_starts([e for e in _finals(a) if e["text"]])
    assert starts == sorted(starts) and len(starts) == len(set(starts))
    (moved,) = fallback.streams_for("moved")
    if returns:
        # It went back once, at a pause, from where the fallback's finals reached.
        assert [e["reason"] for e in a.of("provider_changed")] == ["circuit_open", "primary_recovered"]
        assert (back["from"], back["to"]) == ("mock", "deepgram")
        at = float(str(back["at"]))
        covered = PCM8K.bytes_for(at)
        assert len(a_audio[0]) < covered < len(a_all) - len(a_audio[2])
        on_fallback = [e for e in _finals(a) if e["provider"] == "mock"]
        on_primary = [e for e in _finals(a) if e["provider"] == "deepgram"]
        assert _finals(a) == on_fallback + on_primary
        assert _words_of(on_fallback) == expected_words(a_all[:covered], PCM8K)
        assert _words_of(on_primary) == expected_words(a_all[covered:], PCM8K)
        assert on_primary and min(_word_starts(on_primary)) >= at
        # Deepgram heard the call from that byte on, once; the fallback up to (at least) it.
        assert [bytes(c.audio) for c in server.connections].count(a_all[covered:]) == 1
        assert bytes(moved.received).startswith(a_all[:covered])
        assert a.of("session_ended")[0]["provider"] == "deepgram"
        assert _sample(after, "asr_failovers_total", reason="primary_recovered") == 1
        assert len(server.connections) == 3  # the waiting call, the new one, the returned one
    else:
        # The moved call stayed on the fallback to its end.
        assert len(a.of("provider_changed")) == 1 and a.of("session_ended")[0]["provider"] == "mock"
        assert {e["provider"] for e in a.of("transcript")} == {"mock"}
        assert bytes(moved.received) == a_all
        assert len(server.connections) == 2  # the waiting call and the new one, each on one connection
    assert _sample(after, "asr_failovers_total", reason="circuit_open") == 1
    # The waiting call was carried by Deepgram once it came back; the new call went there too.
    for call, audio in ((b, b_audio), (c, c_audio)):
        assert not call.of("provider_changed") and call.of("session_ended")[0]["provider"] == "deepgram"
        assert {e["provider"] for e in call.of("transcript")} == {"deepgram"}
        assert call.final_words() == expected_words(audio, PCM8K)
    assert c.of("session_started")[0]["provider"] == "deepgram" and not c.of("error")
    assert up["status"] == "ok" and up["checks"]["fallback"]["calls"] == 0
    assert not a.of("error")


async def test_a_new_call_during_an_outage_starts_on_the_fallback(http: aiohttp.ClientSession) -> None:
    faults = Faults(reject_status=503)
    fallback = MockProvider(MockOptions(), name="mock")
    audio = speechlike(0.6, seed=8)
    async with running_dg_server(faults=faults) as server:
        provider = deepgram_provider(server, breaker_threshold=1, breaker_cooldown_s=60.0)
        async with deepgram_worker(server, provider=provider, fallback=fallback) as worker:
            first = await connect(http, worker, "first")
            await first.send_frames(frames(speechlike(0.2)))
            await first.next_event("provider_changed")
            tried = len(server.handshakes)
            new = await connect(http, worker, "new")
            await new.send_frames(frames(audio))
            for call in (first, new):
                await call.end()
            await asyncio.gather(first.collect(), new.collect())
    assert len(server.handshakes) == tried  # the new call never tried Deepgram
    assert new.of("session_started")[0]["provider"] == "mock" and not new.of("provider_changed")
    assert new.final_words() == expected_words(audio, PCM8K) and not new.of("error")
