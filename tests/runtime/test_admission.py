"""Admission by measured capacity: a provider that knows how many channels it can carry (the
local engine measures it) gets no call beyond them. The call beyond is refused at once with
`engine_full` (close 1013, try again later), `/ready` says so, the calls already admitted
are untouched, and a freed channel admits the next call. A mock stands in for the engine:
what is under test is the registry's bookkeeping, not decoding."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from asr_worker.core.call_options import CallOptions
from asr_worker.providers.mock import MockProvider
from asr_worker.runtime.manager import DEFAULT_FALLBACK_CALLS, FallbackSlots
from tests.conftest import base_url, running_worker
from tests.support.audio import frames, speechlike
from tests.support.client import connect


@dataclass
class MeasuringProvider(MockProvider):
    channels: int | None = 3

    def capacity_channels(self) -> int | None:
        return self.channels


async def _json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_a_call_beyond_the_engines_channels_is_refused_and_the_admitted_carry_on(
    http: aiohttp.ClientSession,
) -> None:
    async with running_worker(MeasuringProvider(channels=3)) as worker:
        stereo = await connect(http, worker, "two-legs", "encoding=linear16&sample_rate=8000&channels=2")
        mono = await connect(http, worker, "one-leg")
        await stereo.next_event("session_started")
        await mono.next_event("session_started")
        status, body = await _json(http, f"{base_url(worker)}/ready")
        assert status == 503 and body["reason"] == "engine_full"
        _, health = await _json(http, f"{base_url(worker)}/health")
        checks = health["checks"]
        assert isinstance(checks, dict) and checks["provider"]["channels"] == 3
        assert checks["provider"]["maxChannels"] == 3
        beyond = await connect(http, worker, "beyond")
        refused = await beyond.next_event("error")
        assert refused["code"] == "engine_full" and "3 of the 3 channels" in str(refused["message"])
        await beyond.ws.receive()
        assert beyond.ws.close_code == 1013
        await mono.send_frames(frames(speechlike(0.4)))  # the admitted call goes on as before
        assert (await mono.next_event("transcript"))["text"]
        await mono.end()
        await mono.collect()
        again = await connect(http, worker, "after-one-ended")  # its channel is free again
        await again.next_event("session_started")
        assert (await _json(http, f"{base_url(worker)}/ready"))[0] == 503
        for call in (stereo, again):
            await call.end()
            await call.collect()
        assert (await _json(http, f"{base_url(worker)}/ready"))[0] == 200
        async with http.get(f"{base_url(worker)}/metrics") as response:
            assert 'asr_sessions_refused_total{reason="engine_full"} 1.0' in await response.text()


def test_fallback_slots_follow_the_fallbacks_measure_unless_a_limit_is_set() -> None:
    engine = MeasuringProvider(channels=4)
    measured = FallbackSlots(0, engine)
    assert measured.claim(2) and measured.claim(2) and not measured.claim(1)
    assert measured.describe() == "4 of the 4 channels"
    measured.release(2)
    assert measured.claim(1) and measured.claim(1) and not measured.room(1)
    engine.channels = None  # not measured yet (loading): calls wait for it rather than refused
    assert measured.room(2)
    limited = FallbackSlots(1, engine)  # ASR_FALLBACK_MAX_CALLS wins over the measure
    assert limited.claim(2) and not limited.claim(1)
    remote = FallbackSlots(0, None)  # a fallback that measures nothing: the old default
    assert remote.capacity == (DEFAULT_FALLBACK_CALLS, "calls")


@dataclass
class LanguageMeasuringProvider(MeasuringProvider):
    """Moonshine's channels, a call in another language costing four of them, and no Klingon."""

    def channel_weight(self, options: CallOptions) -> float:
        return 1.0 if options.language in (None, "en") else 4.0

    def languages(self) -> tuple[str, ...]:
        return ("en", "es")

    def language_refusal(self, language: str | None) -> str | None:
        return None if language in (None, "en", "es") else f"no engine here transcribes {language}"


async def test_a_call_weighs_its_engines_cost_and_one_in_a_language_not_transcribed_is_refused(
    http: aiohttp.ClientSession,
) -> None:
    async with running_worker(LanguageMeasuringProvider(channels=6)) as worker:
        spanish = await connect(http, worker, "en-espanol", "encoding=linear16&sample_rate=8000&language=es")
        await spanish.next_event("session_started")
        again = await connect(http, worker, "otra", "encoding=linear16&sample_rate=8000&language=es")
        refused = await again.next_event("error")
        assert refused["code"] == "engine_full" and "4 of the 6 channels" in str(refused["message"])
        english = await connect(http, worker, "in-english", "encoding=linear16&sample_rate=8000")
        await english.next_event("session_started")  # 5 of 6: an English call still fits
        klingon = await connect(http, worker, "tlhIngan", "encoding=linear16&sample_rate=8000&language=tlh")
        unsupported = await klingon.next_event("error")
        assert unsupported["code"] == "language_unsupported"
        assert unsupported["message"] == "no engine here transcribes tlh"
        await klingon.ws.receive()
        assert klingon.ws.close_code == 1008
        for call in (spanish, english):
            await call.end()
            await call.collect()
        async with http.get(f"{base_url(worker)}/metrics") as response:
            metrics = await response.text()
        assert 'asr_sessions_refused_total{reason="language_unsupported"} 1.0' in metrics
