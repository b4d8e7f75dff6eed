"""The resampler: band-limited, streaming (frame by frame equals all at once), exact in length."""

from __future__ import annotations

import numpy as np
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.codecs import encode_g711
from asr_worker.engine.resample import SAMPLE_RATE, StreamResampler, split_channels


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def stream(samples: np.ndarray, rate: int, frame_ms: int = 20) -> np.ndarray:
    r = StreamResampler(rate)
    step = rate * frame_ms // 1000
    parts = [r.push(samples[i : i + step]) for i in range(0, samples.size, step)]
    return np.concatenate([*parts, r.flush()])


def spectrum_db(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    window = np.hanning(x.size)
    mag = np.abs(np.fft.rfft(x * window))
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    return freqs, 20 * np.log10(mag / mag.max() + 1e-12)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 24000, 44100, 48000])
def test_output_length_matches_the_input_time_exactly(rate: int) -> None:
    x = tone(440, rate, 1.37)
    out = stream(x, rate)
    assert out.size == round(x.size * SAMPLE_RATE / rate)


def test_telephone_audio_is_upsampled_without_images() -> None:
    # Zero-stuffing or sample repetition would mirror a 3 kHz tone to 5 kHz (and 13 kHz);
    # a band-limited resampler leaves nothing above the original 4 kHz band.
    out = stream(tone(3000, 8000, 2.0), 8000)
    freqs, db = spectrum_db(out[SAMPLE_RATE // 2 : -SAMPLE_RATE // 2], SAMPLE_RATE)
    assert abs(freqs[np.argmax(db)] - 3000) < 5
    assert db[freqs > 4200].max() < -60


def test_high_rates_are_low_passed_before_decimation() -> None:
    # A 10 kHz tone cannot exist at 16 kHz; naive decimation would alias it to 6 kHz.
    out = stream(tone(10_000, 48000, 2.0) + tone(1000, 48000, 2.0), 48000)
    freqs, db = spectrum_db(out[SAMPLE_RATE // 2 : -SAMPLE_RATE // 2], SAMPLE_RATE)
    assert abs(freqs[np.argmax(db)] - 1000) < 5
    assert db[(freqs > 5500) & (freqs < 6500)].max() < -60


def test_frame_by_frame_equals_all_at_once() -> None:
    x = tone(700, 8000, 1.0) + tone(2500, 8000, 1.0, 0.2)
    whole = StreamResampler(8000)
    at_once = np.concatenate([whole.push(x), whole.flush()])
    assert np.allclose(stream(x, 8000, frame_ms=20), at_once, atol=1e-6)


def test_16k_passes_through_untouched() -> None:
    x = tone(440, SAMPLE_RATE, 0.1)
    r = StreamResampler(SAMPLE_RATE)
    assert np.array_equal(r.push(x), x) and r.flush().size == 0


def test_more_audio_after_a_flush_keeps_the_timeline() -> None:
    r = StreamResampler(8000)
    first = r.push(tone(440, 8000, 0.5))
    first = np.concatenate([first, r.flush()])
    second = np.concatenate([r.push(tone(440, 8000, 0.25)), r.flush()])
    assert first.size == 8000 and second.size == 4000


def test_split_channels_decodes_g711_and_deinterleaves() -> None:
    left = (np.arange(160) * 100).astype(np.int16)
    right = -left
    stereo = np.stack([left, right], axis=1).reshape(-1)
    fmt = AudioFormat(Encoding.MULAW, 8000, 2)
    ch0, ch1 = split_channels(encode_g711(stereo, Encoding.MULAW), fmt)
    assert ch0.dtype == np.float32 and ch0.size == 160
    assert np.allclose(ch0 * 32768, left, atol=600) and np.allclose(ch1 * 32768, right, atol=600)
    (mono,) = split_channels(left.astype("<i2").tobytes(), AudioFormat(Encoding.LINEAR16, 8000, 1))
    assert np.array_equal(mono * 32768, left.astype(np.float32))
