"""Decoding utterances with Whisper through faster-whisper's model and CTranslate2, in batches.

Why not `WhisperModel.transcribe()`: it pads every input to Whisper's 30 s window, so a 2 s
utterance costs a 30 s encoder pass (0.36 s here) and one call decodes one audio. We keep
faster-whisper's model, tokenizer, feature extractor and word aligner, and drive CTranslate2
ourselves:

* the encoder gets the utterance padded to the next 5 s (at least 10 s), not 30 s: a 10 s
  window encodes in 0.05-0.07 s, and recognition on our test speech is the same or better;
* several utterances (of any calls) go through encode, generate and align as one batch: text
  generation is memory-bound, so it costs 0.045 s per utterance in fours against 0.11 s alone
  (one thread); the encoder does not gain, so a batch of four is about a quarter cheaper;
* greedy decoding (beam 1, temperature 0) without timestamp tokens, the text then aligned to
  the audio by cross-attention (Whisper's own word-timestamp method) for word times;
* each utterance in the language asked for it, or, where none is, in the one Whisper detects
  from the same encoder output (its language token's probability after the start token, as
  `WhisperModel.detect_language` does on a 30 s window; one decoder step);
* each utterance may come with a prompt, as faster-whisper's `hotwords` and previous text go:
  `<|startofprev|>` + the call's expected words + its recent finals, then the task tokens. An
  utterance of a second decoded alone is hard for any model; with what was said before it,
  Whisper hears it the way it hears it inside the whole recording;
* no invented text: a decode is dropped when Whisper itself thinks there was no speech and its
  words are improbable (faster-whisper's rule, and a stricter pair of thresholds), when its
  text repeats itself (a compression ratio above 2.4, Whisper's own loop test), when it says
  its prompt again over what it doubts is speech, or when it is one of the phrases Whisper is
  known to produce from silence or noise ("Thank you.", "Thanks for watching!") said with
  little confidence. A decode dropped so is decoded once more, without the prompt (which can
  lead it astray) and with repeated tokens penalised (which breaks a greedy loop: "five five"
  heard as "5 5 5 5 ..." comes out "5, 5"), and judged again. Text is capped by the audio's
  length (about twelve tokens a second), so a loop costs little.

`decode_batch` is blocking and thread-safe: the scheduler runs it in worker threads, where
CTranslate2 releases the GIL.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np

from .decoding import Decoded, DecodedWord
from .resample import SAMPLE_RATE, Float32Array

_FRAMES_PER_SECOND: Final = 100  # mel frames (hop 160 at 16 kHz)
_MIN_WINDOW_S: Final = 10
_WINDOW_STEP_S: Final = 5
_MAX_WINDOW_S: Final = 30
_MAX_LENGTH: Final = 448
# faster-whisper's defaults for skipping "speech" that is not: Whisper thinks there is none,
# and its own words are improbable.
_NO_SPEECH_THRESHOLD: Final = 0.6
_LOG_PROB_THRESHOLD: Final = -1.0
_PREPEND_PUNCTUATION: Final = frozenset("\"'“¿([{-")
_COMPRESSION_RATIO_THRESHOLD: Final = 2.4
_MAX_PROMPT_TOKENS: Final = _MAX_LENGTH // 2 - 1
_SHORT_PROMPT: Final = 32  # tokens: a prompt this long or longer is never cut below it
# What Whisper says over silence, noise and music; taken only when it is sure of it.
_HALLUCINATIONS: Final = frozenset(
    {
        "thank you",
        "thank you very much",
        "thanks for watching",
        "thank you for watching",
        "thanks for listening",
        "thank you for listening",
        "please subscribe",
        "subscribe to my channel",
        "bye",
        "you",
        "so",
        "oh",
        "uh",
        "um",
        "hmm",
        "music",
        "applause",
    }
)
_HALLUCINATION_MIN_LOGPROB: Final = -0.55  # a caller's "Thank you." at 8 kHz scored -0.46
# Whisper doubts there is speech (real speech here scores below 0.3) and its words are very
# improbable; or it doubts, and says again what its prompt said.
_DOUBTFUL_NO_SPEECH: Final = 0.3
_IMPROBABLE_LOGPROB: Final = -1.5
_PROMPT_ECHO: Final = 0.5
_HALLUCINATION_MAX_NO_SPEECH: Final = 0.2
_RETRY_REPETITION_PENALTY: Final = 1.3


# The parts of faster-whisper and CTranslate2 used here (they ship no type information).


class _GenerationResult(Protocol):
    sequences_ids: list[list[int]]
    scores: list[float]
    no_speech_prob: float


class _Ctranslate2Whisper(Protocol):
    is_multilingual: bool

    def encode(self, features: object) -> object: ...

    def detect_language(self, features: object) -> list[list[tuple[str, float]]]: ...

    def generate(
        self,
        features: object,
        prompts: list[list[int]],
        *,
        beam_size: int,
        max_length: int,
        return_scores: bool,
        return_no_speech_prob: bool,
        suppress_blank: bool,
        suppress_tokens: list[int],
        repetition_penalty: float,
    ) -> list[_GenerationResult]: ...


class _Tokenizer(Protocol):
    sot_sequence: list[int]
    no_timestamps: int
    sot_prev: int
    eot: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, tokens: list[int]) -> str: ...


class _FeatureExtractor(Protocol):
    def __call__(self, waveform: Float32Array) -> Float32Array: ...


class _FasterWhisperModel(Protocol):
    model: _Ctranslate2Whisper
    feature_extractor: _FeatureExtractor
    hf_tokenizer: object

    def find_alignment(
        self,
        tokenizer: _Tokenizer,
        text_tokens: list[list[int]],
        encoder_output: object,
        num_frames: list[int],
    ) -> list[list[dict[str, float | str]]]: ...


@dataclass(frozen=True, slots=True)
class WhisperOptions:
    model: str  # a directory or a size, as faster-whisper takes it
    compute_type: str = "int8"
    cpu_threads: int = 1
    num_workers: int = 2


def max_tokens(audio_s: float) -> int:
    """Most text tokens an utterance may have: people say at most about five tokens a second,
    so a decode that goes on far beyond it is looping (and would cost seconds of decoding)."""
    return min(_MAX_LENGTH, 32 + math.ceil(12 * audio_s))


def window_frames(audio_s: float) -> int:
    """Encoder input length for an utterance: the next whole 5 s above it (+0.5 s), 10-30 s."""
    seconds = _WINDOW_STEP_S * math.ceil((audio_s + 0.5) / _WINDOW_STEP_S)
    return min(_MAX_WINDOW_S, max(_MIN_WINDOW_S, seconds)) * _FRAMES_PER_SECOND


class WhisperDecoder:
    """A loaded model: build with `load` (blocking, seconds), then `decode_batch` from threads."""

    def __init__(
        self, model: _FasterWhisperModel, options: WhisperOptions, detect_among: frozenset[str] = frozenset()
    ) -> None:
        """`detect_among`: the languages a detection may choose (empty: any Whisper knows)."""
        from faster_whisper.transcribe import get_suppressed_tokens

        self._model = model
        self.options = options
        self.detect_among = detect_among
        self.multilingual = bool(model.model.is_multilingual)
        self._tokenizers: dict[str, _Tokenizer] = {}
        self._tokenizer = self.tokenizer("en")  # what does not depend on the language
        self._suppress = list(get_suppressed_tokens(self._tokenizer, (-1,)) or ())

    def tokenizer(self, language: str) -> _Tokenizer:
        """The tokenizer that starts a decode in this language (an English-only model: English)."""
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            from faster_whisper.tokenizer import Tokenizer

            code = language if self.multilingual else None
            tokenizer = Tokenizer(
                self._model.hf_tokenizer, self.multilingual, task="transcribe", language=code
            )
            self._tokenizers[language] = tokenizer  # a race makes two equal ones: harmless
        return tokenizer

    def _task(self, language: str) -> list[int]:
        tokenizer = self.tokenizer(language)
        return [*tokenizer.sot_sequence, tokenizer.no_timestamps]

    @classmethod
    def load(cls, options: WhisperOptions, detect_among: frozenset[str] = frozenset()) -> WhisperDecoder:
        return cls(_load_model(options), options, detect_among)

    def decode_batch(
        self,
        audios: Sequence[Float32Array],
        prompts: Sequence[str] = (),
        languages: Sequence[str | None] = (),
    ) -> list[Decoded]:
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        if not audios:
            return []
        extractor = self._model.feature_extractor
        features = [extractor(np.asarray(a, dtype=np.float32))[:, :-1] for a in audios]
        frames = max(window_frames(a.size / SAMPLE_RATE) for a in audios)
        batch = np.ascontiguousarray(np.stack([pad_or_trim(f, frames) for f in features]), dtype=np.float32)
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(batch))
        asked = [languages[i] if i < len(languages) else None for i in range(len(audios))]
        codes, sureness = self._languages(encoded, asked)
        texts = [prompts[i] if i < len(prompts) else "" for i in range(len(audios))]
        limit = max_tokens(max(a.size for a in audios) / SAMPLE_RATE)
        previous = {i: self.previous_tokens(t) for i, t in enumerate(texts)}
        results = self._generate(encoded, len(audios), previous, codes, limit)
        tokens: list[list[int]] = [[] for _ in audios]
        retry: dict[int, list[int]] = {}
        for i, result in results.items():
            ids, heard = self._judge(result, texts[i])
            if heard:
                tokens[i] = ids
            else:
                retry[i] = []
        # A decode judged invented goes once more, without the prompt (which can lead Whisper
        # into repeating it) and with repeated tokens penalised (greedy decoding loops: "five
        # five" becomes "5 5 5 5 ..." and is dropped, where penalised it is "5, 5"), as
        # faster-whisper retries a failed decode at a higher temperature, but deterministic.
        # What is invented from silence or noise stays so, and is dropped again.
        for i, result in self._generate(
            encoded, len(audios), retry, codes, limit, _RETRY_REPETITION_PENALTY
        ).items():
            ids, heard = self._judge(result, "")
            tokens[i] = ids if heard else []
        words = self._align(encoded, tokens, [f.shape[-1] for f in features], codes)
        return [
            Decoded(tuple(w), a.size / SAMPLE_RATE, language=code, language_probability=sure)
            for w, a, code, sure in zip(words, audios, codes, sureness, strict=True)
        ]

    def _languages(self, encoded: object, asked: list[str | None]) -> tuple[list[str], list[float]]:
        """Each utterance's language and how sure of it: as asked, or detected where None is
        asked (an English-only model: English). A detection chooses among `detect_among`, its
        sureness the chosen one's share of theirs: a contact centre's calls are in the languages
        it serves, and a short utterance over a telephone line can sound like any of a hundred
        (synthetic French at 8 kHz comes out Thai or Japanese when Whisper may choose them)."""
        import ctranslate2

        codes = [code or "en" for code in asked]
        sureness = [1.0] * len(asked)
        unknown = [i for i, code in enumerate(asked) if code is None]
        if not unknown or not self.multilingual:
            return codes, sureness
        view = encoded
        if len(unknown) != len(asked):
            view = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[unknown]))
        for i, ranked in zip(unknown, self._model.model.detect_language(view), strict=True):
            codes[i], sureness[i] = choose_language(ranked, self.detect_among)
        return codes, sureness

    def _judge(self, result: _GenerationResult, prompt: str) -> tuple[list[int], bool]:
        """The text tokens of a result, and whether they are heard rather than invented."""
        ids = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        if not ids:
            return [], True
        avg_logprob = float(result.scores[0]) * len(ids) / (len(ids) + 1)
        text = self._tokenizer.decode(ids)
        return ids, not invented(text, avg_logprob, float(result.no_speech_prob), prompt)

    def previous_tokens(self, prompt: str) -> list[int]:
        """The tokens of the text said before an utterance, as much as the prompt may hold."""
        if not prompt.strip():
            return []
        return list(self._tokenizer.encode(" " + prompt.strip()))[-_MAX_PROMPT_TOKENS:]

    def _generate(
        self,
        encoded: object,
        size: int,
        previous: dict[int, list[int]],
        codes: list[str],
        limit: int,
        repetition_penalty: float = 1.0,
    ) -> dict[int, _GenerationResult]:
        """Generate for the batch members in `previous`, each with its previous text
        (faster-whisper's prompt layout: `<|startofprev|>`, the text, then the task tokens).
        CTranslate2 wants the task tokens at the same position across a batch, so decodes go in
        up to three batches (no prompt, a short one, a long one), and in each the prompted keep
        their last n tokens (n: the group's shortest). Every task sequence (start, language,
        transcribe, no timestamps) is as long as another, so languages mix in a batch. `limit`:
        text tokens at most, besides the prompt."""
        import ctranslate2

        groups: list[tuple[list[int], list[list[int]]]] = []
        plain = [i for i, p in previous.items() if not p]
        groups.append((plain, [self._task(codes[i]) for i in plain]))
        for short in (True, False):
            members = [i for i, p in previous.items() if p and (len(p) < _SHORT_PROMPT) == short]
            n = min((len(previous[i]) for i in members), default=0)
            groups.append(
                (
                    members,
                    [[self._tokenizer.sot_prev, *previous[i][-n:], *self._task(codes[i])] for i in members],
                )
            )
        out: dict[int, _GenerationResult] = {}
        for members, prompts in groups:
            if not members:
                continue
            view = encoded
            if len(members) != size:
                view = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[members]))
            results = self._model.model.generate(
                view,
                prompts,
                beam_size=1,
                repetition_penalty=repetition_penalty,
                max_length=min(_MAX_LENGTH, len(prompts[0]) + limit),  # the prompt counts
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=self._suppress,
            )
            out.update(zip(members, results, strict=True))
        return out

    def _align(
        self, encoded: object, tokens: list[list[int]], num_frames: list[int], codes: list[str]
    ) -> list[list[DecodedWord]]:
        """Word times by cross-attention, in groups of one language (the aligner starts from the
        language's task tokens)."""
        import ctranslate2

        out: list[list[DecodedWord]] = [[] for _ in tokens]
        for code in dict.fromkeys(codes):
            keep = [i for i, t in enumerate(tokens) if t and codes[i] == code]
            if not keep:
                continue
            view = encoded
            if len(keep) != len(tokens):
                view = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[keep]))
            aligned = self._model.find_alignment(
                self.tokenizer(code), [tokens[i] for i in keep], view, [num_frames[i] for i in keep]
            )
            for i, words in zip(keep, aligned, strict=True):
                out[i] = _merge_punctuation(
                    [
                        DecodedWord(
                            str(w["word"]),
                            float(w["start"]),
                            float(w["end"]),
                            float(w["probability"]),
                        )
                        for w in words
                    ]
                )
        return out


