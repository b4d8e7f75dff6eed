"""The replay buffer on plain bytes: its offsets stay in order, a new stream replays exactly
what no final covered, finals free audio, and a full buffer sheds its oldest whole frames and
says how much of them the call lost."""

from __future__ import annotations

from asr_worker.core.replay import ReplayBuffer

FRAME = 2  # bytes per frame: 16-bit mono


def buffer(capacity_bytes: int = 1000) -> ReplayBuffer:
    return ReplayBuffer(capacity_bytes, FRAME)


def audio(start: int, stop: int) -> bytes:
    """Bytes whose values are their call offsets (mod 256), so a slice shows where it came from."""
    return bytes(i % 256 for i in range(start, stop))


def offsets(replay: ReplayBuffer) -> tuple[int, int, int, int]:
    return replay.base, replay.covered, replay.sent, replay.received


def test_audio_is_held_by_call_offset_until_it_is_sent_and_covered() -> None:
    replay = buffer()
    assert replay.append(audio(0, 100)) == 100
    assert replay.append(audio(100, 160)) == 160
    assert offsets(replay) == (0, 0, 0, 160)
    assert replay.unsent_bytes == 160 and replay.held_bytes == 160
    assert replay.read(40, 120) == audio(40, 120)
    replay.sent_all()
    assert replay.unsent_bytes == 0 and replay.replayable_bytes == 160


def test_a_final_frees_what_it_covers_but_never_more_than_was_sent() -> None:
    replay = buffer()
    replay.append(audio(0, 100))
    replay.sent_all()
    replay.append(audio(100, 200))
    assert replay.cover(60)
    assert offsets(replay) == (60, 60, 100, 200)
    assert replay.held_bytes == 140 and replay.read(60, 200) == audio(60, 200)
    assert replay.cover(500)  # a provider's rounding past what it was sent
    assert offsets(replay) == (100, 100, 100, 200)
    assert not replay.cover(80), "coverage never moves back"
    assert not replay.cover(100), "nor counts as progress when it stays"


def test_a_new_stream_replays_from_the_first_byte_no_final_covered() -> None:
    replay = buffer()
    replay.append(audio(0, 300))
    replay.sent_all()
    replay.cover(120)
    assert replay.rewind() == 180
    assert replay.stream_base == 120 and replay.sent == 120 and replay.unsent_bytes == 180
    assert replay.read(replay.sent, replay.received) == audio(120, 300)
    assert replay.rewind() == 0, "nothing was sent on the new stream yet"


def test_a_resumed_call_starts_every_offset_at_its_resume_point() -> None:
    replay = buffer()
    replay.start_at(4000)
    assert offsets(replay) == (4000, 4000, 4000, 4000) and replay.stream_base == 4000
    assert replay.append(audio(4000, 4010)) == 4010
    assert replay.read(4002, 4006) == audio(4002, 4006)


def test_a_full_buffer_sheds_its_oldest_whole_frames_that_were_sent_without_loss() -> None:
    replay = buffer(capacity_bytes=100)
    replay.append(audio(0, 100))
    replay.sent_all()
    replay.append(audio(100, 130))
    assert replay.shed_oldest() == 0, "all of what it shed had gone out"
    assert offsets(replay) == (30, 30, 100, 130)
    assert replay.held_bytes == 100 and replay.read(30, 130) == audio(30, 130)


def test_shedding_audio_never_sent_loses_it_and_moves_past_it() -> None:
    replay = buffer(capacity_bytes=100)
    replay.append(audio(0, 40))
    replay.sent_all()
    replay.append(audio(40, 170))
    assert replay.shed_oldest() == 30  # 0..70 shed, of which 40..70 never went out
    assert offsets(replay) == (70, 70, 70, 170)
    assert replay.read(70, 170) == audio(70, 170)


def test_shedding_drops_whole_frames_only_and_nothing_under_the_capacity() -> None:
    replay = ReplayBuffer(capacity_bytes=11, frame_bytes=4)
    replay.append(audio(0, 12))
    assert replay.shed_oldest() == 0 and replay.base == 0, "1 byte over is not a whole frame"
    replay.append(audio(12, 20))
    assert replay.shed_oldest() == 8 and replay.base == 8
    assert (replay.received - replay.base) % 4 == 0


def test_clear_frees_the_audio_and_keeps_the_offsets() -> None:
    replay = buffer()
    replay.append(audio(0, 50))
    replay.clear()
    assert replay.held_bytes == 0 and replay.received == 50
