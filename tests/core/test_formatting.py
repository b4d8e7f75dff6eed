"""Deepgram's formatting options on a result's words (`core/formatting.py`), and `search`
(`core/search.py`): pure, a result in and a result out."""

from __future__ import annotations

import pytest

from asr_worker.core.call_options import FormatOptions
from asr_worker.core.formatting import Formatter
from asr_worker.core.provider_events import Entity, TranscriptResult, Word
from asr_worker.core.search import searched


def result(text: str, *, words: bool = True) -> TranscriptResult:
    """A final whose words are `text`'s, half a second each."""
    tokens = text.split()
    made = tuple(
        Word(t.lower().strip(".,?!"), round(i * 0.5, 3), round(i * 0.5 + 0.4, 3), 0.9, t)
        for i, t in enumerate(tokens)
    )
    return TranscriptResult(0, True, True, text, 0.9, 0.0, len(tokens) * 0.5, made if words else ())


def formatted(options: FormatOptions, text: str) -> TranscriptResult:
    formatter = Formatter.of(options)
    assert formatter is not None
    out = formatter.result(result(text))
    assert out.text == " ".join(w.punctuated_word or w.word for w in out.words)  # Deepgram's form
    assert all(a.end <= b.start + 1e-9 for a, b in zip(out.words, out.words[1:], strict=False))
    return out


@pytest.mark.parametrize(
    ("options", "said", "written"),
    [
        # numerals, as Deepgram's documentation shows them: digits said one by one stay apart
        (
            FormatOptions(numerals=True),
            "My account number is nine two eight four and then twenty three.",
            "My account number is 9 2 8 4 and then 23.",
        ),
        (FormatOptions(numerals=True), "Nine hundred, please.", "900, please."),
        (FormatOptions(numerals=True), "It is five hundred and twelve.", "It is 512."),
        (FormatOptions(numerals=True), "Two thousand twenty six", "2026"),
        (FormatOptions(numerals=True), "It costs 999,999 today", "It costs 999999 today"),
        (FormatOptions(numerals=True), "double four oh seven", "4 4 0 7"),
        (FormatOptions(smart_format=True), "Room forty one.", "Room 41."),
        # numerals=false: written numbers said as words
        (
            FormatOptions(numerals=False),
            "It costs $3.50, at 3:05 on the 21st.",
            "It costs three dollars fifty cents, at three oh five on the twenty first.",
        ),
        (
            FormatOptions(numerals=False),
            "Code 0426, 1,250 people, 50%.",
            "Code zero four two six, one thousand two hundred fifty people, fifty percent.",
        ),
        (FormatOptions(numerals=False), "7 days", "Seven days"),
        (FormatOptions(numerals=False, punctuate=False), "7 days.", "seven days"),
        # punctuation and capitals out; apostrophes and a number's point stay
        (FormatOptions(punctuate=False), "Hello, I'm Bob. It's 3.5 miles!", "hello i'm bob it's 3.5 miles"),
        (FormatOptions(punctuate=False), "Twenty-three - yes.", "twenty three yes"),
        (FormatOptions(punctuate=False, smart_format=True), "Hello, Bob.", "Hello, Bob."),
        (FormatOptions(filler_words=False), "Um, I think, uh, yes.", "I think, yes."),
        (FormatOptions(filler_words=False), "Um, well. Uh, yes.", "Well. Yes."),
        (
            FormatOptions(dictation=True),
            "Headache comma nausea period they report pain question mark",
            "Headache, nausea. They report pain?",
        ),
        (FormatOptions(dictation=True, punctuate=False), "pain comma", "pain comma"),  # needs punctuation
        (
            FormatOptions(measurements=True, numerals=True),
            "I ate thirty three grams and drank 55 milliliters.",
            "I ate 33 g and drank 55 ml.",
        ),
        (FormatOptions(measurements=True), "a pound of flour", "a pound of flour"),  # no number, no unit
        (
            FormatOptions(replace=(("acme cloud", "AcmeCloud"),)),
            "Welcome to Acme cloud, Bob.",
            "Welcome to AcmeCloud, Bob.",
        ),
        (FormatOptions(replace=(("bob", ""),)), "Welcome, Bob.", "Welcome."),
        (FormatOptions(profanity_filter=True), "Well, shit. What the fuck?", "Well, ****. What the ****?"),
        (FormatOptions(profanity_filter=True), "Shitake and Scunthorpe.", "Shitake and Scunthorpe."),
    ],
)
def test_each_option_writes_the_words_as_deepgram_does(
    options: FormatOptions, said: str, written: str
) -> None:
    assert formatted(options, said).text == written


