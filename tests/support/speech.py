"""Real speech for tests of the real engine: espeak-ng (Debian) sentences, or Piper's natural
voice (`natural=True`, `piper_speech.py`), synthesized at test time, cached, and turned into
call audio of any ingest format.

The voice (`en-us+klatt`, 130 words a minute) and the sentences were chosen because Whisper
base transcribes them word for word when decoded offline, both at 16 kHz and as 8 kHz mu-law
telephone audio (espeak's formant speech loses much of its intelligibility below 4 kHz, and
many other sentences come out with a word or two wrong at 8 kHz). So a test over them measures
the streaming pipeline (resampling, endpointing, decoding windows), not the model's limits.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np
import soxr

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.codecs import encode_g711
from asr_worker.tools.audio_files import read_audio

SENTENCES = (
    "Thank you for calling, how can I help you today?",
    "I would like to change the delivery address for my package.",
    "I need to cancel my subscription before the end of the month.",
    "We will send a technician to your house on Tuesday morning.",
    "Your order has been shipped and should arrive next week.",
    "Do you have a reference number for this complaint?",
    "I have a question about my electricity bill.",
    "Have a nice day and thank you for your patience.",
    "What time does the pharmacy close today?",
    "The doctor will call you back in the afternoon.",
)
VOICE = ("-v", "en-us+klatt", "-s", "130")
_SPEECH_FLOOR = 0.01  # -40 dBFS: where a sentence's sound has really ended


@dataclass(frozen=True)
class Spoken:
    text: str
    start_s: float  # in the call audio
    end_s: float  # where the voice stops (trailing near-silence excluded)


@dataclass(frozen=True)
class CallAudio:
    fmt: AudioFormat
    data: bytes
    spoken: tuple[Spoken, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.spoken)


class Speech:
    def __init__(self, cache: Path, *, natural: bool = False, voice: tuple[str, ...] = VOICE) -> None:
        """`natural`: Piper's voice (`piper_speech.py`) rather than espeak-ng's; `voice`:
        espeak-ng's arguments (another language's voice, `languages.py`)."""
        self.cache = cache
        self.natural = natural
        self.voice = voice
        self._clips: dict[str, tuple[int, np.ndarray]] = {}

    def clip(self, text: str) -> tuple[int, np.ndarray]:
        """(rate, float32 samples) of one sentence, synthesized once per test session."""
        if text not in self._clips and self.natural:
            from .piper_speech import sentence

            self._clips[text] = sentence(text)
        if text not in self._clips:
            slug = re.sub(r"[^a-z]+", "-", text.lower()).strip("-")[:60]
            voice = "" if self.voice == VOICE else re.sub(r"[^a-z0-9]+", "-", "-".join(self.voice)) + "-"
            path = self.cache / f"{voice}{slug}.wav"
            if not path.exists():
                subprocess.run(["espeak-ng", *self.voice, "-w", str(path), text], check=True, timeout=30)
            audio = read_audio(path)
            samples = np.frombuffer(audio.data, dtype="<i2").astype(np.float32) / 32768
            self._clips[text] = (audio.fmt.sample_rate, samples)
        return self._clips[text]

    def call(
        self,
        texts: tuple[str, ...] | list[str],
        rate: int = 16000,
        encoding: Encoding = Encoding.LINEAR16,
        *,
        lead_s: float = 0.5,
        gap_s: float = 1.2,
        tail_s: float = 1.0,
    ) -> CallAudio:
        """Sentences separated by silence, resampled (band-limited) to `rate`, encoded."""
        parts: list[np.ndarray] = [np.zeros(round(lead_s * rate), dtype=np.float32)]
        spoken = []
        t = lead_s
        for i, text in enumerate(texts):
            clip_rate, clip = self.clip(text)
            samples = soxr.resample(clip, clip_rate, rate).astype(np.float32)
            loud = np.flatnonzero(np.abs(samples) > _SPEECH_FLOOR)
            end = (loud[-1] + 1) if loud.size else samples.size
            spoken.append(Spoken(text, t, t + float(end) / rate))
            parts.append(samples)
            t += samples.size / rate
            pause = gap_s if i < len(texts) - 1 else tail_s
            parts.append(np.zeros(round(pause * rate), dtype=np.float32))
            t += pause
        pcm = np.clip(np.concatenate(parts) * 32767, -32768, 32767).astype(np.int16)
        data = pcm.astype("<i2").tobytes() if encoding is Encoding.LINEAR16 else encode_g711(pcm, encoding)
        return CallAudio(AudioFormat(encoding, rate, 1), data, tuple(spoken))


def interleave(left: CallAudio, right: CallAudio) -> bytes:
    """Two mono linear16 calls of one rate as one two-channel stream (the shorter one padded)."""
    a = np.frombuffer(left.data, dtype="<i2")
    b = np.frombuffer(right.data, dtype="<i2")
    n = max(a.size, b.size)
    a, b = np.pad(a, (0, n - a.size)), np.pad(b, (0, n - b.size))
    return np.stack([a, b], axis=1).reshape(-1).astype("<i2").tobytes()


def normalize(text: str) -> str:
    """Lower case, no punctuation (an apostrophe inside a word stays), single spaces."""
    words = re.sub(r"[^a-z0-9' ]+", " ", re.sub(r"(?<=\w)-(?=\w)", "", text.lower())).split()
    return " ".join(w.strip("'") for w in words)


def word_error_rate(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalize(reference), normalize(hypothesis) or "<nothing>"))
