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
    seg = Segmenter(VadConfig(min_silence_ms=480, pad_ms=192, lead_in_ms=320))
    assert seg.push(probs((0.0, 20), (0.9, 30))) == []
    assert seg.open_start == 20 * W - 10 * W, "reaches back by lead_in_ms while open"
    closed = seg.push(probs((0.1, windows(480) - 1)))
    assert closed == [], "not before min_silence"
    (utterance,) = seg.push(probs((0.1, 1)))
    assert utterance == Utterance(start=10 * W, end=56 * W, speech_end=50 * W, endpointed=True)
    assert open_start(seg) is None and seg.floor == 56 * W


def test_a_soft_start_is_inside_the_lead_in() -> None:
    """A first word Silero is unsure of (0.3-0.5 for 400 ms, as "ask" in a phone call) is in
    the utterance: it starts lead_in_ms before the first window at or above threshold."""
    seg = Segmenter(VadConfig(lead_in_ms=512))
    seg.push(probs((0.0, 30), (0.4, windows(416)), (0.9, 20)))
    start = open_start(seg)
    assert start is not None and start <= (30) * W, "the unsure 416 ms are in"


def test_hysteresis_keeps_speech_going_between_the_thresholds() -> None:
    seg = Segmenter(VadConfig(min_silence_ms=320, threshold=0.5, neg_threshold=0.35))
    seg.push(probs((0.9, 10), (0.4, 20)))  # 0.4: not speech to start, but speech to continue
    assert seg.open_start is not None
    (u,) = seg.push(probs((0.1, 10)))
    assert u.speech_end == 30 * W


def test_short_blips_are_not_utterances() -> None:
    seg = Segmenter(VadConfig(min_speech_ms=200, min_silence_ms=320, blip_hold_ms=640))
    assert seg.push(probs((0.0, 40), (0.9, 3), (0.0, 40))) == []  # 96 ms of "speech": a click
    assert seg.floor == 0
    assert seg.blip is None, "nothing followed it within blip_hold_ms: forgotten"
    assert seg.settled == seg.position - seg.config.samples(seg.config.lead_in_ms)


def test_a_blip_followed_by_speech_starts_the_utterance() -> None:
    """ "front ... center": a soft first word sure for under min_speech_ms, then a pause longer
    than min_silence_ms, then the rest: one utterance from the blip on."""
    cfg = VadConfig(min_speech_ms=200, min_silence_ms=480, lead_in_ms=160, pad_ms=160, blip_hold_ms=1000)
    seg = Segmenter(cfg)
    seg.push(probs((0.0, 40), (0.9, 5), (0.1, windows(544))))  # 160 ms of "front", 544 ms pause
    assert seg.open_start is None and seg.blip == (35 * W, 45 * W)
    assert seg.settled == 35 * W, "a silence final may not cover the held blip"
    seg.push(probs((0.9, 15), (0.0, 20)))
    # the utterance closed: it starts at the blip's padded start, not 160 ms before "center"
    assert seg.floor > 0
    assert seg.blip is None


def test_a_held_blip_starts_the_next_utterance_exactly() -> None:
    cfg = VadConfig(min_speech_ms=200, min_silence_ms=480, lead_in_ms=160, pad_ms=160, blip_hold_ms=1000)
    seg = Segmenter(cfg)
    seg.push(probs((0.0, 40), (0.9, 5), (0.1, windows(544)), (0.9, 15)))
    (u,) = seg.push(probs((0.0, 20)))
    assert u.start == 35 * W and u.endpointed


def test_finalize_takes_a_held_blip_as_the_utterance() -> None:
    """A short "no" right before a bot's Finalize: nothing will follow it, so it is decoded."""
    cfg = VadConfig(min_speech_ms=200, min_silence_ms=480, lead_in_ms=160, pad_ms=160, blip_hold_ms=1000)
    seg = Segmenter(cfg)
    seg.push(probs((0.0, 40), (0.9, 5), (0.1, windows(544))))
    u = seg.close_now(seg.position)
    assert u == Utterance(start=35 * W, end=seg.position, speech_end=45 * W, endpointed=True)
    assert seg.blip is None and seg.floor == seg.position
    assert seg.close_now(seg.position) is None


def test_a_blip_older_than_the_hold_does_not_start_speech() -> None:
    cfg = VadConfig(min_speech_ms=200, min_silence_ms=480, lead_in_ms=160, pad_ms=160, blip_hold_ms=640)
    seg = Segmenter(cfg)
    seg.push(probs((0.0, 40), (0.9, 5), (0.1, windows(1000)), (0.9, 15)))
    start = open_start(seg)
    assert start is not None and start > 45 * W + cfg.samples(640)


def test_padding_never_reaches_into_audio_already_given_away() -> None:
    seg = Segmenter(VadConfig(min_silence_ms=320, pad_ms=320, lead_in_ms=320))
    (first,) = seg.push(probs((0.9, 10), (0.0, 10)))
    seg.push(probs((0.9, 10)))
    assert seg.open_start == first.end
    seg.floor = 100 * W  # a silence final covered up to here
    assert seg.open_start == 100 * W


def test_a_too_long_utterance_is_cut_at_its_quietest_recent_window() -> None:
    seg = Segmenter(VadConfig(max_utterance_s=3.2, min_silence_ms=500, pad_ms=0, lead_in_ms=0))
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
        # it starts before the voice (by about the lead-in), never after it
        assert spoken.start_s - 0.7 < u.start / SAMPLE_RATE <= spoken.start_s + 0.1
        assert abs(u.speech_end / SAMPLE_RATE - spoken.end_s) < 0.3


def test_silero_hears_no_speech_in_silence_or_hum(silero: SileroVad) -> None:
    t = np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE
    hum = (0.05 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    noise = np.random.default_rng(1).normal(0, 0.003, t.size).astype(np.float32)
    vad, seg = silero.stream(), Segmenter(VadConfig())
    assert seg.push(vad.push((hum + noise).astype(np.float32))) == [] and seg.open_start is None
