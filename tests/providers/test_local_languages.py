"""A language per call in the local provider, with real VAD on real speech and fake decoders
that say which language they were asked for or detected: each utterance goes to the engine
that speaks its call's language, `multi` detects every utterance's, the `detect` default each
channel's first and keeps it, a call's language can change mid-call, what the engine cannot
transcribe is refused, and a call on Whisper weighs what its decodes cost."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from asr_worker.core.audio import AudioFormat
from asr_worker.core.call_options import CallOptions
from asr_worker.core.provider_events import ProviderEvent, TranscriptResult
from asr_worker.engine.decoding import Decoded, DecodedWord
from asr_worker.engine.resample import SAMPLE_RATE, Float32Array
from asr_worker.engine.vad import SileroVad
from asr_worker.errors import ProviderError
from asr_worker.providers.base import StreamRequest
from asr_worker.providers.local import LocalOptions, LocalProvider, LocalStream
from tests.support.speech import SENTENCES, Speech


class FakeEngine:
    """Answers every utterance with one word, in the language asked for, or, asked to detect,
    in the next of `detections` (language, how sure), else English."""

    def __init__(self, name: str, detections: Sequence[tuple[str, float]] = ()) -> None:
        self.name = name
        self.asked: list[str | None] = []
        self.detections = deque(detections)

    def decode_batch(
        self,
        audios: Sequence[Float32Array],
        prompts: Sequence[str] = (),
        languages: Sequence[str | None] = (),
    ) -> list[Decoded]:
        out = []
        for i, audio in enumerate(audios):
            asked = languages[i] if i < len(languages) else None
            self.asked.append(asked)
            language, sure = (
                (asked, 1.0) if asked else (self.detections.popleft() if self.detections else ("en", 0.9))
            )
            word = DecodedWord(f"{self.name}-{language}", 0.0, 0.4, 0.9)
            out.append(
                Decoded((word,), audio.size / SAMPLE_RATE, language=language, language_probability=sure)
            )
        return out


@pytest.fixture(scope="module")
def silero() -> SileroVad:
    return SileroVad.load()


@asynccontextmanager
async def provider_with(
    silero: SileroVad, moonshine: FakeEngine, whisper: FakeEngine, **options: object
) -> AsyncIterator[LocalProvider]:
    """The default `auto` engines as fakes; interims off, so that only finals decode, in order."""
    opts = LocalOptions(num_workers=1, first_interim_s=1000.0, interim_interval_s=1000.0, **options)  # type: ignore[arg-type]
    detects = opts.language in ("detect", "multi")  # then Whisper is the engine loaded at start
    primary, other = (whisper, moonshine) if detects else (moonshine, whisper)
    provider = LocalProvider(opts, decoder=primary, vad=silero, others={other.name: other})
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(provider.run())
        try:
            yield provider
        finally:
            task.cancel()


async def play(
    stream: LocalStream,
    audio: bytes,
    fmt: AudioFormat,
    *,
    switch_at_s: float | None = None,
    to: str | None = None,
) -> list[ProviderEvent]:
    events: list[ProviderEvent] = []

    async def read() -> None:
        async for event in stream.events():
            events.append(event)

    async with asyncio.timeout(20), asyncio.TaskGroup() as tg:
        tg.create_task(read())
        step = fmt.bytes_for(0.02)
        for i in range(0, len(audio), step):
            if switch_at_s is not None and i >= fmt.bytes_for(switch_at_s):
                stream.switch_language(to)
                switch_at_s = None
            await stream.send_audio(audio[i : i + step])
            await asyncio.sleep(0)
        await stream.finalize()
        await stream.close_stream()
    return events


def spoken(events: list[ProviderEvent]) -> list[tuple[str, str | None]]:
    """Each final with words: (its text, its language)."""
    return [(e.text, e.language) for e in events if isinstance(e, TranscriptResult) and e.is_final and e.text]


async def call(
    provider: LocalProvider, speech: Speech, language: str | None, sentences: int = 2, **kw: object
) -> list[ProviderEvent]:
    audio = speech.call(SENTENCES[:sentences], 8000, gap_s=1.0)
    stream = await provider.open(
        StreamRequest("call", "acme", audio.fmt, options=CallOptions(language=language))
    )
    return await play(stream, audio.data, audio.fmt, **kw)  # type: ignore[arg-type]


async def test_each_language_is_decoded_by_the_engine_that_speaks_it_and_said_on_every_final(
    silero: SileroVad, speech: Speech
) -> None:
    moonshine, whisper = FakeEngine("moonshine"), FakeEngine("whisper")
    async with provider_with(silero, moonshine, whisper) as provider:
        assert spoken(await call(provider, speech, "es-419")) == [("whisper-es", "es-419")] * 2
        assert spoken(await call(provider, speech, None)) == [("moonshine-en", "en")] * 2
        assert spoken(await call(provider, speech, "en-GB")) == [("moonshine-en", "en-GB")] * 2
    assert whisper.asked == ["es", "es"] and moonshine.asked == ["en"] * 4


async def test_multi_detects_every_utterances_language_as_a_caller_switches(
    silero: SileroVad, speech: Speech
) -> None:
    moonshine, whisper = (
        FakeEngine("moonshine"),
        FakeEngine("whisper", [("fr", 0.9), ("de", 0.8), ("fr", 0.7)]),
    )
    async with provider_with(silero, moonshine, whisper) as provider:
        heard = spoken(await call(provider, speech, "multi", sentences=3))
    assert heard == [("whisper-fr", "fr"), ("whisper-de", "de"), ("whisper-fr", "fr")]
    assert whisper.asked == [None, None, None] and not moonshine.asked


async def test_detect_keeps_a_channels_first_sure_language_and_moves_english_to_moonshine(
    silero: SileroVad, speech: Speech
) -> None:
    """ASR_LOCAL_LANGUAGE=detect: an unsure first detection fixes nothing; the first sure one is
    kept, and the channel's next utterances are decoded in it by the engine that speaks it."""
    moonshine, whisper = FakeEngine("moonshine"), FakeEngine("whisper", [("es", 0.3), ("en", 0.95)])
    async with provider_with(silero, moonshine, whisper, language="detect") as provider:
        heard = spoken(await call(provider, speech, None, sentences=4))
    assert heard == [
        ("whisper-es", "es"),
        ("whisper-en", "en"),
        ("moonshine-en", "en"),
        ("moonshine-en", "en"),
    ]
    assert whisper.asked == [None, None] and moonshine.asked == ["en", "en"]


