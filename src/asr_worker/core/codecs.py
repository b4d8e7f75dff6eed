"""G.711 mu-law and A-law without `audioop` (removed in Python 3.13): 256-entry decode tables
and 65,536-entry encode tables, applied with numpy indexing.

The tables are computed from the ITU-T G.711 reference algorithm (as in Sun's g711.c), once,
on first use; decoding a 20 ms telephone frame is one numpy take.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

from .audio import AudioFormat, Encoding

Int16Array = npt.NDArray[np.int16]

_MULAW_BIAS = 0x84
_MULAW_CLIP = 32635
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _mulaw_to_linear(code: int) -> int:
    u = ~code & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return -magnitude if sign else magnitude


def _alaw_to_linear(code: int) -> int:
    a = code ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if sign else -magnitude


def _linear_to_mulaw(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sample < 0 else sample, _MULAW_CLIP) + _MULAW_BIAS
    exponent = max(0, magnitude.bit_length() - 8)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _linear_to_alaw(sample: int) -> int:
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = next((i for i, end in enumerate(_ALAW_SEG_END) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (value >> 1) & 0x0F if segment < 2 else (value >> segment) & 0x0F
    return code ^ mask


@cache
def _decode_table(encoding: Encoding) -> Int16Array:
    fn = _mulaw_to_linear if encoding is Encoding.MULAW else _alaw_to_linear
    return np.array([fn(code) for code in range(256)], dtype=np.int16)


@cache
def _encode_table(encoding: Encoding) -> npt.NDArray[np.uint8]:
    fn = _linear_to_mulaw if encoding is Encoding.MULAW else _linear_to_alaw
    # Indexed by the int16 sample reinterpreted as uint16.
    samples = np.arange(65536, dtype=np.uint16).view(np.int16)
    return np.array([fn(int(s)) for s in samples], dtype=np.uint8)


def decode_g711(data: bytes, encoding: Encoding) -> Int16Array:
    """8-bit G.711 codes to 16-bit linear samples."""
    if encoding not in (Encoding.MULAW, Encoding.ALAW):
        raise ValueError(f"{encoding} is not G.711")
    return _decode_table(encoding)[np.frombuffer(data, dtype=np.uint8)]


def encode_g711(samples: Int16Array, encoding: Encoding) -> bytes:
    """16-bit linear samples to 8-bit G.711 codes (for tools and tests that make telephone audio)."""
    if encoding not in (Encoding.MULAW, Encoding.ALAW):
        raise ValueError(f"{encoding} is not G.711")
    return _encode_table(encoding)[samples.astype(np.int16).view(np.uint16)].tobytes()


def to_linear16(data: bytes, fmt: AudioFormat) -> Int16Array:
    """Any ingest encoding to interleaved int16 samples (for engines that need PCM)."""
    if fmt.encoding is Encoding.LINEAR16:
        return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
    return decode_g711(data, fmt.encoding)
