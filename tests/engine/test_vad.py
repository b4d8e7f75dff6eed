"""Endpointing: the segmenter on made-up probabilities, and real Silero on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from asr_worker.engine.resample import SAMPLE_RATE
from asr_worker.engine.vad import WINDOW, Segmenter, SileroVad, Utterance, VadConfig
from tests.support.speech import SENTENCES, Speech

W = WINDOW  # 32 ms


def probs(*runs: tuple[float, int]) -> np.ndarray:
    """(probability, windows) runs."""
    return np.concatenate([np.full(n, p, dtype=np.float32) for p, n in runs])


def open_start(seg: Segmenter) -> int | None:
    """Read through a call, so type checkers do not pin it after one assert."""
    return seg.open_start


def windows(ms: float) -> int:
    return round(ms / 32)


def test_an_utterance_ends_after_min_silence_and_is_padded() -> None:
    seg = Segmenter(VadConfig(min_silence_ms=480, pad_ms=192))
    assert seg.push(probs((0.0, 20), (0.9, 30))) == []
    assert seg.open_start == 20 * W - 6 * W, "padded back by pad_ms while open"
    closed = seg.push(probs((0.1, windows(480) - 1)))
    assert closed == [], "not before min_silence"
    (utterance,) = seg.push(probs((0.1, 1)))
    assert utterance == Utterance(start=14 * W, end=56 * W, speech_end=50 * W, endpointed=True)
    assert open_start(seg) is None and seg.floor == 56 * W


def test_hysteresis_keeps_speech_going_between_the_thresholds() -> None:
    seg = Segmenter(VadConfig(min_silence_ms=320, threshold=0.5, neg_threshold=0.35))
    seg.push(probs((0.9, 10), (0.4, 20)))  # 0.4: not speech to start, but speech to continue
    assert seg.open_start is not None
    (u,) = seg.push(probs((0.1, 10)))
    assert u.speech_end == 30 * W


def test_short_blips_are_not_utterances() -> None:
    seg = Segmenter(VadConfig(min_speech_ms=200, min_silence_ms=320))
    assert seg.push(probs((0.9, 3), (0.0, 20))) == []  # 96 ms of "speech": a click
    assert seg.floor == 0


def test_padding_never_reaches_into_audio_already_given_away() -> None:
    seg = Segmenter(VadConfig(min_silence_ms=320, pad_ms=320))
    (first,) = seg.push(probs((0.9, 10), (0.0, 10)))
    seg.push(probs((0.9, 10)))
    assert seg.open_start == first.end
    seg.floor = 100 * W  # a silence final covered up to here
    assert seg.open_start == 100 * W


def test_a_too_long_utterance_is_cut_at_its_quietest_recent_window() -> None:
    seg = Segmenter(VadConfig(max_utterance_s=3.2, min_silence_ms=500, pad_ms=0))
    stream = probs((0.9, 50), (0.4, 1), (0.9, 49), (0.9, 10))
    closed = seg.push(stream)
    assert len(closed) == 1
    cut = closed[0]
    assert not cut.endpointed and cut.end == 51 * W, "cut after the dip at window 50"
    assert seg.open_start == 51 * W, "the rest goes on as the next utterance"


def test_close_now_ends_an_open_utterance_even_a_short_one() -> None:
    seg = Segmenter(VadConfig(min_speech_ms=500))
    seg.push(probs((0.9, 3)))
    u = seg.close_now(5 * W)
    assert u is not None and u.end == 5 * W and u.endpointed
    assert seg.close_now(6 * W) is None


@pytest.fixture(scope="module")
def silero() -> SileroVad:
    return SileroVad.load()


def test_silero_finds_each_sentence_of_real_speech(silero: SileroVad, speech: Speech) -> None:
    call = speech.call(SENTENCES[:3], 16000, gap_s=1.2)
    samples = (np.frombuffer(call.data, dtype="<i2") / 32768).astype(np.float32)
    vad, seg = silero.stream(), Segmenter(VadConfig())
    found: list[Utterance] = []
    for i in range(0, samples.size, 320):  # 20 ms frames
        found += seg.push(vad.push(samples[i : i + 320]))
    assert len(found) == 3
    for u, spoken in zip(found, call.spoken, strict=True):
        assert abs(u.start / SAMPLE_RATE - spoken.start_s) < 0.4
        assert abs(u.speech_end / SAMPLE_RATE - spoken.end_s) < 0.3


def test_silero_hears_no_speech_in_silence_or_hum(silero: SileroVad) -> None:
    t = np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE
    hum = (0.05 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    noise = np.random.default_rng(1).normal(0, 0.003, t.size).astype(np.float32)
    vad, seg = silero.stream(), Segmenter(VadConfig())
    assert seg.push(vad.push((hum + noise).astype(np.float32))) == [] and seg.open_start is None
