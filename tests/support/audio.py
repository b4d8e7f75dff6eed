"""Audio for tests: deterministic noise (the mock provider hears words in it) and silence."""

from __future__ import annotations

import numpy as np

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.codecs import encode_g711

PCM8K = AudioFormat(Encoding.LINEAR16, 8000, 1)


def speechlike(seconds: float, fmt: AudioFormat = PCM8K, seed: int = 1) -> bytes:
    """Loud noise: every mock word window in it is a word."""
    rng = np.random.default_rng(seed)
    n = round(seconds * fmt.sample_rate) * fmt.channels
    samples = rng.integers(-12000, 12000, size=n, dtype=np.int16)
    return _encode(samples, fmt)


def silence(seconds: float, fmt: AudioFormat = PCM8K) -> bytes:
    n = round(seconds * fmt.sample_rate) * fmt.channels
    return _encode(np.zeros(n, dtype=np.int16), fmt)


def frames(audio: bytes, fmt: AudioFormat = PCM8K, ms: int = 20) -> list[bytes]:
    step = fmt.bytes_for(ms / 1000)
    return [audio[i : i + step] for i in range(0, len(audio), step)]


def _encode(samples: np.ndarray, fmt: AudioFormat) -> bytes:
    if fmt.encoding is Encoding.LINEAR16:
        return samples.astype("<i2").tobytes()
    return encode_g711(samples.astype(np.int16), fmt.encoding)
