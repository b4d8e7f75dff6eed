"""Redaction on text: card numbers, expiry dates, security codes and SSNs in the forms callers
say them and engines write them, across interims, finals and the two channels; the rest of
each sentence kept; Deepgram's streaming replacement form, words and times consistent."""

from __future__ import annotations

import re

import pytest

from asr_worker.core.events import TranscriptWord
from asr_worker.core.provider_events import TranscriptResult, Word
from asr_worker.core.redact import CONTEXT_S, JOIN_GAP_S, Redactor, luhn_valid

# What no redacted text may hold: a digit, or a word that says one (a tag's own number aside).
_TAG = re.compile(r"\[[A-Z_]+?(?:_\d+)?\]")
_NUMBERISH = re.compile(
    r"\d|\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
    r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|"
    r"seventy|eighty|ninety|hundred|thousand)\b",
    re.IGNORECASE,
)


def leaked(text: str) -> list[str]:
    return _NUMBERISH.findall(_TAG.sub("", text))


class Call:
    """One call's redactor fed results the way the session core feeds it: words with call
    times, a quarter second each, results a second apart."""

    def __init__(self, *values: str) -> None:
        redactor = Redactor.of(frozenset(values))
        assert redactor is not None
        self.redactor = redactor
        self.at_s = 0.0

    def hear(self, text: str, *, channel: int = 0, final: bool = True, gap_s: float = 1.0) -> str:
        tokens = text.split()
        words = tuple(
            TranscriptWord(t.lower().strip(".,?!"), self.at_s + 0.3 * i, self.at_s + 0.3 * i + 0.25, 0.9, t)
            for i, t in enumerate(tokens)
        )
        end_s = self.at_s + 0.3 * len(tokens)
        out_text, out_words = self.redactor.event_words(channel, final, text, words, self.at_s, end_s)
        # Deepgram's form: the text is its words, one each; a span is one word over its words' times.
        assert out_text == " ".join(w.punctuated_word or w.word for w in out_words)
        assert all(w.start <= w.end for w in out_words)
        assert [w.start for w in out_words] == sorted(w.start for w in out_words)
        if final:
            self.at_s = end_s + gap_s
        return out_text


PCI_SAYINGS = [  # (what is said, what is shown)
    ("My card number is 4111 1111 1111 1111.", "My card number is [CREDIT_CARD_1]."),
    ("It's 4111-1111-1111-1111, thanks.", "It's [CREDIT_CARD_1], thanks."),
    ("sure it's four one one one one one one one one one one one one one one one",
     "sure it's [CREDIT_CARD_1]"),
    ("it is forty one eleven eleven eleven eleven eleven eleven eleven okay", "it is [CREDIT_CARD_1] okay"),
    ("four double one, double one double one, double one double one, double one double one, that's it",
     "[CREDIT_CARD_1], that's it"),
    ("five five oh oh, one two three four, oh oh oh oh, nine nine nine one please",
     "[CREDIT_CARD_1] please"),
    ("The number is 41111111 11111111 on the front", "The number is [CREDIT_CARD_1] on the front"),
    ("um, four one one one, uh, one one one one, one one one one, one one one one",
     "um, [CREDIT_CARD_1]"),
    # a misheard digit: Luhn fails, and the rest of the card still does not get through
    ("My card number is 4111 1111 1111 1112.", "My card number is [CREDIT_CARD_1]."),
    ("it's 4111 1111 sorry 4111 1112 1111 1111 yes", "it's [CREDIT_CARD_1] yes"),
    ("Amex 3782 822463 10005 thanks", "Amex [CREDIT_CARD_1] thanks"),
]  # fmt: skip


@pytest.mark.parametrize(("said", "shown"), PCI_SAYINGS)
def test_card_numbers_in_every_form_are_redacted_and_the_rest_is_kept(said: str, shown: str) -> None:
    assert Call("pci").hear(said) == shown


EXPIRY_AND_CODES = [
    ("The expiry date is oh four twenty six.", "The expiry date is [CREDIT_CARD_EXPIRATION_1]."),
    ("It expires 04/26.", "It expires [CREDIT_CARD_EXPIRATION_1]."),
    ("expiration April 2027 I think", "expiration [CREDIT_CARD_EXPIRATION_1] I think"),
    ("valid thru twelve twenty seven", "valid thru [CREDIT_CARD_EXPIRATION_1]"),
    ("and the security code is one two three", "and the security code is [CVV_1]"),
    ("the CVV is 4 5 6.", "the CVV is [CVV_1]."),
    ("CVC seven eight nine okay", "CVC [CVV_1] okay"),
]


