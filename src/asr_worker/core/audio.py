"""Audio formats as the ingest socket and the bus name them, and the arithmetic that turns bytes into seconds.

Everything that needs to know how long a piece of audio is, or whether a message holds whole
samples, asks an `AudioFormat`; nothing else in the worker does byte arithmetic on audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..errors import AudioFormatError


class Encoding(StrEnum):
    LINEAR16 = "linear16"
    MULAW = "mulaw"
    ALAW = "alaw"


# Names other systems use for the same encodings: the seed system's bus says "pcm16",
# telephony people say "ulaw"/"pcmu"/"pcma".
_ENCODING_ALIASES: dict[str, Encoding] = {
    "linear16": Encoding.LINEAR16,
    "pcm16": Encoding.LINEAR16,
    "pcm_s16le": Encoding.LINEAR16,
    "s16le": Encoding.LINEAR16,
    "mulaw": Encoding.MULAW,
    "ulaw": Encoding.MULAW,
    "pcmu": Encoding.MULAW,
    "alaw": Encoding.ALAW,
    "pcma": Encoding.ALAW,
}

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000


@dataclass(frozen=True, slots=True)
class AudioFormat:
    encoding: Encoding
    sample_rate: int
    channels: int

    @classmethod
    def parse(cls, encoding: object, sample_rate: object, channels: object = 1) -> AudioFormat:
        """Validate client-supplied values (strings from a query or JSON) into a format."""
        enc = _ENCODING_ALIASES.get(str(encoding).strip().lower())
        if enc is None:
            raise AudioFormatError(f"unknown encoding {str(encoding)[:40]!r}: use linear16, mulaw or alaw")
        rate = _parse_int(sample_rate, "sample_rate")
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise AudioFormatError(f"sample_rate {rate} is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}")
        chans = _parse_int(channels, "channels")
        if chans not in (1, 2):
            raise AudioFormatError(f"channels must be 1 or 2, not {chans}")
        return cls(enc, rate, chans)

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding is Encoding.LINEAR16 else 1

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample on every channel: the unit a message must be a multiple of."""
        return self.bytes_per_sample * self.channels

    @property
    def bytes_per_second(self) -> int:
        return self.frame_bytes * self.sample_rate

    def seconds(self, n_bytes: int) -> float:
        return n_bytes / self.bytes_per_second

    def bytes_for(self, seconds: float) -> int:
        """The whole-frame byte count closest below `seconds` of audio."""
        frames = int(seconds * self.sample_rate + 1e-6)
        return max(0, frames) * self.frame_bytes

    def describe(self) -> dict[str, object]:
        return {"encoding": str(self.encoding), "sample_rate": self.sample_rate, "channels": self.channels}


_MAX_DIGITS = 6


def _parse_int(value: object, name: str) -> int:
    """At most six ASCII digits, or such an int: str.isdigit() also says yes to "²", which
    int() refuses, and a message must not quote a number thousands of digits long."""
    if isinstance(value, bool):
        raise AudioFormatError(f"{name} must be a whole number")
    if isinstance(value, int):
        if abs(value) >= 10**_MAX_DIGITS:
            raise AudioFormatError(f"{name} must be a whole number of at most {_MAX_DIGITS} digits")
        return value
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
        raise AudioFormatError(f"{name} must be a whole number, not {text[:20]!r}")
    return int(text)
