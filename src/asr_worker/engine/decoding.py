"""What a speech decoder is to the rest of the engine: utterances in, words out.

The scheduler runs `Decoder.decode_batch` in its worker threads; the channel turns the words
into results. Whisper (`whisper.py`) and Moonshine (`moonshine.py`) are two implementations,
and `engines.py` names them, so an engine is one module and one line there.

A decoder that cannot say when each word was spoken (Moonshine has no timestamps) returns its
words with `Decoded.timed` False; the channel then gives them times from where the VAD heard
voice in the utterance (`timing.py`).

Each utterance is decoded in the language asked for it (an engine code, `languages.py`), or, where
None is asked, in the language the decoder detects in it (Whisper); `Decoded.language` says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .model import ModelChoice
from .resample import Float32Array


@dataclass(frozen=True, slots=True)
class DecodedWord:
    text: str  # as the model wrote it, punctuation included, no surrounding spaces
    start: float  # seconds from the start of the decoded audio
    end: float
    probability: float


@dataclass(frozen=True, slots=True)
class Decoded:
    words: tuple[DecodedWord, ...]
    audio_s: float
    timed: bool = True  # False: the words' times are placeholders, to be spread over the voice
    language: str | None = None  # the engine code it was decoded in (asked for, or detected)
    language_probability: float = 1.0  # how sure the detection was (1.0: asked for, not detected)

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def confidence(self) -> float:
        return float(np.mean([w.probability for w in self.words])) if self.words else 0.0


class Decoder(Protocol):
    """What the scheduler needs of a loaded model; tests use fakes."""

    def decode_batch(
        self,
        audios: Sequence[Float32Array],
        prompts: Sequence[str] = (),
        languages: Sequence[str | None] = (),
    ) -> list[Decoded]:
        """Decode each utterance (16 kHz mono float). Blocking and thread-safe. `prompts[i]` (if
        given): text said before `audios[i]`, to condition its decode on, for a decoder that can
        be prompted (Whisper); others ignore it. `languages[i]` (if given): the engine code to
        decode `audios[i]` in, None to detect it (a decoder that cannot detect decodes in the
        one language it knows)."""
        ...


@dataclass(frozen=True, slots=True)
class DecoderSettings:
    """What loading a decoder may use (the local provider's options); each engine takes what
    applies to it."""

    model: ModelChoice = field(default_factory=ModelChoice)  # Whisper's model (ASR_LOCAL_MODEL)
    compute_type: str = "int8"  # Whisper's CTranslate2 compute type
    cpu_threads: int = 1  # threads per decode
    workers: int = 2  # decodes at once
    detect_among: frozenset[str] = frozenset()  # the languages a detection may choose (empty: any)
