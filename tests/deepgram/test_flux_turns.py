"""Flux's turn-taking decision (`deepgram/flux_turns.py`) on a fake clock: the stream's audio
time, given with every input, and the engine's results written by hand as the local engine
sends them (SpeechStarted, interims of the open utterance, finals that end it)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asr_worker.core.provider_events import TranscriptResult, Word
from asr_worker.deepgram import flux
from asr_worker.deepgram.flux import Thresholds, TurnInfo
from asr_worker.deepgram.flux_turns import (
    FORCE_WAIT_S,
    OPEN_UTTERANCE_CAP,
    Phase,
    Step,
    TurnTaker,
    confidence_for,
)


def w(text: str, start: float, end: float) -> Word:
    return Word(text.lower().strip(".?,"), start, end, 0.9, text)


def interim(start: float, end: float, *words: Word) -> TranscriptResult:
    return TranscriptResult(0, False, False, " ".join(x.word for x in words), 0.9, start, end - start, words)


def final(
    start: float, end: float, *words: Word, speech_final: bool = True, from_finalize: bool = False
) -> TranscriptResult:
    return TranscriptResult(
        0,
        True,
        speech_final and bool(words),
        " ".join(x.word for x in words),
        0.9 if words else 0.0,
        start,
        end - start,
        words,
        from_finalize=from_finalize,
    )


def events(step: Step) -> list[str]:
    return [e.event for e in step.events if e.event != flux.UPDATE]


def only(step: Step, event: str) -> TurnInfo:
    found = [e for e in step.events if e.event == event]
    assert len(found) == 1, step.events
    return found[0]


HELLO = w("Hello", 0.5, 0.8)
THERE = w("there.", 0.9, 1.2)


def test_the_confidence_is_the_silence_against_a_fifth_of_a_second() -> None:
    assert confidence_for(0.0) == 0.0
    assert confidence_for(0.2) == pytest.approx(0.5)
    assert confidence_for(0.45) == pytest.approx(0.692, abs=1e-3)  # the engine's own endpoint
    assert confidence_for(0.467) == pytest.approx(0.7, abs=1e-3)  # the default eot_threshold
    assert confidence_for(1.8) == pytest.approx(0.9)
    assert confidence_for(1e6) < 1.0  # eot_threshold=1.0 is never reached by confidence


def test_a_turn_starts_with_its_first_words_updates_and_ends_once_its_silence_is_long_enough() -> None:
    turns = TurnTaker()
    assert events(turns.speech_started(0.45, 0.6)) == []  # speech, but no words yet: no turn
    start = only(turns.result(interim(0.0, 1.0, HELLO), 1.1), flux.START_OF_TURN)
    assert (start.transcript, start.turn_index, start.window_start) == ("Hello", 0, 0.5)
    update = only(turns.result(interim(0.0, 1.3, HELLO, THERE), 1.4), flux.UPDATE)
    assert update.transcript == "Hello there." and update.confidence <= OPEN_UTTERANCE_CAP
    # The endpointer ends the utterance; its final arrives when 0.45 s of silence are heard: not enough.
    assert events(turns.result(final(0.0, 1.45, HELLO, THERE), 1.65)) == []
    assert turns.confidence() == pytest.approx(confidence_for(0.45))
    end = only(turns.audio(1.7), flux.END_OF_TURN)
    assert (end.transcript, end.trigger, end.turn_index) == ("Hello there.", flux.TRIGGER_MODEL, 0)
    assert end.confidence >= 0.7 and (end.window_start, end.window_end) == (0.5, 1.7)
    assert [w.word for w in end.words] == ["hello", "there"]
    after = only(turns.audio(1.95), flux.UPDATE)
    assert (after.turn_index, after.transcript, after.window_start) == (1, "", 1.7)


def test_no_confidence_ends_a_turn_the_engine_still_hears() -> None:
    turns = TurnTaker(Thresholds(eot_threshold=0.5))
    turns.result(interim(0.0, 1.0, HELLO), 1.0)
    # A long pause at the end of the latest interim, and a long time without another result:
    # the utterance is still open, so the confidence stays under every eot_threshold.
    turns.result(interim(0.0, 2.0, HELLO), 2.0)
    for now in (2.5, 4.0, 9.0):
        assert events(turns.audio(now)) == []
    assert turns.confidence() == OPEN_UTTERANCE_CAP and turns.phase is Phase.ONGOING


def test_an_eager_threshold_under_a_half_may_fire_at_a_pause_inside_the_utterance() -> None:
    turns = TurnTaker(Thresholds(eager_eot_threshold=0.3))
    turns.result(interim(0.0, 0.85, HELLO), 0.9)  # 0.05 s after the word: 0.2
    assert turns.phase is Phase.ONGOING
    eager = only(turns.result(interim(0.0, 1.0, HELLO), 1.1), flux.EAGER_END_OF_TURN)  # 0.2 s: 0.5, capped
    assert eager.transcript == "Hello" and eager.confidence == OPEN_UTTERANCE_CAP
    resumed = only(turns.result(interim(0.0, 1.3, HELLO, THERE), 1.3), flux.TURN_RESUMED)
    assert resumed.transcript == "Hello there."  # the transcript changed after the eager one


def test_eager_then_resumed_when_the_speaker_goes_on_then_eager_and_end_with_the_same_words() -> None:
    turns = TurnTaker(Thresholds(eot_threshold=0.9, eager_eot_threshold=0.5))
    turns.result(interim(0.0, 1.0, HELLO), 1.0)
    # The utterance's final, 0.5 s after its last word: 0.71, past the eager threshold only.
    assert events(turns.result(final(0.0, 1.3, HELLO), 1.3)) == [flux.EAGER_END_OF_TURN]
    assert turns.phase is Phase.AWAITING_END
    assert events(turns.speech_started(1.6, 1.7)) == [flux.TURN_RESUMED]
    assert turns.confidence() == 0.0  # nothing of the new utterance decoded yet
    assert events(turns.result(interim(1.3, 2.1, w("again", 1.7, 2.0)), 2.1)) == []
    assert turns.transcript() == "Hello again"
    closing = turns.result(final(1.3, 2.5, w("again", 1.7, 2.0)), 2.5)
    eager = only(closing, flux.EAGER_END_OF_TURN)
    assert eager.transcript == "Hello again"
    end = None
    for tick in range(60):
        step = turns.audio(2.5 + tick * 0.05)
        if flux.END_OF_TURN in events(step):
            end = only(step, flux.END_OF_TURN)
            break
    assert end is not None and end.transcript == eager.transcript
    assert end.window_end - 2.0 == pytest.approx(1.8, abs=0.05)  # 0.9 at 1.8 s of silence


def test_with_eager_mode_on_every_natural_end_follows_an_eager_one_even_when_both_come_at_once() -> None:
    turns = TurnTaker(Thresholds(eot_threshold=0.5, eager_eot_threshold=0.5))
    turns.result(interim(0.0, 1.0, HELLO), 1.0)
    assert events(turns.result(final(0.0, 1.45, HELLO), 1.5)) == [flux.EAGER_END_OF_TURN, flux.END_OF_TURN]


def test_a_transcript_that_changes_after_the_eager_one_resumes_the_turn_first() -> None:
    turns = TurnTaker(Thresholds(eot_threshold=0.9, eager_eot_threshold=0.3))
    turns.result(interim(0.0, 1.0, w("Hell", 0.5, 0.8)), 1.1)  # eager on the interim's pause
    assert turns.phase is Phase.AWAITING_END
    step = turns.result(final(0.0, 1.45, HELLO), 1.5)  # the final says it differently
    assert events(step) == [flux.TURN_RESUMED, flux.EAGER_END_OF_TURN]
    assert only(step, flux.EAGER_END_OF_TURN).transcript == "Hello"


def test_eot_threshold_one_leaves_the_end_to_the_timeout() -> None:
    turns = TurnTaker(Thresholds(eot_threshold=1.0, eot_timeout_ms=1000))
    turns.result(interim(0.0, 1.0, HELLO), 1.0)
    turns.result(final(0.0, 1.3, HELLO), 1.3)
    assert events(turns.audio(1.79)) == []
    end = only(turns.audio(1.8), flux.END_OF_TURN)
    assert end.trigger == flux.TRIGGER_TIMEOUT and end.transcript == "Hello"


def test_force_end_turn_mid_utterance_flushes_the_engine_and_ends_on_its_final() -> None:
    turns = TurnTaker(Thresholds(eot_threshold=1.0))
    turns.result(interim(0.0, 1.0, HELLO), 1.0)
    step = turns.force_end(1.15)
    assert step.flush and step.events == ()
    assert events(turns.result(interim(0.0, 1.1, HELLO), 1.2)) == []  # still waiting for the final
    end = only(turns.result(final(0.0, 1.15, HELLO, THERE, from_finalize=True), 1.2), flux.END_OF_TURN)
    assert (end.trigger, end.transcript, end.turn_index) == (flux.TRIGGER_MANUAL, "Hello there.", 0)
    # What the speaker says next is the next turn.
    start = only(turns.result(interim(1.15, 2.0, w("More", 1.5, 1.8)), 2.0), flux.START_OF_TURN)
    assert (start.turn_index, start.transcript) == (1, "More")


def test_force_end_turn_when_every_word_is_final_ends_the_turn_at_once() -> None:
    turns = TurnTaker(Thresholds(eot_threshold=0.95))
    turns.result(interim(0.0, 1.0, HELLO), 1.0)
    turns.result(final(0.0, 1.3, HELLO), 1.3)
    step = turns.force_end(1.35)
    assert not step.flush and only(step, flux.END_OF_TURN).trigger == flux.TRIGGER_MANUAL


def test_force_end_turn_with_nothing_heard_ends_nothing_and_with_unreported_words_makes_a_turn() -> None:
    turns = TurnTaker()
    assert turns.force_end(0.5) == Step(flush=True)  # the engine may know of words: it is asked
    assert events(turns.result(final(0.0, 0.5, from_finalize=True), 0.55)) == []  # it knew none
    turns.speech_started(0.6, 0.7)
    assert turns.force_end(0.9).flush
    step = turns.result(final(0.0, 0.9, w("Yes.", 0.6, 0.85), from_finalize=True), 1.0)
    assert events(step) == [flux.START_OF_TURN, flux.END_OF_TURN]


def test_force_end_turn_ends_the_turn_anyway_when_the_engine_never_answers() -> None:
    turns = TurnTaker(Thresholds(eot_threshold=1.0, eot_timeout_ms=60_000))
    turns.result(interim(0.0, 1.0, HELLO), 1.0)
    assert turns.force_end(1.0).flush
    assert events(turns.audio(1.0 + FORCE_WAIT_S - 0.01)) == []
    end = only(turns.audio(1.0 + FORCE_WAIT_S), flux.END_OF_TURN)
    assert end.transcript == "Hello" and end.trigger == flux.TRIGGER_MANUAL
    # The engine's late final of the audio before the force belongs to the ended turn.
    assert events(turns.result(final(0.0, 1.0, HELLO, from_finalize=True), 3.1)) == []


def test_updates_come_every_quarter_second_of_audio_between_turns_too_but_not_with_a_change() -> None:
    turns = TurnTaker()
    sent = [e for now in [i * 0.05 for i in range(1, 21)] for e in turns.audio(now).events]
    assert [e.event for e in sent] == [flux.UPDATE] * 4
    assert [round(e.window_end, 2) for e in sent] == [0.25, 0.5, 0.75, 1.0]
    assert all(e.transcript == "" and e.turn_index == 0 for e in sent)
    # A StartOfTurn at 1.2 resets the count: the next Update is at 1.45.
    assert events(turns.result(interim(0.0, 1.2, HELLO), 1.2)) == [flux.START_OF_TURN]
    assert turns.audio(1.4).events == ()
    assert only(turns.audio(1.45), flux.UPDATE).transcript == "Hello"


def test_configure_takes_effect_at_once() -> None:
    turns = TurnTaker(Thresholds(eot_threshold=0.9))
    turns.result(interim(0.0, 1.0, HELLO), 1.0)
    turns.result(final(0.0, 1.3, HELLO), 1.3)
    assert events(turns.audio(1.6)) == []  # 0.8 s: 0.8
    assert events(turns.configure(Thresholds(eot_threshold=0.75))) == [flux.END_OF_TURN]


def test_a_stream_that_closes_mid_turn_ends_the_turn() -> None:
    turns = TurnTaker()
    turns.result(interim(0.0, 1.0, HELLO), 1.0)
    end = only(turns.close(), flux.END_OF_TURN)
    assert end.trigger == flux.TRIGGER_CLOSE and end.transcript == "Hello"
    assert TurnTaker().close() == Step()


def test_a_long_utterance_cut_by_the_engine_is_not_an_end() -> None:
    turns = TurnTaker(Thresholds(eot_threshold=0.5))
    turns.result(interim(0.0, 1.0, HELLO), 1.0)
    turns.result(final(0.0, 1.4, HELLO, speech_final=False), 2.5)  # cut: the speaker goes on
    assert events(turns.audio(3.0)) == [] and turns.phase is Phase.ONGOING


def test_a_final_that_comes_after_the_next_utterance_opened_is_judged_on_the_pause_as_on_time() -> None:
    """A busy engine: the VAD opens the next utterance before the last one's final is decoded.
    The pause between them (0.7 s after "Hello") is silence the engine heard: the turns come out
    as they do when the final is on time."""
    more = w("More", 1.6, 1.9)
    on_time, late = TurnTaker(), TurnTaker()
    for turns in (on_time, late):
        turns.result(interim(0.0, 1.0, HELLO), 1.0)
    assert events(on_time.result(final(0.0, 1.4, HELLO), 1.45)) == [flux.END_OF_TURN]
    on_time.speech_started(1.5, 1.55)
    late.speech_started(1.5, 1.55)  # the VAD opens the next utterance...
    end = only(late.result(final(0.0, 1.4, HELLO), 1.6), flux.END_OF_TURN)  # ...before the final
    assert (end.transcript, end.trigger) == ("Hello", "model") and end.confidence == confidence_for(0.7)
    for turns in (on_time, late):
        start = only(turns.result(interim(1.4, 2.0, more), 2.0), flux.START_OF_TURN)
        assert (start.turn_index, start.transcript) == (1, "More")


def test_a_late_final_keeps_the_turn_open_when_its_pause_is_shorter_than_the_threshold_asks() -> None:
    turns = TurnTaker(Thresholds(eot_threshold=0.9, eager_eot_threshold=0.5))  # 0.9: 1.8 s of silence
    turns.result(interim(0.0, 1.0, HELLO), 1.0)
    turns.speech_started(1.5, 1.55)
    # 0.7 s of pause: past the eager threshold, as on time, and the speaker went on.
    step = turns.result(final(0.0, 1.4, HELLO), 1.6)
    assert events(step) == [flux.EAGER_END_OF_TURN, flux.TURN_RESUMED]
    assert turns.phase is Phase.ONGOING and turns.confidence() == 0.0
    turns.result(interim(1.4, 2.0, w("More", 1.6, 1.9)), 2.0)
    assert turns.transcript() == "Hello More" and turns.turn_index == 0


# --- the protocol's promises, whatever the engine says -------------------------------------------

_INPUTS = st.lists(
    st.one_of(
        st.tuples(st.just("audio"), st.floats(0.01, 0.6)),
        st.tuples(st.just("speech"), st.floats(0.0, 0.3)),
        st.tuples(st.just("interim"), st.integers(0, 3)),
        st.tuples(st.just("final"), st.integers(0, 3)),
        st.tuples(st.just("force"), st.just(0)),
        st.tuples(st.just("configure"), st.sampled_from([0.5, 0.7, 0.9, 1.0])),
    ),
    max_size=60,
)


@given(_INPUTS, st.sampled_from([None, 0.3, 0.5]))
def test_whatever_the_engine_says_the_events_keep_flux_promises(
    inputs: list[tuple[str, float]], eager: float | None
) -> None:
    """StartOfTurn always has words; TurnResumed only follows EagerEndOfTurn; an EndOfTurn after
    an EagerEndOfTurn has its transcript; turn_index counts EndOfTurns; times never go back."""
    turns = TurnTaker(Thresholds(eot_threshold=0.7, eager_eot_threshold=eager))
    now, utterance_start, said = 0.0, 0.0, 0
    sent: list[TurnInfo] = []
    for kind, value in inputs:
        if kind == "audio":
            now += value
            step = turns.audio(now)
        elif kind == "speech":
            utterance_start = now + value
            now += value + 0.05
            step = turns.speech_started(utterance_start, now)
        elif kind in ("interim", "final"):
            words = [
                w(f"w{said + i}", utterance_start + 0.1 * i, utterance_start + 0.1 * i + 0.08)
                for i in range(int(value))
            ]
            end = max([now, *(x.end for x in words)])
            now = end
            if kind == "final":
                said += len(words)
                step = turns.result(final(utterance_start, end, *words), now)
                utterance_start = end
            else:
                step = turns.result(interim(utterance_start, end, *words), now)
        elif kind == "force":
            step = turns.force_end(now)
        else:
            step = turns.configure(Thresholds(eot_threshold=value, eager_eot_threshold=eager))
        sent += step.events
    index, last, eager_text = 0, None, None
    for e in sent:
        assert e.turn_index == index
        if e.event == flux.START_OF_TURN:
            assert e.transcript and last in (None, flux.END_OF_TURN)
        if e.event == flux.TURN_RESUMED:
            assert last == flux.EAGER_END_OF_TURN
        if e.event == flux.EAGER_END_OF_TURN:
            assert e.transcript
            eager_text = e.transcript
        if e.event == flux.END_OF_TURN:
            if last == flux.EAGER_END_OF_TURN:
                assert e.transcript == eager_text
            index += 1
        if e.event != flux.UPDATE:
            last = e.event
    assert [e.window_end for e in sent] == sorted(e.window_end for e in sent)
