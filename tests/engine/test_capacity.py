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
