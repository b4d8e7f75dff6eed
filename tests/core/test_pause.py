"""The pause map on plain offsets: the kept audio and the call's time apart by each pause."""

from __future__ import annotations

from asr_worker.core.pause import MAX_GAPS, PauseMap


def test_without_pauses_the_two_timelines_are_one() -> None:
    pauses = PauseMap()
    assert pauses.call_offset(1234) == 1234 and pauses.kept_offset(1234) == 1234


def test_a_pause_is_a_gap_in_call_time_where_the_kept_audio_stood_still() -> None:
    pauses = PauseMap()
    pauses.skip(1000, 300)  # 300 bytes arrived while paused, after 1000 kept
    pauses.skip(1000, 200)  # the same pause goes on
    assert pauses.total_bytes == 500 and pauses.gaps == 1
    assert pauses.call_offset(999) == 999
    assert pauses.call_offset(1000) == 1500, "the audio after the pause starts after its gap"
    assert pauses.call_offset(1100) == 1600
    assert pauses.kept_offset(1000) == 1000
    assert pauses.kept_offset(1250) == 1000, "a call time inside the pause maps to where it began"
    assert pauses.kept_offset(1600) == 1100
    pauses.skip(2000, 100)
    assert pauses.call_offset(2000) == 2600 and pauses.kept_offset(2600) == 2000
    assert pauses.kept_offset(2550) == 2000


def test_gaps_before_a_streams_start_fold_into_one_offset() -> None:
    pauses = PauseMap()
    pauses.skip(1000, 500)
    pauses.skip(3000, 100)
    pauses.fold_through(2000)
    assert pauses.gaps == 1
    assert pauses.call_offset(2500) == 3000 and pauses.call_offset(3000) == 3600
    assert pauses.kept_offset(3600) == 3000


def test_the_gaps_held_apart_are_bounded() -> None:
    pauses = PauseMap()
    for i in range(MAX_GAPS + 10):
        pauses.skip(i * 100, 10)
    assert pauses.gaps == MAX_GAPS
    assert pauses.call_offset(10_000) == 10_000 + (MAX_GAPS + 10) * 10
