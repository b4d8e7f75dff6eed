"""Reading audio files for the command-line tools: WAV (PCM16, mu-law, A-law) and raw audio;
`decode_audio` adds every container and codec FFmpeg knows (flac, mp3, ogg...) through PyAV.

WAV is parsed by hand (RIFF chunks) because the standard `wave` module reads only PCM,
and telephone recordings are often G.711 WAV files.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from ..core.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioFormat, Encoding
from ..core.codecs import encode_g711, to_linear16

_WAV_TAGS = {1: Encoding.LINEAR16, 6: Encoding.ALAW, 7: Encoding.MULAW}
_EXTENSIBLE = 0xFFFE


class AudioFileError(ValueError):
    """A file the tools cannot read; the message names the file and the problem."""


class WavEncodingNotTaken(AudioFileError):
    """A well-formed WAV file in an encoding the worker does not take as it is (32-bit float,
    24-bit PCM...): FFmpeg can convert it for a file tool, but a live call sends what it says."""


@dataclass(frozen=True)
class AudioFile:
    path: Path
    fmt: AudioFormat
    data: bytes

    @property
    def duration_s(self) -> float:
        return self.fmt.seconds(len(self.data))


def read_audio(path: str | Path, raw_format: AudioFormat | None = None) -> AudioFile:
    """A WAV file, or with `raw_format` a headerless file in that format."""
    p = Path(path)
    try:
        blob = p.read_bytes()
    except OSError as exc:
        raise AudioFileError(f"{p}: {exc.strerror or exc}") from None
    if raw_format is not None:
        usable = len(blob) - len(blob) % raw_format.frame_bytes
        return AudioFile(p, raw_format, blob[:usable])
    if blob[:4] == b"RIFF" and blob[8:12] == b"WAVE":
        return _read_wav(p, blob)
    raise AudioFileError(f"{p}: not a WAV file; for raw audio give --encoding, --sample-rate and --channels")


def _read_wav(path: Path, blob: bytes) -> AudioFile:
    pos = 12
    fmt: AudioFormat | None = None
    while pos + 8 <= len(blob):
        chunk_id = blob[pos : pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body = blob[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = _wav_format(path, body)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioFileError(f"{path}: WAV data chunk before its fmt chunk")
            usable = len(body) - len(body) % fmt.frame_bytes
            return AudioFile(path, fmt, body[:usable])
        pos += 8 + size + (size & 1)
    raise AudioFileError(f"{path}: WAV file without a data chunk")


def _wav_format(path: Path, body: bytes) -> AudioFormat:
    if len(body) < 16:
        raise AudioFileError(f"{path}: WAV fmt chunk too short")
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE and len(body) >= 26:
        (tag,) = struct.unpack_from("<H", body, 24)
    encoding = _WAV_TAGS.get(tag)
    if encoding is None:
        raise WavEncodingNotTaken(f"{path}: WAV format tag {tag} is not PCM, mu-law or A-law")
    expected_bits = 16 if encoding is Encoding.LINEAR16 else 8
    if bits != expected_bits:
        raise WavEncodingNotTaken(f"{path}: {bits}-bit {encoding} WAV; the worker takes {expected_bits}-bit")
    try:
        return AudioFormat.parse(encoding, rate, channels)
    except ValueError as exc:
        raise AudioFileError(f"{path}: {exc}") from None


def write_wav(path: str | Path, data: bytes, fmt: AudioFormat) -> None:
    """Write audio as a WAV file (tests and tools make fixtures with it)."""
    tag = {v: k for k, v in _WAV_TAGS.items()}[fmt.encoding]
    bits = fmt.bytes_per_sample * 8
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        tag,
        fmt.channels,
        fmt.sample_rate,
        fmt.bytes_per_second,
        fmt.frame_bytes,
        bits,
        b"data",
        len(data),
    )
    Path(path).write_bytes(header + data)


def decode_audio(path: str | Path, raw_format: AudioFormat | None = None) -> AudioFile:
    """A WAV file as `read_audio` reads it (byte for byte) when the worker takes its encoding;
    else, with `raw_format`, raw audio; else (float or 24-bit WAV, flac, mp3, ...) whatever PyAV
    (FFmpeg, which faster-whisper brings) decodes, as 16-bit PCM at its own rate (16 kHz when
    that is outside 8-48 kHz), mono or stereo (more channels mixed to mono)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(12)
    except OSError as exc:
        raise AudioFileError(f"{p}: {exc.strerror or exc}") from None
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        try:
            return read_audio(p)
        except WavEncodingNotTaken:
            return _decode_with_av(p)
    if raw_format is not None:
        return read_audio(p, raw_format)
    return _decode_with_av(p)


def _decode_with_av(path: Path) -> AudioFile:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioFileError(f"{path}: no audio stream in it")
            stream = container.streams.audio[0]
            rate = stream.rate or 16000
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
                rate = 16000
            channels = 2 if stream.channels == 2 else 1
            resampler = av.AudioResampler(
                format="s16", layout="stereo" if channels == 2 else "mono", rate=rate
            )
            chunks: list[bytes] = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(bytes(out.planes[0])[: out.samples * 2 * channels])
            for out in resampler.resample(None):
                chunks.append(bytes(out.planes[0])[: out.samples * 2 * channels])
    except AudioFileError:
        raise
    except av.error.FFmpegError as exc:  # its str() carries an errno and the path again
        reason = exc.strerror or "FFmpeg cannot read it"
        raise AudioFileError(f"{path}: not an audio file this tool can decode ({reason})") from None
    except ValueError as exc:
        raise AudioFileError(f"{path}: not an audio file this tool can decode ({exc})") from None
    return AudioFile(path, AudioFormat(Encoding.LINEAR16, rate, channels), b"".join(chunks))


def convert(audio: AudioFile, fmt: AudioFormat) -> AudioFile:
    """The file's audio as `fmt` carries it: decoded, its two channels mixed when `fmt` has one,
    resampled whole (libsoxr, band-limited: a telephone route hears the file as a phone line
    would), encoded. The same file when it already is `fmt`. A mono file cannot become two
    channels: a route that carries two takes a mono file as it is."""
    if audio.fmt == fmt:
        return audio
    if fmt.channels > audio.fmt.channels:
        raise ValueError(f"{audio.path.name} has {audio.fmt.channels} channel(s), not {fmt.channels}")
    samples = to_linear16(audio.data, audio.fmt).astype(np.float32) / 32768.0
    frames = samples.reshape(-1, audio.fmt.channels)
    if fmt.channels == 1 and audio.fmt.channels == 2:
        frames = frames.mean(axis=1, keepdims=True)
    if fmt.sample_rate != audio.fmt.sample_rate:
        frames = np.asarray(soxr.resample(frames, audio.fmt.sample_rate, fmt.sample_rate, "HQ"))
        frames = frames.reshape(-1, fmt.channels)
    pcm = np.clip(np.rint(frames.reshape(-1) * 32768.0), -32768, 32767).astype(np.int16)
    if fmt.encoding is Encoding.LINEAR16:
        data = pcm.astype("<i2").tobytes()
    else:
        data = encode_g711(pcm, fmt.encoding)
    return AudioFile(audio.path, fmt, data)
