"""Which decodes are text Whisper made up rather than heard (`engine/whisper.invented`)."""

from __future__ import annotations

import pytest

from asr_worker.engine.whisper import compression_ratio, invented


@pytest.mark.parametrize(
    ("text", "avg_logprob", "no_speech_prob"),
    [
        (" Thank you.", -0.8, 0.1),  # the classic, said without confidence
        (" Thank you.", -0.2, 0.5),  # confident words where Whisper heard no speech
        (" Thanks for watching!", -0.6, 0.05),
        (" you", -0.5, 0.3),
        (" Hello.", -1.5, 0.7),  # faster-whisper's rule: no speech and improbable words
        (" the the the the the the the the the the the the the the the the the the", -0.3, 0.0),  # a loop
        (" I'm going to get some of the new cars.", -2.1, 0.48),  # brown noise: doubtful, improbable
    ],
)
def test_invented_text_is_recognized(text: str, avg_logprob: float, no_speech_prob: float) -> None:
    assert invented(text, avg_logprob, no_speech_prob)


def test_a_prompt_said_again_over_doubtful_audio_is_invented() -> None:
    prompt = "I would like to change my address."
    assert invented(" I would like to change my address.", -0.7, 0.55, prompt)
    assert invented(" I would like to go to the airport.", -1.2, 0.36, prompt)
    # The same words, where Whisper hears speech, are a caller repeating themself.
    assert not invented(" I would like to change my address.", -0.3, 0.05, prompt)
    assert not invented(" Four of clubs.", -0.5, 0.35, "Ten of hearts.")


@pytest.mark.parametrize(
    ("text", "avg_logprob", "no_speech_prob"),
    [
        (" Thank you.", -0.15, 0.01),  # a caller who really says it, clearly
        (" Thank you.", -0.46, 0.133),  # the smoke call's first words at 8 kHz, cut as an interim is
        (" Bye.", -0.2, 0.05),
        (" Hello.", -1.5, 0.2),  # improbable, but Whisper heard speech
        (" Ten of clubs.", -0.9, 0.7),  # Whisper doubts speech, but its words are likely
        (" I would like to change the delivery address for my package.", -0.3, 0.0),
        ("", -5.0, 1.0),
    ],
)
def test_heard_text_is_kept(text: str, avg_logprob: float, no_speech_prob: float) -> None:
    assert not invented(text, avg_logprob, no_speech_prob)


def test_compression_ratio_is_high_only_for_repetition() -> None:
    assert compression_ratio("I would like to change the delivery address for my package.") < 1.5
    assert compression_ratio("no no no no no no no no no no no no no no no no no no no no") > 2.4
    assert compression_ratio("") == 0.0
