"""The real engine (the default, Moonshine base; Whisper's decoder alone where named) on what
is not speech, and on people speaking.

* Generated silence, noise, tones and music streamed as 8 kHz mu-law calls give no final text:
  Whisper's habit of writing "Thank you." over silence or music never reaches a caller.
* Recordings of people (`tests/support/human_speech.py`, fetched from PyPI and Debian into the
  cache on first use) streamed as 8 kHz mu-law calls: the finals' word error rate stays where
  it is measured. The figures, for every format and against the whole file, come from
  `python -m bench.local`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soxr

from asr_worker.config import Settings
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.codecs import encode_g711
from asr_worker.engine.model import resolve_model
from asr_worker.engine.whisper import WhisperDecoder, WhisperOptions
from asr_worker.providers import local
from asr_worker.tools.audio_files import AudioFile
from asr_worker.tools.transcribe import FileResult, transcribe_files
from tests.support.human_speech import recordings, spoken_form, word_errors

pytestmark = pytest.mark.timeout(300)

RATE = 8000
MULAW = AudioFormat(Encoding.MULAW, RATE, 1)
# A guard against regressions, not the goal: faster-whisper gets about 7.6% on the whole files
# (most of it on the sonnet's 1609 English), the default engine's stream about as much
# (docs/local-engine.md#accuracy); the goal is within 2 points.
MAX_WER = 0.12


def _tone(freqs: tuple[float, ...], seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    waves = np.asarray([np.sin(2 * np.pi * f * t) for f in freqs], dtype=np.float64)
    return np.asarray(waves.sum(axis=0) * level / len(freqs), dtype=np.float64)


def _music(seconds: float) -> np.ndarray:
    """Hold music: a chord progression with harmonics, a slow tremolo and note changes."""
    chords = ((261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7))
    parts = []
    for i in range(int(seconds / 0.5)):
        t = np.arange(RATE // 2) / RATE
        notes = chords[(i // 2) % len(chords)]
        wave = sum(np.sin(2 * np.pi * f * k * t) / k for f in notes for k in (1, 2, 3))
        envelope = np.minimum(1.0, t / 0.02) * np.exp(-1.5 * t) * (1 + 0.2 * np.sin(2 * np.pi * 5 * t))
        parts.append(wave * envelope * 0.12)
    return np.concatenate(parts)


def not_speech() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    white = rng.normal(0, 0.05, 6 * RATE)
    brown = np.cumsum(rng.normal(0, 1, 6 * RATE))
    brown = (brown - np.convolve(brown, np.ones(400) / 400, mode="same")) * 0.01
    dtmf = np.concatenate(
        [
            np.concatenate([_tone(pair, 0.15), np.zeros(RATE // 10)])
            for pair in ((697, 1209), (770, 1336), (852, 1477), (941, 1633))
        ]
        * 4
    )
    ring = np.concatenate([np.concatenate([_tone((440, 480), 2.0, 0.2), np.zeros(4 * RATE)])])
    return {
        "silence": np.zeros(6 * RATE),
        "white-noise": white,
        "line-hum": _tone((50, 150, 250), 6.0, 0.1) + rng.normal(0, 0.01, 6 * RATE),
        "brown-noise": brown,
        "tone-1k": _tone((1000,), 4.0),
        "dtmf": dtmf,
        "ringback": ring,
        "hold-music": _music(10.0),
    }


def _mulaw(samples: np.ndarray) -> bytes:
    pcm = np.clip(samples * 32767, -32768, 32767).astype(np.int16)
    return encode_g711(pcm, Encoding.MULAW)


def _transcribe(files: dict[str, bytes], fmt: AudioFormat) -> dict[str, FileResult]:
    import asyncio

    with tempfile.TemporaryDirectory() as tmp:
        audio = [AudioFile(Path(tmp) / name, fmt, data) for name, data in files.items()]
        with open(os.devnull, "w") as sink:
            results = asyncio.run(transcribe_files(audio, Settings(), out=sink, err=sink))
    return {r.name: r for r in results}


def test_silence_noise_tones_and_music_produce_no_final_text() -> None:
    results = _transcribe({name: _mulaw(s) for name, s in not_speech().items()}, MULAW)
    assert set(results) == set(not_speech())
    for name, result in results.items():
        assert result.ok, (name, result.errors)
        assert result.finals == [], f"{name}: the engine invented {result.finals}"


@pytest.fixture(scope="module")
def decoder() -> WhisperDecoder:
    options = WhisperOptions(resolve_model(Settings().of(local.SETTINGS).model), cpu_threads=1, num_workers=1)
    return WhisperDecoder.load(options)


@pytest.mark.parametrize("prompt", ["", "I would like to change the delivery address for my package."])
def test_the_decoder_alone_invents_nothing_from_noise_tones_or_music(
    decoder: WhisperDecoder, prompt: str
) -> None:
    """Past the VAD too: Whisper says "you" or "I" over noise, and repeats its prompt over
    silence or music; none of it comes out of the decoder."""
    for name, samples in not_speech().items():
        audio = np.asarray(soxr.resample(samples.astype(np.float32), RATE, 16000), dtype=np.float32)
        (result,) = decoder.decode_batch([audio[: 16000 * 5]], [prompt])
        assert result.words == (), f"{name}: {result.text!r}"


def test_people_speaking_short_utterances_are_transcribed_about_as_well_as_the_whole_file() -> None:
    recs = recordings()
    results = _transcribe({r.name: r.call(RATE, Encoding.MULAW).data for r in recs}, MULAW)
    errors = words = 0
    for rec in recs:
        result = results[rec.name]
        assert result.ok, (rec.name, result.errors)
        e, n = word_errors(rec.text, " ".join(result.finals))
        print(f"{rec.name}: {e}/{n} words wrong: {' '.join(result.finals)}")
        errors, words = errors + e, words + n
    assert errors / words <= MAX_WER, f"streaming WER {errors / words:.1%}"


def test_a_decode_judged_invented_is_decoded_again_without_the_prompt_and_repetition_penalised(
    decoder: WhisperDecoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person saying "five five" with 0.8 s before it. Greedy decoding looped on it on one
    machine ("5 5 5 5 ...", dropped by the loop test) and not on another: int8 kernels differ by
    processor. So the first pass is judged invented here whatever it says (a loop), and the
    retry, without the prompt and with repeated tokens penalised, must give the two words said.
    Without the penalty the retry is asked for with 1.0, and with it 1.3."""
    from asr_worker.engine import whisper

    cards = next(r for r in recordings() if r.name == "cards")
    five_five = cards.spoken[3]
    assert five_five.text == "five five"
    audio = cards.at(16000)[round((five_five.start_s - 0.8) * 16000) : round((five_five.end_s + 0.2) * 16000)]
    (result,) = decoder.decode_batch([audio])
    assert word_errors("five five", result.text) == (0, 2), result.text
    judged: list[str] = []
    honest = whisper.invented

    def first_pass_loops(text: str, avg_logprob: float, no_speech_prob: float, prompt: str = "") -> bool:
        judged.append(prompt)
        return len(judged) == 1 or honest(text, avg_logprob, no_speech_prob, prompt)

    monkeypatch.setattr(whisper, "invented", first_pass_loops)
    (retried,) = decoder.decode_batch([audio], ["Queen of clubs."])
    assert word_errors("five five", retried.text) == (0, 2), retried.text
    assert judged == ["Queen of clubs.", ""], "judged twice, the retry without the prompt"


