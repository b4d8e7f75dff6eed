"""Word times for an engine without timestamps: laid along the voice the VAD heard."""

from __future__ import annotations

from asr_worker.engine.decoding import Decoded, DecodedWord
from asr_worker.engine.timing import spread, voiced_spans


def _untimed(*words: str, audio_s: float = 4.0) -> Decoded:
    return Decoded(tuple(DecodedWord(w, 0.0, 0.0, 0.9) for w in words), audio_s, timed=False)


def test_voiced_spans_are_runs_of_windows_at_or_above_the_threshold() -> None:
    probs = [0.1, 0.5, 0.6, 0.1, 0.1, 0.9, 0.3]
    assert voiced_spans(probs, 1.0, 0.5, 0.3) == [(1.5, 2.5), (3.5, 4.5)]


def test_words_share_the_voiced_time_by_length_and_none_falls_in_a_pause() -> None:
    timed = spread(_untimed("ten", "of", "clubs,", "five", "five."), [(0.5, 1.5), (2.5, 3.5)])
    assert timed.timed and [w.text for w in timed.words] == ["ten", "of", "clubs,", "five", "five."]
    starts = [w.start for w in timed.words]
    assert starts == sorted(starts) and timed.words[0].start == 0.5  # from the voice, not the lead-in
    assert timed.words[-1].end == 3.5
    for word in timed.words:
        assert 0.5 <= word.start < word.end <= 1.5 or 2.5 <= word.start < word.end <= 3.5, word
    assert timed.words[2].end - timed.words[2].start > timed.words[1].end - timed.words[1].start


def test_a_digit_counts_as_a_spoken_word_and_timed_results_pass_through() -> None:
    room, ten = spread(_untimed("room", "10"), [(0.0, 2.0)]).words
    assert 0.5 < (ten.end - ten.start) / (room.end - room.start) < 2.0
    whisper = Decoded((DecodedWord("hi", 0.2, 0.4, 0.9),), 1.0)
    assert spread(whisper, [(0.5, 0.9)]) is whisper


def test_without_voice_the_words_span_the_whole_utterance() -> None:
    timed = spread(_untimed("no", audio_s=1.2), [])
    assert (timed.words[0].start, timed.words[0].end) == (0.0, 1.2)