async def test_a_calls_language_switched_mid_call_applies_from_then_on(
    silero: SileroVad, speech: Speech
) -> None:
    moonshine, whisper = FakeEngine("moonshine"), FakeEngine("whisper")
    async with provider_with(silero, moonshine, whisper) as provider:
        audio = speech.call(SENTENCES[:2], 8000, gap_s=1.0)
        switch_at_s = audio.spoken[0].end_s + 0.8  # the first sentence's final is on its way
        events = await call(provider, speech, "en-US", switch_at_s=switch_at_s, to="de-DE")
    assert spoken(events) == [("moonshine-en", "en-US"), ("whisper-de", "de-DE")]


async def test_a_language_the_engines_cannot_transcribe_is_refused_with_why(
    silero: SileroVad, speech: Speech
) -> None:
    async with provider_with(silero, FakeEngine("moonshine"), FakeEngine("whisper")) as provider:
        assert provider.language_refusal("es") is None and provider.language_refusal("multi") is None
        reason = provider.language_refusal("tlh")
        assert reason is not None and "tlh" in reason
        audio = speech.call(SENTENCES[:1], 8000)
        with pytest.raises(ProviderError) as refused:
            await provider.open(StreamRequest("c", "acme", audio.fmt, options=CallOptions(language="tlh")))
        assert refused.value.code == "language_unsupported" and not refused.value.retryable
        assert "multi" in provider.languages() and {"en", "es", "fr", "de"} <= set(provider.languages())
    english_only = LocalProvider(
        LocalOptions(engine="moonshine"), decoder=FakeEngine("moonshine"), vad=silero
    )
    assert english_only.languages() == ("en",)
    for language in ("es", "multi"):
        reason = english_only.language_refusal(language)
        assert reason is not None and "moonshine" in reason, reason


def test_a_call_on_whisper_weighs_what_its_decodes_cost_against_moonshines(silero: SileroVad) -> None:
    provider = LocalProvider(
        LocalOptions(), decoder=FakeEngine("moonshine"), vad=silero, others={"whisper": FakeEngine("whisper")}
    )
    assert provider.channel_weight(CallOptions()) == 1.0
    assert provider.channel_weight(CallOptions(language="en-US")) == 1.0
    assert provider.channel_weight(CallOptions(language="es")) == pytest.approx(0.25 / 0.02), (
        "before measuring"
    )
    provider.pool.capacity.calibrate(10.0, 0.2)  # Moonshine: 0.02 s a second
    provider.pool.capacity_of("whisper").calibrate(10.0, 1.0)  # Whisper: 0.1 s a second
    assert provider.channel_weight(CallOptions(language="multi")) == pytest.approx(5.0)
    assert not math.isnan(provider.pool.capacity_of("whisper").cost_s)
