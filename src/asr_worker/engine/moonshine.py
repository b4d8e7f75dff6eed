"""Decoding utterances with Moonshine base (English) on onnxruntime, one thread per decode.

Why Moonshine: it encodes the audio it is given and nothing more, where Whisper pads every
utterance to its window (a 3 s utterance costs nearly what a 10 s one does). Converted to int8
per channel (`moonshine_model.py`), an utterance costs about 0.03 CPU seconds per second of
audio on one thread here, against about 0.3 for Whisper base, and it hears people at 8 kHz as
well (docs/local-engine.md).

Each utterance is decoded alone: the encoder once over its audio, then greedy decoding with a
key/value cache (the first step by one model, every later step by the other). Not batched:
the model has no attention mask, so utterances of unequal length cannot share a batch, and the
int8 activations are quantised per tensor, so a batch would change each member's numbers; alone,
an utterance's words depend on its audio only, however loaded the machine and whatever else is
decoded at the time.

What Moonshine does not give, and what stands in:

* no timestamps: words come back with `Decoded.timed` False, and the channel spreads them over
  the voice the VAD heard in the utterance (`timing.py`);
* no prompt: keyterms and context (`prompts`) are Whisper's; here they are ignored;
* a short utterance can come back empty, the model ending its text at once, and the same
  words with a few milliseconds more or less audio come back whole ("rear right", cut by the
  VAD 35 ms either side of the end that failed), or with a quarter of a second less of the
  lead-in before it ("okay, thanks" after 0.5 s of faint clicks came back empty, after 0.36 s
  whole); an empty decode is decoded once more with half a second of silence after the audio,
  and if still empty, once more without the first quarter second of its lead-in;
* no no-speech probability: only audio the VAD takes for speech is decoded, and a decode is
  dropped when it loops (Whisper's compression-ratio test; tokens are also capped at about
  6.5 a second of audio, the model's own rule) or when its words are improbable (mean token
  log-probability below -1.2; a caller's words here score above -0.6).

`decode_batch` is blocking and thread-safe: onnxruntime sessions may run from many threads, and
it releases the GIL while it computes.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from .decoding import Decoded, DecodedWord
from .moonshine_model import DECODER_FIRST, DECODER_STEP, ENCODER, TOKENIZER
from .resample import SAMPLE_RATE, Float32Array

START: Final = 1
END: Final = 2
_SPACE: Final = "\u2581".encode()  # SentencePiece's word start
_TOKENS_PER_S: Final = 6.5
_MIN_TOKENS: Final = 8
_MIN_AUDIO_S: Final = 0.25  # the encoder needs a little audio; shorter is padded with silence
_MAX_AUDIO_S: Final = 30.0  # longer is cut (the engine's utterances end by 15 s)
_IMPROBABLE_LOGPROB: Final = -1.2
_COMPRESSION_RATIO_THRESHOLD: Final = 2.4
_HALLUCINATIONS: Final = frozenset({"you", "thank you", "bye", "so", "oh", "uh", "um", "hmm"})
_HALLUCINATION_MIN_LOGPROB: Final = -0.5
_RETRY_TAIL_S: Final = 0.5
_RETRY_LEAD_CUT_S: Final = 0.25


class _Session(Protocol):
    def run(
        self, outputs: None, feeds: dict[str, npt.NDArray[np.float32] | npt.NDArray[np.int64]]
    ) -> list[npt.NDArray[np.float32]]: ...

    def get_inputs(self) -> list[_Named]: ...

    def get_outputs(self) -> list[_Named]: ...


class _Named(Protocol):
    name: str


@dataclass(frozen=True, slots=True)
class MoonshineOptions:
    model: Path  # the converted model's directory (`moonshine_model.ensure_model`)
    cpu_threads: int = 1


def read_tokenizer(path: Path) -> list[bytes]:
    """The vocabulary of `tokenizer.bin`: for each token id in turn, a length byte then the
    token's bytes (SentencePiece pieces, `▁` for a space; byte tokens as the byte itself)."""
    data = path.read_bytes()
    tokens: list[bytes] = []
    i = 0
    while i < len(data):
        n = data[i]
        if n >= 0x80 or i + 1 + n > len(data):
            raise ValueError(f"{path} is not a Moonshine tokenizer")
        tokens.append(data[i + 1 : i + 1 + n])
        i += 1 + n
    return tokens


def words_of(pieces: Sequence[bytes], logprobs: Sequence[float]) -> list[tuple[str, float]]:
    """Tokens to words: a piece starting with `▁` starts a word; punctuation and the rest of a
    word join it. Each word's probability is that of its tokens together (their mean log)."""
    words: list[tuple[bytes, list[float]]] = []
    for piece, logprob in zip(pieces, logprobs, strict=True):
        if piece.startswith(_SPACE) or not words:
            words.append((piece.replace(_SPACE, b" "), [logprob]))
        else:
            text, scores = words[-1]
            words[-1] = (text + piece.replace(_SPACE, b" "), [*scores, logprob])
    out: list[tuple[str, float]] = []
    for raw, scores in words:
        word = raw.decode("utf-8", "replace").strip()
        if word:
            out.append((word, math.exp(sum(scores) / len(scores))))
    return out


