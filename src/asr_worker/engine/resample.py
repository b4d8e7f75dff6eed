"""Call audio (any ingest format, 8-48 kHz, one or two channels) to 16 kHz float mono per
channel, which is what Whisper and Silero take.

Resampling is band-limited and streaming: libsoxr (the `soxr` package, the resampler of SoX and
an option of FFmpeg) with its high-quality preset, one stateful stream per channel, so 20 ms
frames come out as if the whole call had been resampled at once. Why soxr rather than scipy's
`resample_poly`: resample_poly is one-shot (per chunk it would restart its filter and click at
every frame boundary unless we kept the filter state ourselves), scipy is a 40 MB dependency,
and a numpy polyphase filter of our own would be slower and another thing to get right. soxr is
a 1 MB wheel, keeps the state, and its HQ preset is flat to 0.1 dB and at least 100 dB down
outside the band.

Positions are kept exact: the 16 kHz timeline of a channel is derived from the count of input
samples, and whatever the resampler still holds comes out on `flush` (call end or Finalize).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from ..core.audio import AudioFormat
from ..core.codecs import to_linear16

SAMPLE_RATE: Final = 16_000

Float32Array = npt.NDArray[np.float32]


def split_channels(data: bytes, fmt: AudioFormat) -> list[Float32Array]:
    """Decode a message (whole samples) into one float32 array in [-1, 1) per channel."""
    samples = to_linear16(data, fmt).astype(np.float32) / 32768.0
    if fmt.channels == 1:
        return [samples]
    frames = samples.reshape(-1, fmt.channels)
    return [np.ascontiguousarray(frames[:, c]) for c in range(fmt.channels)]


class StreamResampler:
    """One channel, `rate` Hz in, 16 kHz out, chunk by chunk."""

    def __init__(self, rate: int, quality: str = "HQ") -> None:
        self.rate = rate
        self._stream = (
            None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, "float32", quality)
        )
        self._in = 0  # input samples taken
        self._out = 0  # output samples given

    def push(self, samples: Float32Array) -> Float32Array:
        self._in += samples.size
        if self._stream is None:
            self._out += samples.size
            return samples
        out: Float32Array = self._stream.resample_chunk(samples, last=False)
        self._out += out.size
        return out

    def flush(self) -> Float32Array:
        """Everything still held, trimmed or padded so the output count matches the input time
        exactly; the resampler then starts afresh (a Finalize may be followed by more audio)."""
        tail: Float32Array = np.zeros(0, dtype=np.float32)
        if self._stream is not None:
            tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._stream.clear()
        due = round(self._in * SAMPLE_RATE / self.rate) - self._out
        if tail.size > due:
            tail = tail[: max(0, due)]
        elif tail.size < due:
            tail = np.concatenate([tail, np.zeros(due - tail.size, dtype=np.float32)])
        self._out += tail.size
        return tail
