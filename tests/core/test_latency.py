"""Arrival latency on plain offsets and times: a result counts from the arrival of the message
that held its last byte; one ending past everything counts from the newest message; finals
let older arrivals go, but never the newest."""

from __future__ import annotations

from asr_worker.core.latency import ArrivalLatency


def arrivals(*messages: tuple[int, float]) -> ArrivalLatency:
    latency = ArrivalLatency()
    for end_offset, at in messages:
        latency.arrived(end_offset, at)
    return latency


def test_a_result_counts_from_the_message_that_held_its_last_byte() -> None:
    latency = arrivals((320, 1.00), (640, 1.02), (960, 1.04))
    assert latency.latency_ms(500, now=1.30) == 280  # byte 500 came in the message ending at 640
    assert latency.latency_ms(640, now=1.30) == 280  # a message's own last byte
    assert latency.latency_ms(641, now=1.30) == 260
    assert latency.latency_ms(10, now=1.30) == 300


def test_a_result_ending_past_the_audio_counts_from_the_newest_message() -> None:
    latency = arrivals((320, 1.00), (640, 1.02))
    assert latency.latency_ms(10_000, now=1.50) == 480


def test_no_audio_no_latency_and_never_below_zero() -> None:
    assert ArrivalLatency().latency_ms(320, now=5.0) == 0
    assert arrivals((320, 2.0)).latency_ms(320, now=1.9) == 0


def test_covered_arrivals_are_forgotten_but_the_newest_stays() -> None:
    latency = arrivals((320, 1.00), (640, 1.02), (960, 1.04))
    latency.forget_through(640)
    assert latency.latency_ms(0, now=1.10) == 60, "the oldest left is the message ending at 960"
    latency.forget_through(10_000)
    assert latency.latency_ms(10_000, now=1.10) == 60
    latency.clear()
    assert latency.latency_ms(0, now=1.10) == 0
