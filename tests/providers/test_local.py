"""The local provider against the provider interface, with real VAD on real speech and a fake
decoder (fast, and controllable where the order of decodes is what is tested). The real
engine end to end is in tests/integration."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aiohttp
import pytest

from asr_worker.config import Settings, settings_with
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.call_options import CallOptions, FormatOptions
from asr_worker.core.provider_events import (
    ProviderEvent,
    SpeechStarted,
    StreamMetadata,
    TranscriptResult,
    UtteranceEnd,
)
from asr_worker.engine.decoding import Decoded, DecodedWord, Decoder
from asr_worker.engine.resample import SAMPLE_RATE, Float32Array
from asr_worker.engine.vad import SileroVad
from asr_worker.errors import ProviderError, StartError
from asr_worker.providers import local
from asr_worker.providers.base import StreamRequest
from asr_worker.providers.local import LocalOptions, LocalProvider, LocalStream
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.speech import SENTENCES, Speech, interleave


class FakeWhisper:
    """A word per half second of audio; `hold_long` keeps decodes of long audio waiting until
    a shorter one has been decoded (so decodes finish out of order)."""

    def __init__(self, hold_long_s: float | None = None) -> None:
        self.hold_long_s = hold_long_s
        self.short_done = threading.Event()
        self.calls: list[list[float]] = []
        self.prompts: list[str] = []

    def decode_batch(
        self,
        audios: Sequence[Float32Array],
        prompts: Sequence[str] = (),
        languages: Sequence[str | None] = (),
    ) -> list[Decoded]:
        seconds = [a.size / SAMPLE_RATE for a in audios]
        self.calls.append(seconds)
        self.prompts += prompts
        if self.hold_long_s is not None:
            if all(s >= self.hold_long_s for s in seconds):
                assert self.short_done.wait(10)
            else:
                self.short_done.set()
        return [self._decode(s) for s in seconds]

    @staticmethod
    def _decode(seconds: float) -> Decoded:
        n = max(1, int(seconds / 0.5))
        step = seconds / n
        return Decoded(
            tuple(DecodedWord(f"w{i}", i * step, (i + 0.8) * step, 0.9) for i in range(n)), seconds
        )


@pytest.fixture(scope="module")
def silero() -> SileroVad:
    return SileroVad.load()


@asynccontextmanager
async def local_provider(
    silero: SileroVad, decoder: Decoder | None = None, **options: object
) -> AsyncIterator[LocalProvider]:
    provider = LocalProvider(
        LocalOptions(**{"num_workers": 2, **options}),  # type: ignore[arg-type]
        decoder=decoder or FakeWhisper(),
        vad=silero,
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(provider.run())
        try:
            yield provider
        finally:
            task.cancel()


async def play(
    stream: LocalStream, audio: bytes, fmt: AudioFormat, *, frame_ms: int = 20
) -> list[ProviderEvent]:
    """Send audio as fast as the stream takes it (yielding between frames), then close."""
    events: list[ProviderEvent] = []

    async def read() -> None:
        async for event in stream.events():
            events.append(event)

    async with asyncio.timeout(20), asyncio.TaskGroup() as tg:
        tg.create_task(read())
        step = fmt.bytes_for(frame_ms / 1000)
        for i in range(0, len(audio), step):
            await stream.send_audio(audio[i : i + step])
            await asyncio.sleep(0)
        await stream.finalize()
        await stream.close_stream()
    return events


def finals(events: list[ProviderEvent], channel: int = 0) -> list[TranscriptResult]:
    return [e for e in events if isinstance(e, TranscriptResult) and e.is_final and e.channel == channel]


def assert_tiles(results: list[TranscriptResult], total_s: float) -> None:
    assert results[0].start == 0.0
    for a, b in itertools.pairwise(results):
        assert b.start == pytest.approx(a.end, abs=1e-9), "finals tile the timeline"
    assert results[-1].end == pytest.approx(total_s, abs=1e-6)
    assert results[-1].from_finalize and not any(r.from_finalize for r in results[:-1])


def request(fmt: AudioFormat) -> StreamRequest:
    return StreamRequest("call-1", "acme", fmt)


async def test_finals_tile_the_stream_one_per_utterance_with_words(silero: SileroVad, speech: Speech) -> None:
    call = speech.call(SENTENCES[:3], 8000, Encoding.MULAW, gap_s=2.5)
    async with local_provider(silero) as provider:
        stream = await provider.open(request(call.fmt))
        events = await play(stream, call.data, call.fmt)
    results = finals(events)
    total = call.fmt.seconds(len(call.data))
    assert_tiles(results, total)
    spoken = [r for r in results if r.text]
    assert len(spoken) == 3, [r.text for r in results]
    for result, sentence in zip(spoken, call.spoken, strict=True):
        assert result.speech_final and result.words and result.confidence > 0
        assert result.start <= sentence.start_s < result.words[0].start + 0.5
        assert result.words[0].start >= result.start and result.words[-1].end <= result.end
    silences = [r for r in results if not r.text and not r.from_finalize]
    assert silences and all(r.duration <= 1.6 for r in silences), "empty finals through silence, ~1 s apart"
    assert sum(isinstance(e, SpeechStarted) for e in events) == 3
    assert sum(isinstance(e, UtteranceEnd) for e in events) == 3
    assert isinstance(events[-1], StreamMetadata) and events[-1].duration == pytest.approx(total)


@pytest.mark.parametrize(("endpointing_ms", "utterances"), [(250, 2), (1500, 1)])
async def test_endpointing_is_the_silence_that_ends_an_utterance(
    silero: SileroVad, speech: Speech, endpointing_ms: int, utterances: int
) -> None:
    """Two sentences 0.6 s apart: one utterance each under a short endpointing, one for both
    under a long one (ASR_LOCAL_ENDPOINTING_MS)."""
    settings = settings_with(local_endpointing_ms=endpointing_ms)
    vad = settings.of(local.SETTINGS).vad
    assert vad.min_silence_ms == endpointing_ms
    call = speech.call(SENTENCES[4:6], 16000, gap_s=0.6, tail_s=2.0)
    async with local_provider(silero, vad=vad) as provider:
        stream = await provider.open(request(call.fmt))
        events = await play(stream, call.data, call.fmt)
    spoken = [r for r in finals(events) if r.text and r.speech_final]
    assert len(spoken) == utterances, [(r.start, r.end) for r in spoken]
    assert spoken[0].end < call.spoken[1].start_s or utterances == 1


async def test_finalize_returns_the_open_utterance_and_covers_everything(
    silero: SileroVad, speech: Speech
) -> None:
    call = speech.call(SENTENCES[:1], 16000, tail_s=0.0)  # the call ends mid-breath
    async with local_provider(silero) as provider:
        stream = await provider.open(request(call.fmt))
        events = await play(stream, call.data, call.fmt)
    results = finals(events)
    assert_tiles(results, call.fmt.seconds(len(call.data)))
    assert results[-1].text, "the last words came back on Finalize"


async def test_finals_go_out_in_order_when_decodes_finish_out_of_order(
    silero: SileroVad, speech: Speech
) -> None:
    call = speech.call([SENTENCES[1], SENTENCES[8]], 16000, gap_s=1.0)
    decoder = FakeWhisper(hold_long_s=3.6)
    async with local_provider(silero, decoder) as provider:
        stream = await provider.open(request(call.fmt))
        events = await play(stream, call.data, call.fmt)
    assert decoder.short_done.is_set(), "the second utterance was decoded first"
    results = finals(events)
    assert_tiles(results, call.fmt.seconds(len(call.data)))
    assert len([r for r in results if r.text]) == 2


async def test_two_channels_are_two_utterance_streams(silero: SileroVad, speech: Speech) -> None:
    left = speech.call(SENTENCES[:2], 8000)
    right = speech.call(SENTENCES[5:6], 8000, lead_s=2.0)
    fmt = AudioFormat(Encoding.LINEAR16, 8000, 2)
    data = interleave(left, right)
    async with local_provider(silero) as provider:
        stream = await provider.open(request(fmt))
        events = await play(stream, data, fmt)
    total = fmt.seconds(len(data))
    for channel, expected in ((0, 2), (1, 1)):
        results = finals(events, channel)
        assert_tiles(results, total)
        assert len([r for r in results if r.text]) == expected
        assert all(r.channels == 2 for r in results)


async def test_interims_come_before_their_final_with_a_stable_start(
    silero: SileroVad, speech: Speech
) -> None:
    call = speech.call(SENTENCES[:2], 16000, gap_s=2.0)
    async with local_provider(silero) as provider:
        stream = await provider.open(request(call.fmt))
        events = await play(stream, call.data, call.fmt)
    transcripts = [e for e in events if isinstance(e, TranscriptResult)]
    covered = 0.0
    seen_interim = 0
    for result in transcripts:
        if result.is_final:
            covered = result.end
            continue
        seen_interim += 1
        assert result.start == pytest.approx(covered), "an interim starts where the last final ended"
        assert result.text
    assert seen_interim >= 2
    first_final_with_text = next(i for i, r in enumerate(transcripts) if r.is_final and r.text)
    assert any(not r.is_final for r in transcripts[:first_final_with_text])


async def test_an_overloaded_engine_refuses_calls_then_finals(silero: SileroVad, speech: Speech) -> None:
    first = speech.call(SENTENCES[:2], 16000, gap_s=1.0, tail_s=0.8)
    more = speech.call(SENTENCES[2:3], 16000, lead_s=0.0)
    decoder = FakeWhisper(hold_long_s=0.0)  # every decode waits: the engine is stuck
    async with local_provider(silero, decoder, max_backlog_s=7.0) as provider:
        stream = await provider.open(request(first.fmt))
        await send(stream, first.data, first.fmt)
        assert provider.scheduler.busy, "one final decoding, one (over 3.5 s) waiting"
        with pytest.raises(ProviderError) as busy:
            await provider.open(request(first.fmt))
        assert busy.value.code == "engine_busy" and busy.value.retryable
        with pytest.raises(ProviderError) as refused:
            await send(stream, more.data, more.fmt)
        assert refused.value.code == "engine_overloaded" and refused.value.retryable
        assert provider.scheduler.backlog_s == 0.0, "a failed stream's waiting work is dropped"
        decoder.short_done.set()


async def send(stream: LocalStream, audio: bytes, fmt: AudioFormat) -> None:
    step = fmt.bytes_for(0.02)
    for i in range(0, len(audio), step):
        await stream.send_audio(audio[i : i + step])
        await asyncio.sleep(0)


class GatedProvider(LocalProvider):
    """Loads slowly (until the test opens the gate), or fails to load."""

    def __init__(self, silero: SileroVad, fail: str | None = None) -> None:
        super().__init__(LocalOptions(num_workers=1))
        self.gate = threading.Event()
        self.fail = fail
        self.silero = silero

    def _load(self) -> tuple[Decoder, SileroVad]:
        assert self.gate.wait(10)
        if self.fail:
            raise RuntimeError(self.fail)
        return FakeWhisper(), self.silero


async def test_the_worker_is_not_ready_until_the_model_is_loaded(
    silero: SileroVad, http: aiohttp.ClientSession
) -> None:
    provider = GatedProvider(silero)
    async with running_worker(provider) as worker:
        url = base_url(worker)
        async with http.get(f"{url}/ready") as response:
            assert response.status == 503 and (await response.json())["reason"] == "provider_not_ready"
        async with http.get(f"{url}/health") as response:
            assert (await response.json())["checks"]["provider"]["detail"] == "loading the speech model"
        provider.gate.set()
        async with asyncio.timeout(10):
            while True:
                async with http.get(f"{url}/ready") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.02)
        async with http.get(f"{url}/metrics") as response:
            text = await response.text()
        for name in ("asr_local_queue_depth", "asr_local_decode_rtf", "asr_local_final_latency_seconds"):
            assert name in text


async def test_a_model_that_fails_to_load_stops_the_worker_with_the_reason(silero: SileroVad) -> None:
    """A worker that can serve no call should not look alive: it stops, and the command line
    turns the reason into its one line (tests/test_cli.py)."""
    provider = GatedProvider(silero, fail="sha256 mismatch")
    provider.gate.set()
    worker = Worker(settings_with(port=0), provider=provider)
    with pytest.raises(ExceptionGroup) as stopped:
        await asyncio.wait_for(worker.serve(asyncio.Event()), 20)
    assert stopped.group_contains(StartError, match="sha256 mismatch")
    health = provider.health()
    assert not health.ok and "sha256 mismatch" in health.detail
    with pytest.raises(ProviderError) as refused:
        await provider.open(request(AudioFormat(Encoding.LINEAR16, 8000, 1)))
    assert refused.value.code == "model_unavailable" and not refused.value.retryable


async def test_each_decode_is_prompted_with_the_keyterms_and_the_calls_recent_finals(
    silero: SileroVad, speech: Speech
) -> None:
    call = speech.call(SENTENCES[:3], 8000, Encoding.MULAW, gap_s=2.5)
    decoder = FakeWhisper()
    async with local_provider(silero, decoder, keyterms=("Acme", "Zorblax"), context_chars=200) as provider:
        fmt = call.fmt
        stream = await provider.open(
            StreamRequest("call-1", "acme", fmt, options=CallOptions(keyterms=("Quux", "Acme")))
        )
        events = await play(stream, call.data, call.fmt)
    spoken = [r.text for r in finals(events) if r.text]
    assert len(spoken) == 3
    assert decoder.prompts, "every decode is given its channel's context"
    assert all(p.endswith("Acme, Zorblax, Quux.") for p in decoder.prompts), decoder.prompts
    # Utterances decoded after the first final went out have it as their context, as a sentence.
    assert any(p.startswith(f"{spoken[0]}. ") for p in decoder.prompts), decoder.prompts


async def test_configure_keyterms_prompt_the_next_decodes_on_whisper_and_change_nothing_on_moonshine(
    silero: SileroVad, speech: Speech
) -> None:
    """dg-server's Configure: the stream's keyterms replaced (the engine's own stay), or, on an
    engine that takes none, refused."""
    call = speech.call(SENTENCES[:1], 8000, Encoding.MULAW)
    decoder = FakeWhisper()
    async with local_provider(silero, decoder, engine="whisper", keyterms=("Acme",)) as provider:
        stream = await provider.open(
            StreamRequest("call-1", "acme", call.fmt, options=CallOptions(keyterms=("Quux",)))
        )
        assert stream.update_keyterms(("Zorblax",))
        await play(stream, call.data, call.fmt)
    assert decoder.prompts and all(p.endswith("Acme, Zorblax.") for p in decoder.prompts), decoder.prompts
    async with local_provider(silero, FakeWhisper(), engine="moonshine") as provider:
        stream = await provider.open(request(call.fmt))
        assert not stream.update_keyterms(("Zorblax",))
        await stream.abort()


async def test_a_calls_formatting_and_search_are_applied_to_the_engines_words(
    silero: SileroVad, speech: Speech
) -> None:
    """A call on the worker's own routes (not dg-server, which formats itself) that asks for
    Deepgram's formatting gets it from the local engine: here `replace` and `search`."""
    call = speech.call(SENTENCES[:1], 8000, Encoding.MULAW)
    asked = CallOptions(format=FormatOptions(replace=(("w0", "hello"),), search=("w1",)))
    async with local_provider(silero) as provider:
        stream = await provider.open(StreamRequest("call-1", "acme", call.fmt, options=asked))
        events = await play(stream, call.data, call.fmt)
    [final] = [r for r in finals(events) if r.words]
    assert final.words[0].word == "hello" and final.text.startswith("hello w1")
    [found] = final.search
    assert found.query == "w1" and found.hits[0].start == final.words[1].start


async def test_no_context_by_default(silero: SileroVad, speech: Speech) -> None:
    call = speech.call(SENTENCES[:2], 8000, Encoding.MULAW, gap_s=2.5)
    decoder = FakeWhisper()
    async with local_provider(silero, decoder) as provider:
        stream = await provider.open(request(call.fmt))
        await play(stream, call.data, call.fmt)
    assert decoder.prompts and set(decoder.prompts) == {""}


def test_the_keyterms_setting_becomes_the_engines_keyterms() -> None:
    from asr_worker.config import load_settings

    settings = load_settings(
        {"ASR_LOCAL_KEYTERMS": " Acme Cloud ,Zorblax,, Acme Cloud", "ASR_LOCAL_CONTEXT_CHARS": "150"}
    )
    options = settings.of(local.SETTINGS)
    assert options.keyterms == ("Acme Cloud", "Zorblax") and options.context_chars == 150
    assert Settings().of(local.SETTINGS).keyterms == () and Settings().of(local.SETTINGS).context_chars == 0
