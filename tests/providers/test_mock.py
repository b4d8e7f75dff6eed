"""The mock provider is deterministic and its fault switches do what they say."""

from __future__ import annotations

import itertools

import pytest

from asr_worker.core.provider_events import TranscriptResult
from asr_worker.errors import ProviderError
from asr_worker.providers.base import ResultQueue, StreamRequest
from asr_worker.providers.mock import MockOptions, MockProvider, expected_words
from tests.support.audio import PCM8K, frames, silence, speechlike

REQUEST = StreamRequest("call-1", None, PCM8K)


async def _transcribe(provider: MockProvider, audio: bytes) -> list[TranscriptResult]:
    stream = await provider.open(REQUEST)
    for frame in frames(audio):
        await stream.send_audio(frame)
    await stream.finalize()
    await stream.close_stream()
    return [e async for e in stream.events() if isinstance(e, TranscriptResult)]


async def test_same_audio_same_words_and_finals_tile_the_timeline() -> None:
    audio = speechlike(1.3) + silence(1.5) + speechlike(0.5, seed=8)
    results = await _transcribe(MockProvider(), audio)
    again = await _transcribe(MockProvider(), audio)
    assert results == again
    finals = [r for r in results if r.is_final]
    assert [w for r in finals for w in r.text.split()] == expected_words(audio, PCM8K)
    for a, b in itertools.pairwise(finals):
        assert b.start == pytest.approx(a.end)
    assert finals[0].start == 0 and finals[-1].end == pytest.approx(3.3) and finals[-1].from_finalize
    assert any(not r.is_final for r in results)


async def test_silence_gives_no_words_but_empty_finals_that_cover_it() -> None:
    results = await _transcribe(MockProvider(), silence(3.0))
    assert all(r.text == "" for r in results)
    assert results[-1].end == pytest.approx(3.0)


async def test_fault_switches() -> None:
    provider = MockProvider(MockOptions(fail_opens=2))
    for _ in range(2):
        with pytest.raises(ProviderError) as failed:
            await provider.open(REQUEST)
        assert failed.value.retryable
    await provider.open(REQUEST)
    fatal = MockProvider(MockOptions(fail_opens=1, fail_fatal=True))
    with pytest.raises(ProviderError) as refused:
        await fatal.open(REQUEST)
    assert not refused.value.retryable and refused.value.status == 401
    dropping = MockProvider(MockOptions(drop_after_ms=100))
    stream = await dropping.open(REQUEST)
    chunks = iter(frames(speechlike(1.0)))
    for frame in itertools.islice(chunks, 4):
        await stream.send_audio(frame)
    with pytest.raises(ProviderError, match="mock_drop"):
        await stream.send_audio(next(chunks))
    assert len(stream.received) == PCM8K.bytes_for(0.1)


def test_options_parse_and_refuse_unknown_keys() -> None:
    assert MockOptions.parse("word_ms=100, hang_close=true") == MockOptions(word_ms=100, hang_close=True)
    with pytest.raises(ValueError, match="unknown mock option 'loud'"):
        MockOptions.parse("loud=1")
    with pytest.raises(ValueError, match="whole number"):
        MockOptions.parse("word_ms=fast")


async def test_a_stream_that_fails_with_a_full_queue_still_tells_its_reader() -> None:
    results = ResultQueue(max_events=2)
    result = TranscriptResult(0, True, True, "", 0.0, 0.0, 1.0)
    assert results.put(result) and results.put(result)
    assert not results.put(result)  # full: the stream gives up
    results.finish(ProviderError("events_overflow", "not read", retryable=True))
    results.finish()  # the first end counts
    seen: list[object] = []

    async def read_all() -> None:
        async for event in results.events():
            seen.append(event)

    with pytest.raises(ProviderError, match="events_overflow"):
        await read_all()
    assert seen == [result, result]