def test_a_soft_first_word_at_telephone_bandwidth_starts_its_utterance() -> None:
    """JFK's "ask not" as an 8 kHz call: Silero scores the soft "ask" 0.3-0.5, and with the
    wideband threshold of 0.5 the final read "IS NOT!". At 0.35 the phrase is heard whole.
    (With Whisper this once read "Esk not" on a busy machine: utterances decoded in one padded
    batch, whose make-up depends on timing. The default engine decodes each utterance alone,
    so the words depend on the audio only: next test.)"""
    jfk = next(r for r in recordings() if r.name == "jfk")
    result = _transcribe({"jfk": jfk.call(RATE, Encoding.MULAW).data}, MULAW)["jfk"]
    assert result.ok, result.errors
    assert "ask not what your country" in spoken_form(" ".join(result.finals)), result.finals


def test_a_file_gives_the_same_words_however_it_is_fed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file's finals depend on its audio alone: resampling and the VAD are the same however
    the audio is cut into messages, and each utterance is decoded alone. So the same file fed
    in 100 ms pieces and in 260 ms pieces (the session passes on whatever a loaded machine
    lets accumulate) gives the same words, to the character."""
    from asr_worker.tools import transcribe

    recs = [r for r in recordings(with_alsa=False) if r.name in ("jfk", "cards")]
    files = {r.name: r.call(RATE, Encoding.MULAW).data for r in recs}
    coarse = _transcribe(files, MULAW)
    monkeypatch.setattr(transcribe, "FAST_CHUNK_S", 0.26)  # (not finer: ASR_MAX_FRAMES_PER_S)
    coarser = _transcribe(files, MULAW)
    for rec in recs:
        assert coarse[rec.name].ok and coarser[rec.name].ok
        assert coarse[rec.name].finals == coarser[rec.name].finals, rec.name
