"""A test call's two sides as one two-channel telephone call, each said by a voice: Piper's
`joe` (a neural voice, `piper_speech`) or espeak-ng's (`speech.Speech`).

espeak-ng's formant speech is very regular; Piper's sounds far more like a person, and the
local engine mishears it the way it mishears people (a "four" written "for", "eleven eleven"
run together), which is what redaction must survive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import soxr

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.codecs import encode_g711

from . import piper_speech


class Piper:
    """Piper's joe voice (`piper_speech`: synthesized without noise, cached), with `clip` as
    espeak-ng's `Speech` has it, so a dialogue takes either for a side."""

    def clip(self, text: str) -> tuple[int, np.ndarray]:
        """(rate, float32 samples) of `text`."""
        return piper_speech.sentence(text)


@dataclass(frozen=True)
class Line:
    channel: int  # 0 the caller, 1 the agent
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Dialogue:
    fmt: AudioFormat
    data: bytes
    lines: tuple[Line, ...]


class Voice(Protocol):
    def clip(self, text: str) -> tuple[int, np.ndarray]: ...


def dialogue(
    caller: Voice,
    agent: Voice,
    lines: list[tuple[int, str]],
    *,
    rate: int = 8000,
    encoding: Encoding = Encoding.MULAW,
    gap_s: float = 0.8,
) -> Dialogue:
    """The lines said in turn, each on its channel with silence on the other, as one
    interleaved two-channel call."""
    channels: list[list[np.ndarray]] = [[np.zeros(round(0.4 * rate), np.float32)] for _ in range(2)]
    at_s = 0.4
    said: list[Line] = []
    for channel, text in lines:
        clip_rate, clip = (caller if channel == 0 else agent).clip(text)
        samples = soxr.resample(clip, clip_rate, rate).astype(np.float32)
        pause = np.zeros(round(gap_s * rate), np.float32)
        channels[channel] += [samples, pause]
        channels[1 - channel] += [np.zeros(samples.size, np.float32), pause]
        said.append(Line(channel, text, at_s, at_s + samples.size / rate))
        at_s += (samples.size + pause.size) / rate
    left, right = (np.concatenate(parts) for parts in channels)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    pcm = np.clip(stereo * 32767, -32768, 32767).astype(np.int16)
    data = pcm.astype("<i2").tobytes() if encoding is Encoding.LINEAR16 else encode_g711(pcm, encoding)
    return Dialogue(AudioFormat(encoding, rate, 2), data, tuple(said))