@pytest.mark.parametrize(("said", "shown"), EXPIRY_AND_CODES)
def test_expiry_dates_and_security_codes_are_redacted_in_the_context_of_a_card(said: str, shown: str) -> None:
    call = Call("pci")
    assert call.hear("I'd like to pay by credit card please") == "I'd like to pay by credit card please"
    assert call.hear(said) == shown


def test_an_expiry_date_and_code_said_with_the_number_are_cut_where_luhn_says_the_card_ends() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    call = Call("pci")
    shown = call.hear("4111 1111 1111 1111 0426 123 is my card")
    assert shown == "[CREDIT_CARD_1] [CREDIT_CARD_EXPIRATION_1] [CVV_1] is my card"


def test_a_card_number_split_across_finals_is_redacted_in_each_and_named_once() -> None:
    call = Call("pci")
    assert call.hear("It's 4111") == "It's [REDACTED]"  # may be a card's start: hidden at once
    assert call.hear("1111 1111") == "[CREDIT_CARD_1]"
    assert call.hear("1111, that's it") == "[CREDIT_CARD_1], that's it"
    assert call.hear("thanks, anything else?") == "thanks, anything else?"


def test_a_number_that_grows_past_what_its_entity_can_hold_becomes_a_card() -> None:
    call = Call("numbers")
    assert call.hear("it is 12345") == "it is [REDACTED]"
    assert call.hear("6789") == "[SSN_1]"  # nine digits: an SSN, so far
    assert call.hear("1234 5678") == "[CREDIT_CARD_1]"  # seventeen: it was a card all along


def test_a_number_cut_by_a_long_silence_is_not_joined_to_the_next() -> None:
    call = Call("pci")
    assert call.hear("I'll take 2", gap_s=JOIN_GAP_S + 5) == "I'll take 2"
    assert call.hear("3 more please") == "3 more please"


def test_interims_mask_every_number_that_may_become_an_entity_before_it_is_settled() -> None:
    call = Call("pci")
    interims = [
        "my card number is four",
        "my card number is four one one",
        "my card number is four one one one one one one one",
        "it's 4",
        "it's 41",
    ]
    for text in interims:
        shown = call.hear(text, final=False)
        assert not leaked(shown), shown
        assert shown.endswith("[REDACTED]")
    final = call.hear("my card number is four one one one one one one one one one one one one one one one")
    assert final == "my card number is [CREDIT_CARD_1]"


def test_interims_after_a_final_that_ended_in_digits_are_masked_too() -> None:
    call = Call("pci")
    assert call.hear("the number is 4111 1111") == "the number is [REDACTED]"  # a card's start?
    assert call.hear("1111 and", final=False) == "[REDACTED] and"


def test_the_agent_reading_the_number_back_on_the_other_channel_is_redacted() -> None:
    call = Call("pci")
    assert (
        call.hear("My card number is 4111 1111 1111 1111.", channel=0) == "My card number is [CREDIT_CARD_1]."
    )
    # the same number on the other channel: the same entity
    assert call.hear("So that's 4111 1111 1111 1111?", channel=1) == "So that's [CREDIT_CARD_1]?"
    # a part of it, without a keyword: within the card's context, still hidden
    assert (
        call.hear("Ending in one one one one, correct?", channel=1) == "Ending in [CREDIT_CARD_2], correct?"
    )
    assert call.hear("the expiry please", channel=1) == "the expiry please"
    assert call.hear("oh four twenty six", channel=0) == "[CREDIT_CARD_EXPIRATION_1]"
    assert (
        call.hear("and the three digit code on the back", channel=1)
        == "and the [REDACTED] digit code on the back"
    )
    assert call.hear("seven three one", channel=0) == "[CVV_1]"


def test_outside_a_cards_context_small_numbers_and_years_stay() -> None:
    call = Call("pci")
    assert call.hear("I have 2 cats and in 2019 we moved to 5th Avenue") == (
        "I have 2 cats and in 2019 we moved to 5th Avenue"
    )
    call.hear("now my card number is 4111 1111 1111 1111")
    call.at_s += CONTEXT_S + 1
    assert call.hear("see you at 10 tomorrow") == "see you at 10 tomorrow"


def test_ssn_in_its_forms() -> None:
    call = Call("ssn")
    assert call.hear("my social security number is 123-45-6789.") == "my social security number is [SSN_1]."
    # in its context every number is hidden: the small ones too, without a name
    assert call.hear("the last four of my social are 6789") == "the last [REDACTED] of my social are [SSN_2]"
    other = Call("ssn")
    assert other.hear("it's five five five") == "it's [REDACTED]"
    assert other.hear("two two") == "[REDACTED]"
    assert other.hear("one one one one okay") == "[SSN_1] okay"
    third = Call("ssn")
    assert third.hear("and it is 555 22 1111 yes") == "and it is [SSN_1] yes"
    # a card number is not an SSN: `ssn` alone leaves cards to `pci`
    assert Call("ssn").hear("card 4111 1111 1111 1111 ok") == "card 4111 1111 1111 1111 ok"


