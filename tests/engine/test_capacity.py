"""What the engine says it can carry, from what decoding costs: pure arithmetic on a model."""

from __future__ import annotations

import pytest

from asr_worker.engine.capacity import CapacityModel


def test_unknown_until_calibrated_then_decoders_share_over_the_cost_of_a_channel() -> None:
    model = CapacityModel(decoders=2, finals_share=0.5, voiced_share=0.5)
    assert model.channels is None
    model.calibrate(audio_s=5.0, wall_s=0.25)  # 0.05 s a second of audio
    assert model.channels == 40  # 2 x 0.5 / (0.05 x 0.5)


def test_decodes_move_the_cost_and_a_busier_machine_lowers_the_figure() -> None:
    model = CapacityModel(decoders=2, finals_share=0.5, voiced_share=0.5)
    model.calibrate(5.0, 0.25)
    for _ in range(300):
        model.observe(audio_s=4.0, wall_s=0.4)  # 0.1 s a second: the machine got busy
    assert model.cost_s == pytest.approx(0.1, rel=0.01) and model.channels == 20
    model.observe(audio_s=0.2, wall_s=1.0)  # too short to say anything of the cost per second
    assert model.cost_s == pytest.approx(0.1, rel=0.01)


def test_a_configured_capacity_is_taken_as_it_is() -> None:
    model = CapacityModel(decoders=2, fixed=7)
    assert model.channels == 7
    model.calibrate(1.0, 100.0)
    assert model.channels == 7


def test_calls_that_talk_more_than_a_conversations_leg_lower_the_figure() -> None:
    """The voiced share starts at a conversation's 0.6 and follows what the calls say: ten
    channels whose finals carry 0.9 s of audio each second move it towards 0.9."""
    model = CapacityModel(decoders=2, finals_share=0.5, voiced_share=0.6)
    model.calibrate(5.0, 0.25)
    before = model.channels
    model.opened(10, now=0.0)
    for second in range(1, 121):
        model.observe(audio_s=9.0, wall_s=0.45, now=float(second))  # 0.9 s per channel-second
    assert 0.85 < model.voiced_share <= 0.9
    assert model.channels is not None and before is not None and model.channels < 0.7 * before
    model.closed(10, now=121.0)
    for second in range(122, 200):  # nobody talking, nothing open: nothing to learn from
        model.observe(audio_s=0.0, wall_s=0.0, now=float(second))
    assert 0.85 < model.voiced_share <= 0.9


def test_measurements_while_idle_follow_the_machine() -> None:
    model = CapacityModel(decoders=2, finals_share=0.5, voiced_share=0.5)
    model.calibrate(5.0, 0.1)  # 0.02 s a second: the machine was quiet at start
    assert model.idle_since(100.0) == 0.0  # counted from the first look
    model.observe(audio_s=2.0, wall_s=0.04, now=110.0)
    assert model.idle_since(130.0) == 20.0
    for _ in range(8):
        model.remeasure(5.0, 0.5)  # 0.1 s a second: other work took the cores meanwhile
    assert model.cost_s == pytest.approx(0.1, rel=0.1) and model.channels == 20