def choose_language(ranked: list[tuple[str, float]], among: frozenset[str]) -> tuple[str, float]:
    """The most probable language of Whisper's ranking (`[("<|es|>", 0.9), ...]`, best first)
    that is one of `among` (empty: any), and its share of their probability."""
    named = [(token[2:-2], probability) for token, probability in ranked]  # "<|es|>" is es
    allowed = [(code, p) for code, p in named if not among or code in among] or named
    total = sum(p for _code, p in allowed)
    code, probability = allowed[0]
    return code, float(probability / total) if total > 0 else 0.0


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _plain(text: str) -> str:
    return " ".join("".join(ch for ch in text.lower() if ch.isalnum() or ch in " '").split())


def invented(text: str, avg_logprob: float, no_speech_prob: float, prompt: str = "") -> bool:
    """Whether a decode is text Whisper made up rather than heard (see the module's notes)."""
    if not text.strip():
        return False
    if no_speech_prob > _NO_SPEECH_THRESHOLD and avg_logprob < _LOG_PROB_THRESHOLD:
        return True
    if no_speech_prob > _DOUBTFUL_NO_SPEECH and avg_logprob < _IMPROBABLE_LOGPROB:
        return True
    if compression_ratio(text) > _COMPRESSION_RATIO_THRESHOLD:
        return True
    words = _plain(text).split()
    if prompt and no_speech_prob > _DOUBTFUL_NO_SPEECH:
        said = set(_plain(prompt).split())
        if sum(w in said for w in words) >= _PROMPT_ECHO * len(words):
            return True  # the prompt said again over what Whisper doubts is speech
    return " ".join(words) in _HALLUCINATIONS and (
        avg_logprob < _HALLUCINATION_MIN_LOGPROB or no_speech_prob > _HALLUCINATION_MAX_NO_SPEECH
    )


