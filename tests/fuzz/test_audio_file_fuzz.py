"""Fuzzing the WAV reader of the command-line tools (RIFF chunks parsed by hand): a damaged
file is an AudioFile or an AudioFileError with a short message, never another exception."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.tools.audio_files import AudioFile, AudioFileError, _read_wav, write_wav
from tests.support.fuzz import bounded, examples


def _valid_wav(tmp: Path) -> bytes:
    path = tmp / "valid.wav"
    write_wav(path, b"\x01\x00" * 400, AudioFormat(Encoding.LINEAR16, 8000, 1))
    return path.read_bytes()


VALID = bytes(
    b"RIFF"
    + struct.pack("<I", 36 + 800)
    + b"WAVEfmt "
    + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    + b"data"
    + struct.pack("<I", 800)
    + b"\x01\x00" * 400
)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    blob = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, 44))  # the header, where every field lives
        kind = draw(st.sampled_from(["byte", "u16", "u32", "cut"]))
        if kind == "cut":
            return bytes(blob[: draw(st.integers(0, len(blob)))])
        value = draw(st.integers(0, 2**32 - 1))
        width = {"byte": 1, "u16": 2, "u32": 4}[kind]
        blob[at : at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    return bytes(blob)


@examples(300)
@given(damaged() | st.binary(max_size=64).map(lambda tail: b"RIFF\x00\x00\x00\x00WAVE" + tail))
@example(VALID.replace(struct.pack("<I", 8000), struct.pack("<I", 10**9 // 1000 * 4)))
def test_a_damaged_wav_is_audio_or_a_short_error(blob: bytes) -> None:
    try:
        audio = _read_wav(Path("call.wav"), blob)
    except AudioFileError as exc:
        bounded(str(exc))
        return
    assert isinstance(audio, AudioFile)
    assert len(audio.data) % audio.fmt.frame_bytes == 0


def test_the_valid_file_reads(tmp_path: Path) -> None:
    assert _valid_wav(tmp_path) == VALID
    audio = _read_wav(Path("call.wav"), VALID)
    assert audio.fmt == AudioFormat(Encoding.LINEAR16, 8000, 1) and len(audio.data) == 800
