"""Word de-duplication on plain words and times: per channel, words that start before what the
channel already finalized are repeats; a resumed call starts from what was published; how far
every channel is final is the least of them."""

from __future__ import annotations

from asr_worker.core.dedup import WordDedup, text_of
from asr_worker.core.provider_events import Word


def words(*spans: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(w, start, end, 0.9) for w, start, end in spans)


def test_a_result_after_what_was_finalized_is_new() -> None:
    dedup = WordDedup()
    assert not dedup.repeats(0, 0.0)
    dedup.finalized(0, 2.0, channels=1)
    assert not dedup.repeats(0, 2.0)
    assert dedup.repeats(0, 1.5)


def test_only_the_words_starting_after_what_the_channel_finalized_are_kept() -> None:
    dedup = WordDedup()
    dedup.finalized(0, 2.0, channels=1)
    heard = words(("hello", 0.5, 0.9), ("world", 1.0, 1.4), ("again", 1.5, 1.9))
    # A replayed stream that starts at call second 1.0: its times are relative to that.
    assert dedup.new_words(0, heard, base_s=1.0) == heard[1:]
    assert dedup.new_words(0, heard, base_s=0.0) == ()
    assert dedup.new_words(1, heard, base_s=0.0) == heard, "another channel finalized nothing"


def test_a_word_starting_exactly_where_the_channel_finalized_is_new_despite_float_sums() -> None:
    dedup = WordDedup()
    dedup.finalized(0, 0.1 + 0.2, channels=1)  # a stream base plus a provider time: 0.30000000000000004
    (word,) = words(("next", 0.3, 0.5))
    assert dedup.new_words(0, (word,), base_s=0.0) == (word,)
    assert not dedup.repeats(0, 0.3)


def test_coverage_never_moves_back_and_the_call_is_final_as_far_as_its_least_channel() -> None:
    dedup = WordDedup()
    assert dedup.finalized(0, 3.0, channels=2) == 0.0, "channel 1 has finalized nothing"
    assert dedup.finalized(1, 2.0, channels=2) == 2.0
    assert dedup.finalized(1, 1.0, channels=2) == 2.0
    assert dedup.finalized_s(1) == 2.0
    assert dedup.finalized(1, 5.0, channels=2) == 3.0


def test_a_resumed_call_does_not_publish_again_what_was_published() -> None:
    dedup = WordDedup()
    dedup.start_at(10.0, finalized_s=(12.5,), channels=2)
    assert dedup.finalized_s(0) == 12.5
    assert dedup.finalized_s(1) == 10.0, "nothing before the resume point is heard again"
    assert dedup.repeats(1, 9.0) and not dedup.repeats(1, 10.0)


def test_text_is_made_from_the_words_as_punctuated() -> None:
    kept = (Word("hello", 0.0, 0.4, 0.9, "Hello,"), Word("world", 0.5, 0.9, 0.9))
    assert text_of(kept) == "Hello, world"
    assert text_of(()) == ""