def _merge_punctuation(words: list[DecodedWord]) -> list[DecodedWord]:
    """Whisper's aligner splits at spaces and at punctuation: glue a piece that does not start
    with a space to the word before it ("sub" "-scription", "calling" ","), and opening
    punctuation to the word after it."""
    merged: list[DecodedWord] = []
    prefix = ""
    for w in words:
        text = w.text.strip()
        if not text:
            continue
        if merged and not prefix and not w.text.startswith(" "):
            last = merged[-1]
            probability = min(last.probability, w.probability)
            merged[-1] = DecodedWord(last.text + text, last.start, max(last.end, w.end), probability)
        elif text in _PREPEND_PUNCTUATION:
            prefix += text
        else:
            merged.append(DecodedWord(prefix + text, w.start, w.end, w.probability))
            prefix = ""
    return merged


_models: dict[WhisperOptions, _FasterWhisperModel] = {}
_models_lock = threading.Lock()


def _load_model(options: WhisperOptions) -> _FasterWhisperModel:
    """One model per process and setting, however many providers or tools ask for it."""
    with _models_lock:
        model = _models.get(options)
        if model is None:
            from faster_whisper import WhisperModel

            model = WhisperModel(
                options.model,
                device="cpu",
                compute_type=options.compute_type,
                cpu_threads=options.cpu_threads,
                num_workers=options.num_workers,
            )
            _models[options] = model
        return model