class MoonshineDecoder:
    """A loaded model: build with `load` (blocking, a second), then `decode_batch` from threads."""

    def __init__(self, encoder: _Session, first: _Session, step: _Session, tokens: list[bytes]) -> None:
        self._encoder = encoder
        self._first = first
        self._step = step
        self._tokens = tokens
        self._past = [i.name for i in step.get_inputs() if i.name.startswith("past_key_values.")]
        self._present = [o.name for o in step.get_outputs()][1:]

    @classmethod
    def load(cls, options: MoonshineOptions) -> MoonshineDecoder:
        return _load(options)

    def decode_batch(
        self,
        audios: Sequence[Float32Array],
        prompts: Sequence[str] = (),
        languages: Sequence[str | None] = (),
    ) -> list[Decoded]:
        """English whatever is asked: the engines' table sends it English only."""
        return [self.decode(audio) for audio in audios]

    def decode(self, audio: Float32Array) -> Decoded:
        audio_s = audio.size / SAMPLE_RATE
        samples = np.asarray(audio[: round(_MAX_AUDIO_S * SAMPLE_RATE)], dtype=np.float32)
        if samples.size < _MIN_AUDIO_S * SAMPLE_RATE:
            samples = np.pad(samples, (0, round(_MIN_AUDIO_S * SAMPLE_RATE) - samples.size))
        ids, logprobs = self._generate(samples)
        if not ids:  # see the module's notes: ended at once; once more with silence after it
            ids, logprobs = self._generate(np.pad(samples, (0, round(_RETRY_TAIL_S * SAMPLE_RATE))))
        lead = round(_RETRY_LEAD_CUT_S * SAMPLE_RATE)
        if not ids and samples.size > 2 * lead:  # and then with half the lead-in before the voice
            ids, logprobs = self._generate(samples[lead:])
        pieces = [self._tokens[t] for t in ids]
        heard = [] if not ids or self._invented(pieces, logprobs) else words_of(pieces, logprobs)
        words = tuple(DecodedWord(text, 0.0, 0.0, probability) for text, probability in heard)
        return Decoded(words, audio_s, timed=False, language="en")

    def _generate(self, samples: Float32Array) -> tuple[list[int], list[float]]:
        """Greedy decoding: the token ids (the start and end left out) and each one's log-probability."""
        (hidden,) = self._encoder.run(None, {"input_values": samples[None, :]})
        limit = max(_MIN_TOKENS, math.ceil(_TOKENS_PER_S * samples.size / SAMPLE_RATE))
        outputs = self._first.run(
            None, {"input_ids": np.array([[START]], dtype=np.int64), "encoder_hidden_states": hidden}
        )
        cache = dict(zip(self._present, outputs[1:], strict=True))
        ids: list[int] = []
        logprobs: list[float] = []
        while True:
            logits = np.asarray(outputs[0][0, -1], dtype=np.float64)
            token = int(np.argmax(logits[: len(self._tokens)]))
            if token == END or len(ids) >= limit:
                break
            peak = float(logits[token])
            logprobs.append(-math.log(float(np.exp(logits - peak).sum())))
            ids.append(token)
            feeds: dict[str, npt.NDArray[np.float32] | npt.NDArray[np.int64]] = {
                "input_ids": np.array([[token]], dtype=np.int64)
            }
            for name in self._past:
                feeds[name] = cache[name.replace("past_key_values.", "present.")]
            outputs = self._step.run(None, feeds)
            for name, value in zip(self._present, outputs[1:], strict=True):
                if ".decoder." in name:  # the encoder's keys and values stay those of the first step
                    cache[name] = value
        return [t for t in ids if t > END], [p for t, p in zip(ids, logprobs, strict=True) if t > END]

    def _invented(self, pieces: list[bytes], logprobs: list[float]) -> bool:
        """Whether a decode is text the model made up rather than heard (see the module's notes)."""
        from .whisper import compression_ratio

        text = b"".join(pieces).replace(_SPACE, b" ").decode("utf-8", "replace").strip()
        mean = sum(logprobs) / len(logprobs)
        if mean < _IMPROBABLE_LOGPROB or compression_ratio(text) > _COMPRESSION_RATIO_THRESHOLD:
            return True
        plain = " ".join("".join(c for c in text.lower() if c.isalnum() or c in " '").split())
        return plain in _HALLUCINATIONS and mean < _HALLUCINATION_MIN_LOGPROB


_decoders: dict[MoonshineOptions, MoonshineDecoder] = {}
_decoders_lock = threading.Lock()


def _load(options: MoonshineOptions) -> MoonshineDecoder:
    """One model per process and setting, however many providers or tools ask for it."""
    with _decoders_lock:
        decoder = _decoders.get(options)
        if decoder is None:
            import onnxruntime

            def session(name: str) -> _Session:
                settings = onnxruntime.SessionOptions()
                settings.intra_op_num_threads = max(1, options.cpu_threads)
                settings.inter_op_num_threads = 1
                settings.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
                settings.log_severity_level = 3
                made: _Session = onnxruntime.InferenceSession(
                    str(options.model / name), settings, providers=["CPUExecutionProvider"]
                )
                return made

            decoder = MoonshineDecoder(
                session(ENCODER),
                session(DECODER_FIRST),
                session(DECODER_STEP),
                read_tokenizer(options.model / TOKENIZER),
            )
            _decoders[options] = decoder
        return decoder
