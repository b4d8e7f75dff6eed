from __future__ import annotations

import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.errors import AudioFormatError


@pytest.mark.parametrize(
    ("encoding", "rate", "channels", "expected"),
    [
        ("linear16", "8000", "1", AudioFormat(Encoding.LINEAR16, 8000, 1)),
        ("pcm16", 16000, 2, AudioFormat(Encoding.LINEAR16, 16000, 2)),
        ("MULAW", "8000", "1", AudioFormat(Encoding.MULAW, 8000, 1)),
        ("alaw", "48000", "2", AudioFormat(Encoding.ALAW, 48000, 2)),
    ],
)
def test_parse_accepts_the_documented_formats(
    encoding: str, rate: object, channels: object, expected: AudioFormat
) -> None:
    assert AudioFormat.parse(encoding, rate, channels) == expected


@pytest.mark.parametrize(
    ("encoding", "rate", "channels", "message"),
    [
        ("opus", "8000", "1", "unknown encoding 'opus'"),
        ("linear16", "7999", "1", "outside 8000-48000"),
        ("linear16", "96000", "1", "outside 8000-48000"),
        ("linear16", "8k", "1", "whole number"),
        ("linear16", "8000", "3", "channels must be 1 or 2"),
        ("linear16", "8000", "-1", "whole number"),
        ("linear16", True, "1", "whole number"),
    ],
)
def test_parse_refuses_with_a_reason(encoding: str, rate: object, channels: object, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message):
        AudioFormat.parse(encoding, rate, channels)


def test_byte_arithmetic() -> None:
    stereo_pcm = AudioFormat(Encoding.LINEAR16, 8000, 2)
    assert stereo_pcm.frame_bytes == 4
    assert stereo_pcm.bytes_per_second == 32000
    assert stereo_pcm.seconds(32000) == 1.0
    assert stereo_pcm.bytes_for(0.02) == 640
    mulaw = AudioFormat(Encoding.MULAW, 8000, 1)
    assert mulaw.bytes_for(0.6) == 4800  # no float shortfall on round values
    assert mulaw.bytes_for(1234.567) == 9876536