def test_changed_words_share_the_times_of_the_words_they_replace() -> None:
    out = formatted(FormatOptions(numerals=True), "pay twenty three now")
    assert [(w.word, w.start, w.end) for w in out.words] == [
        ("pay", 0.0, 0.4),
        ("23", 0.5, 1.4),  # "twenty" and "three", one word from the first's start to the last's end
        ("now", 1.5, 1.9),
    ]
    spelled = formatted(FormatOptions(numerals=False), "pay 23 now")
    assert [(w.word, w.start, w.end) for w in spelled.words[1:3]] == [
        ("twenty", 0.5, 0.7),
        ("three", 0.7, 0.9),
    ]


def test_redaction_tags_are_never_touched() -> None:
    options = FormatOptions(numerals=False, punctuate=False, profanity_filter=True, replace=(("card", "x"),))
    out = formatted(options, "Card [CREDIT_CARD_1] and [REDACTED], 4.")
    assert out.text == "x [CREDIT_CARD_1] and [REDACTED] four"


def test_nothing_asked_is_no_formatter_and_a_text_without_words_is_formatted_too() -> None:
    assert Formatter.of(FormatOptions()) is None
    assert Formatter.of(FormatOptions(filler_words=True, punctuate=True)) is None
    formatter = Formatter.of(FormatOptions(numerals=True))
    assert formatter is not None
    out = formatter.result(result("Twenty three.", words=False))
    assert (out.text, out.words) == ("23.", ())


def test_entities_stay_only_while_their_words_do() -> None:
    entity = Entity("CARDINAL", "3", "three", 0.9, 1, 2)
    base = result("I want three please")
    with_entity = TranscriptResult(
        base.channel, True, True, base.text, 0.9, 0.0, base.duration, base.words, entities=(entity,)
    )
    same_count = Formatter.of(FormatOptions(numerals=True))
    fewer = Formatter.of(FormatOptions(replace=(("please", ""),)))
    assert same_count is not None and fewer is not None
    assert same_count.result(with_entity).entities == (entity,)
    assert fewer.result(with_entity).entities == ()


def test_defaults_fill_only_what_the_call_did_not_name() -> None:
    asked = FormatOptions(numerals=True, search=("x",))
    deepgram = asked.with_defaults(False)
    assert deepgram.numerals is True and deepgram.punctuate is False and deepgram.filler_words is False
    assert deepgram.search == ("x",)
    assert asked.with_flags({"numerals": False, "punctuate": True}).numerals is False


def test_search_finds_a_term_heard_as_written_or_misspelled_with_its_times() -> None:
    out = searched(
        result("I want to buy a zorblacks today from zorblax inc"), ("Zorblax", "buy a", "nothing")
    )
    by_query = {found.query: found.hits for found in out.search}
    assert list(by_query) == ["Zorblax", "buy a", "nothing"]  # every term, in the order asked
    best, second = by_query["Zorblax"]
    assert (best.snippet, best.start, best.end, best.confidence) == ("zorblax", 4.0, 4.4, 0.9)
    assert second.snippet == "zorblacks" and 0.5 < second.confidence < best.confidence
    [phrase] = by_query["buy a"]
    assert (phrase.start, phrase.end) == (1.5, 2.4)
    assert by_query["nothing"] == ()
    assert searched(result("hello"), ()) == result("hello")
