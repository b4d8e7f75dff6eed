"""Continuous forwarding on plain times: a full chunk goes at once, less waits at most
max_wait_s from when its oldest byte arrived, a stream sent nothing gets a keep-alive every
keepalive_s, and the deadline is the earliest of those."""

from __future__ import annotations

from asr_worker.core.forwarding import Forwarding

CHUNK = 800  # 50 ms of 8 kHz linear16


def forwarding() -> Forwarding:
    return Forwarding(chunk_bytes=CHUNK, max_wait_s=0.1, keepalive_s=3.0, message_bytes=4000)


def test_the_first_audio_to_wait_starts_the_clock() -> None:
    fwd = forwarding()
    assert fwd.waits(1.00)
    assert not fwd.waits(1.02)
    assert fwd.waiting_since == 1.00


def test_a_full_chunk_goes_at_once_and_less_waits_at_most_max_wait() -> None:
    fwd = forwarding()
    fwd.waits(1.0)
    assert fwd.send_due(CHUNK, 1.0)
    assert not fwd.send_due(CHUNK - 2, 1.05)
    assert fwd.send_due(CHUNK - 2, 1.1)
    assert not fwd.send_due(0, 9.0), "nothing waits"


def test_audio_owed_from_before_the_stream_has_no_start_and_goes_at_once() -> None:
    assert forwarding().send_due(2, 0.0)


def test_sending_says_how_long_the_oldest_audio_waited_and_resets_the_clocks() -> None:
    fwd = forwarding()
    fwd.waits(1.0)
    assert abs(fwd.sent(1.07) - 0.07) < 1e-9
    assert fwd.waiting_since is None and fwd.last_sent_at == 1.07
    assert fwd.sent(2.0) == 0.0


def test_a_stream_sent_nothing_gets_a_keepalive_every_keepalive_s() -> None:
    fwd = forwarding()
    fwd.stream_opened(10.0)
    assert not fwd.keepalive_due(12.9)
    assert fwd.keepalive_due(13.0)
    assert not fwd.keepalive_due(15.9)
    assert fwd.keepalive_due(16.0)
    fwd.sent(17.0)
    assert not fwd.keepalive_due(19.9)


def test_the_deadline_is_the_earliest_of_the_wait_and_the_keepalive() -> None:
    fwd = forwarding()
    fwd.stream_opened(10.0)
    assert fwd.deadline(0) == 13.0
    fwd.waits(11.0)
    assert fwd.deadline(2) == 11.1
    assert fwd.deadline(0) == 13.0, "only audio that waits has a wait deadline"