def test_numbers_redacts_any_run_of_three_digits_and_names_the_entities_it_knows() -> None:
    call = Call("numbers")
    assert call.hear("order 12345 for 2 items") == "order [REDACTED] for 2 items"
    assert call.hear("my SSN is 123 45 6789") == "my SSN is [SSN_1]"
    assert call.hear("and the card 4111 1111 1111 1111 please") == "and the card [CREDIT_CARD_1] please"
    assert Call("true").hear("room one two three") == "room [REDACTED]"
    assert Call("aggressive_numbers").hear("I have 2 cats") == "I have [REDACTED] cats"


def test_a_providers_own_tags_pass_and_open_a_cards_context() -> None:
    call = Call("pci")
    assert call.hear("my card number is [CREDIT_CARD_1] thanks") == "my card number is [CREDIT_CARD_1] thanks"
    # three digits said near a card, without a word saying what: the card's code
    assert call.hear("and 123 on the back") == "and [CVV_1] on the back"
    assert call.hear("good until 0427") == "good until [CREDIT_CARD_EXPIRATION_1]"  # MMYY


def test_replaced_words_span_their_words_times_and_keep_punctuation() -> None:
    redactor = Redactor.of(frozenset({"pci"}))
    assert redactor is not None
    words = (
        TranscriptWord("card", 0.0, 0.3, 0.95, "Card:"),
        TranscriptWord("4111", 0.4, 0.8, 0.9, "4111"),
        TranscriptWord("1111", 0.9, 1.3, 0.7, "1111"),
        TranscriptWord("1111", 1.4, 1.8, 0.8, "1111"),
        TranscriptWord("1111", 1.9, 2.3, 0.9, "1111."),
        TranscriptWord("thanks", 2.5, 2.9, 0.99, "Thanks."),
    )
    text, out = redactor.event_words(0, True, "Card: 4111 1111 1111 1111. Thanks.", words, 0.0, 2.9)
    assert text == "Card: [CREDIT_CARD_1]. Thanks."
    assert [(w.word, w.start, w.end, w.confidence, w.punctuated_word) for w in out] == [
        ("card", 0.0, 0.3, 0.95, "Card:"),
        ("[CREDIT_CARD_1]", 0.4, 2.3, 0.7, "[CREDIT_CARD_1]."),
        ("thanks", 2.5, 2.9, 0.99, "Thanks."),
    ]
    assert len(text.split()) == len(out)


def test_a_result_without_words_is_redacted_on_its_text() -> None:
    redactor = Redactor.of(frozenset({"pci"}))
    assert redactor is not None
    text, words = redactor.event_words(0, True, "card 4111 1111 1111 1111 thanks", (), 1.0, 4.0)
    assert text == "card [CREDIT_CARD_1] thanks" and words == ()


def test_a_providers_result_is_redacted_in_deepgrams_shape() -> None:
    redactor = Redactor.of(frozenset({"numbers"}))
    assert redactor is not None
    spoken = ("order", "number", "one", "two", "three", "four", "five")
    words = tuple(Word(w, 0.1 + i * 0.2, 0.25 + i * 0.2, 0.9, w.capitalize()) for i, w in enumerate(spoken))
    result = TranscriptResult(0, True, True, " ".join(w.capitalize() for w in spoken), 0.9, 0.0, 2.0, words)
    out = redactor.result(result)
    assert out.text == "Order Number [REDACTED]"
    assert [w.word for w in out.words] == ["order", "number", "[REDACTED]"]
    assert out.words[-1].start == words[2].start and out.words[-1].end == words[-1].end
    assert (out.start, out.duration, out.is_final, out.channel) == (0.0, 2.0, True, 0)
    untouched = TranscriptResult(0, True, True, "Hello there", 0.9, 0.0, 1.0, words[:2])
    assert redactor.result(untouched) is untouched


def test_no_redaction_asked_means_no_redactor() -> None:
    assert Redactor.of(frozenset()) is None


SENSITIVE_FORMS = [text for text, _ in PCI_SAYINGS]


@pytest.mark.parametrize("said", SENSITIVE_FORMS)
def test_no_digit_of_a_card_is_left_in_any_interim_of_it_as_it_grows(said: str) -> None:
    call = Call("pci")
    tokens = said.split()
    for n in range(1, len(tokens) + 1):
        shown = call.hear(" ".join(tokens[:n]), final=False)
        assert not leaked(shown), (n, shown)
    assert not leaked(call.hear(said))
