"""Numbers as transcripts write them, read as digits: written, spoken one by one, in groups,
with "double", "oh", fillers and corrections; and the words that only look like numbers."""

from __future__ import annotations

import pytest

from asr_worker.core import spoken_numbers as sn


def digits(text: str) -> list[str]:
    return [run.digits for run in sn.runs(sn.read(text.split()))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111 1111 1111 1111", ["4111111111111111"]),
        ("4111-1111-1111-1111.", ["4111111111111111"]),
        ("four one one one", ["4111"]),
        ("Four, one, one, one.", ["4111"]),
        ("forty one eleven", ["4111"]),
        ("double four oh two", ["4402"]),
        ("triple seven", ["777"]),
        ("oh four twenty six", ["0426"]),
        ("04/26", ["0426"]),
        ("twelve twenty seven", ["1227"]),
        ("nineteen eighty five", ["1985"]),
        ("one twenty three", ["123"]),
        ("five hundred twelve", ["512"]),
        ("nineteen hundred", ["1900"]),
        ("two thousand twenty six", ["2026"]),
        ("twenty-three", ["23"]),
        ("$1,250.00", ["125000"]),
        ("four one, uh, one one", ["4111"]),
        ("four one one one, sorry, I mean four one one two", ["41114112"]),
        ("one two to three", ["1223"]),  # a "two" heard as "to" among digits read one by one
        ("five five five two two one one one one", ["555221111"]),
        ("my card number is for 1111 1111", ["411111111"]),  # the engine heard "four" as "for"
        ("Eleven? ElevenEleven", ["111111"]),  # number words written as one
    ],
)
def test_numbers_read_as_digits(text: str, expected: list[str]) -> None:
    assert digits(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oh I see", []),  # "oh" alone is not zero
        ("I want to go for a walk", []),
        ("from 9 to 5", ["9", "5"]),  # "to" between two numbers read as such is a word
        ("3 for 2 dollars", ["3", "2"]),
        ("a double check", []),
        ("a hundred times", []),
        ("the one I had", ["1"]),
        ("my card is [CREDIT_CARD_1] thanks", []),  # a provider's tag is not a number
        ("order 12 and 14 please", ["1214"]),  # "and" is a filler: one run, redacted or not as one
    ],
)
def test_words_that_only_look_like_numbers(text: str, expected: list[str]) -> None:
    assert digits(text) == expected


def test_a_run_spans_at_most_three_fillers() -> None:
    assert digits("four one uh um er one one") == ["4111"]
    assert digits("four one uh um er ah one one") == ["41", "11"]


def test_cuts_fall_between_numbers() -> None:
    (run,) = sn.runs(sn.read(["forty", "one", "eleven", "0426"]))
    assert run.digits == "41110426"
    assert [size for _, size in run.cuts] == [2, 4, 8]


def test_keywords_and_tags_are_marked() -> None:
    spoken = sn.read(["my", "credit", "card", "expires", "[CREDIT_CARD_1]", "CVV"])
    assert list(zip(spoken.kinds, spoken.values, strict=True)) == [
        (sn.WORD, ""),
        (sn.WORD, sn.CARD),
        (sn.WORD, sn.CARD),
        (sn.WORD, sn.EXPIRY),
        (sn.TAG, sn.CARD),  # what the provider redacted counts as said
        (sn.WORD, sn.CVV),
    ]


def test_the_candidate_search_finds_what_redaction_acts_on_and_nothing_else() -> None:
    for text in (
        "4",
        "four.",
        "Twenty",
        "card,",
        "SSN?",
        "[REDACTED]",
        "*",
        "expires",
        "twenty-three",
        "ElevenEleven",
        "fourteenth",
        "(nine)",
    ):
        assert sn.may_hold(f"it is {text} now"), text
    assert not sn.may_hold("hello, how can I help you today?")
    assert not sn.may_hold("someone often phoned about a discount")
