"""Local agreement: interims keep the prefix two decodes agreed on."""

from __future__ import annotations

from asr_worker.engine.agreement import Agreement
from asr_worker.engine.decoding import DecodedWord


def hyp(text: str, step: float = 0.3) -> list[DecodedWord]:
    return [DecodedWord(w, i * step, i * step + step * 0.8, 0.9) for i, w in enumerate(text.split())]


def texts(words: list[DecodedWord]) -> str:
    return " ".join(w.text for w in words)


def test_words_two_decodes_agree_on_become_stable() -> None:
    a = Agreement()
    assert texts(a.update(hyp("I have a wish"))) == "I have a wish"
    assert a.stable_count == 0, "one decode alone commits nothing"
    assert texts(a.update(hyp("I have a question"))) == "I have a question"
    assert a.stable_count == 3
    assert texts(a.update(hyp("I have a question about my bill"))) == "I have a question about my bill"
    assert a.stable_count == 4


def test_agreement_ignores_case_and_punctuation() -> None:
    a = Agreement()
    a.update(hyp("thank you for calling."))
    a.update(hyp("Thank you, for calling how"))
    assert a.stable_count == 4


def test_a_committed_prefix_survives_a_decode_that_disagrees() -> None:
    a = Agreement()
    a.update(hyp("please call me back"))
    a.update(hyp("please call me back tomorrow"))
    assert a.stable_count == 4
    shown = a.update(hyp("peace hall me back tomorrow morning"))
    assert texts(shown) == "please call me back tomorrow morning", "committed words stay, the rest by time"
    assert a.stable_count == 4


def test_reset_starts_a_new_utterance() -> None:
    a = Agreement()
    a.update(hyp("one two"))
    a.update(hyp("one two three"))
    a.reset()
    assert a.stable_count == 0 and texts(a.update(hyp("four"))) == "four"
