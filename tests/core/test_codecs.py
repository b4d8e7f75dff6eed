from __future__ import annotations

import numpy as np
import pytest

from asr_worker.core.audio import Encoding
from asr_worker.core.codecs import decode_g711, encode_g711


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (0xFF, 0),
        (0x7F, 0),
        (0x00, -32124),
        (0x80, 32124),
        (0xF0, 120),
        (0x70, -120),
        (0xE0, 372),
        (0x8F, 16764),
    ],
)
def test_mulaw_decodes_to_the_g711_reference_values(code: int, value: int) -> None:
    assert decode_g711(bytes([code]), Encoding.MULAW).tolist() == [value]


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24), (0xC5, 264), (0x80, 5504)],
)
def test_alaw_decodes_to_the_g711_reference_values(code: int, value: int) -> None:
    assert decode_g711(bytes([code]), Encoding.ALAW).tolist() == [value]


@pytest.mark.parametrize("encoding", [Encoding.MULAW, Encoding.ALAW])
def test_every_code_round_trips(encoding: Encoding) -> None:
    codes = bytes(range(256))
    decoded = decode_g711(codes, encoding)
    again = encode_g711(decoded, encoding)
    # mu-law has two zeros (0x7F and 0xFF): both decode to 0, which encodes as 0xFF
    mismatches = [c for c, a in zip(codes, again, strict=True) if c != a]
    assert mismatches in ([], [0x7F])


@pytest.mark.parametrize("encoding", [Encoding.MULAW, Encoding.ALAW])
def test_encode_decode_error_is_within_g711_quantization(encoding: Encoding) -> None:
    samples = np.linspace(-32768, 32767, 5001).astype(np.int16)
    restored = decode_g711(encode_g711(samples, encoding), encoding).astype(np.int32)
    error = np.abs(restored - samples.astype(np.int32))
    # the largest step is 1024 (A-law) / 1024 (mu-law) at the loud end; half a step of error
    assert int(error.max()) <= 1024
    quiet = np.abs(samples.astype(np.int32)) < 256
    assert int(error[quiet].max()) <= 16


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("encoding", [Encoding.MULAW, Encoding.ALAW])
def test_every_code_decodes_as_audioop_did_where_it_still_exists(encoding: Encoding) -> None:
    """Python 3.11 and 3.12 still ship audioop (gone in 3.13): the tables match it for all 256 codes."""
    audioop = pytest.importorskip("audioop")
    codes = bytes(range(256))
    reference = audioop.ulaw2lin(codes, 2) if encoding is Encoding.MULAW else audioop.alaw2lin(codes, 2)
    assert decode_g711(codes, encoding).tolist() == np.frombuffer(reference, dtype="<i2").tolist()
