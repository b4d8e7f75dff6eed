"""`asr-worker transcribe`: files through the session pipeline, as a user runs it (a real
process). The mock provider checks the plumbing fast; one run uses the real engine."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.events import CallError, ProviderChanged, SessionEnded, SessionStarted, Transcript
from asr_worker.providers.mock import expected_words
from asr_worker.tools.audio_files import decode_audio, write_wav
from asr_worker.tools.transcribe import Display, FileResult
from tests.support.audio import PCM8K, silence, speechlike
from tests.support.cli import assert_clean_stderr
from tests.support.speech import SENTENCES, Speech, word_error_rate

CLI = [sys.executable, "-m", "asr_worker", "transcribe"]


def transcribe(*args: str, provider: str = "mock", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*CLI, *args],
        env={**os.environ, "ASR_PROVIDER": provider},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert_clean_stderr(result.stderr)
    return result


def encode(path: Path, pcm: np.ndarray, rate: int, codec: str) -> None:
    """Write int16 mono audio with FFmpeg's encoders (flac, mp3), as a user's file would be."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.audio.stream.AudioStream)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def words_of(lines: list[str]) -> str:
    """The text of `final   ch0    0.00-1.00    text` lines (the printer's, as `stream`'s)."""
    return " ".join(line.split(maxsplit=3)[3] for line in lines)


def call_audio() -> bytes:
    return speechlike(0.8) + silence(0.6) + speechlike(1.0, seed=3) + silence(0.4)


def test_a_wav_file_prints_its_finals(tmp_path: Path) -> None:
    wav = tmp_path / "call.wav"
    audio = call_audio()
    write_wav(wav, audio, PCM8K)
    result = transcribe(str(wav))
    assert result.returncode == 0, result.stderr
    printed = words_of(result.stdout.splitlines())
    assert printed.split() == expected_words(audio, PCM8K)
    assert result.stderr == "", "off a terminal: no progress bar, no interims on stderr"


def test_json_prints_every_event_of_every_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a.wav", tmp_path / "b.raw"
    write_wav(first, call_audio(), PCM8K)
    second.write_bytes(call_audio())
    result = transcribe("--json", "--encoding", "linear16", "--sample-rate", "8000", str(first), str(second))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    by_call: dict[str, list[str]] = {}
    for event in events:
        by_call.setdefault(event["interaction_id"], []).append(event["type"])
    assert list(by_call) == ["a.1", "b.2"]
    for kinds in by_call.values():
        assert kinds[0] == "session_started" and kinds[-1] == "session_ended" and "transcript" in kinds


def test_compressed_files_are_decoded(tmp_path: Path) -> None:
    flac = tmp_path / "call.flac"
    pcm = np.frombuffer(call_audio(), dtype="<i2")
    encode(flac, pcm, 8000, "flac")
    decoded = decode_audio(flac)
    assert decoded.fmt == PCM8K and decoded.data == pcm.tobytes(), "flac is lossless"
    result = transcribe(str(flac))
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


def wav_of(path: Path, samples: bytes, *, tag: int, bits: int, rate: int = 8000) -> None:
    """A mono WAV in an encoding the worker does not take live (float, 24-bit), as editors write."""
    frame_bytes = bits // 8
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", 36 + len(samples), b"WAVE", b"fmt ", 16, tag, 1, rate),
        *(rate * frame_bytes, frame_bytes, bits, b"data", len(samples)),
    )
    path.write_bytes(header + samples)


@pytest.mark.parametrize("kind", ["float32", "pcm24"])
def test_wavs_in_any_encoding_ffmpeg_reads_are_converted(tmp_path: Path, kind: str) -> None:
    audio = call_audio()
    pcm = np.frombuffer(audio, dtype="<i2")
    wav = tmp_path / f"{kind}.wav"
    if kind == "float32":
        wav_of(wav, (pcm / 32768.0).astype("<f4").tobytes(), tag=3, bits=32)
    else:
        wide = pcm.astype("<i4") << 8
        wav_of(wav, b"".join(int(v).to_bytes(3, "little", signed=True) for v in wide), tag=1, bits=24)
    decoded = decode_audio(wav)
    assert decoded.fmt == PCM8K and decoded.data == audio, "both convert to the same 16-bit samples"
    result = transcribe(str(wav))
    assert result.returncode == 0, result.stderr
    printed = words_of(result.stdout.splitlines())
    assert printed.split() == expected_words(audio, PCM8K)


def test_a_file_it_cannot_read_is_one_clear_line(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not audio")
    result = transcribe(str(bogus))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"asr-worker transcribe: {bogus}: not an audio file this tool can decode"
        + result.stderr.split("decode", 1)[1].strip("\n")
    ]
    assert "Errno" not in result.stderr and result.stderr.count(str(bogus)) == 1, "said once, plainly"
    assert transcribe(str(tmp_path / "missing.wav")).returncode == 2


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_interim_and_progress_overwrite_one_status_line() -> None:
    out, err = io.StringIO(), Terminal()
    display = Display(out, err, as_json=False)
    result = FileResult("call.wav", duration_s=10.0)

    def transcript(seq: int, is_final: bool, text: str, end: float) -> Transcript:
        return Transcript(
            "c", None, seq, 0, is_final, is_final, False, text, 0.9, 0.0, end, (), "local", 0, 0
        )

    display.event(result, transcript(2, False, "how can", 1.0), many=False)
    display.progress(result)
    display.event(result, transcript(3, False, "how can I help", 2.0), many=False)
    result.fed_s = 2.5  # played a quarter, no final yet: the bar moves with the playing
    display.progress(result)
    result.covered_s = 5.0
    display.progress(result)
    display.event(result, transcript(4, True, "How can I help?", 2.5), many=False)
    display.done()
    assert out.getvalue() == "final   ch0    0.00-2.50    How can I help?\n"
    assert err.getvalue() == (
        "\r\x1b[Kcall.wav [....................]   0% how can"
        "\r\x1b[Kcall.wav [#####...............]  25% how can I help"
        "\r\x1b[Kcall.wav [##########..........]  50% how can I help"
        "\r\x1b[K"  # cleared for the final's line, which goes to stdout
    )


@pytest.mark.timeout(180)
def test_the_real_engine_transcribes_flac_and_mp3(tmp_path: Path, speech: Speech) -> None:
    files = []
    for name, codec, texts in (("first.flac", "flac", SENTENCES[:2]), ("second.mp3", "mp3", SENTENCES[6:8])):
        call = speech.call(texts, 16000)
        path = tmp_path / name
        encode(path, np.frombuffer(call.data, dtype="<i2"), 16000, codec)
        files.append((path, call.text))
    result = transcribe(*(str(p) for p, _ in files), provider="local")
    assert result.returncode == 0, result.stderr
    for (path, reference), prefix in zip(files, ("[first.flac] ", "[second.mp3] "), strict=True):
        lines = [line.removeprefix(prefix) for line in result.stdout.splitlines() if line.startswith(prefix)]
        hypothesis = words_of(lines)
        assert word_error_rate(reference, hypothesis) <= 0.10, (path.name, hypothesis)


def test_help_shows_the_engine_options_not_the_servers() -> None:
    result = transcribe("--help")
    assert result.returncode == 0
    for engine_flag in ("--provider", "--local-model", "--deepgram-api-key", "--finalize-timeout-s"):
        assert engine_flag in result.stdout
    for server_flag in (
        "--host",
        "--port",
        "--worker-token",
        "--pubsub-adapter",
        "--redis-url",
        "--claim-idle-s",
    ):
        assert server_flag not in result.stdout, (
            f"transcribe runs no server, yet its help shows {server_flag}"
        )


def test_raw_audio_needs_its_format(tmp_path: Path) -> None:
    raw = tmp_path / "call.ulaw"
    raw.write_bytes(b"\xff" * 800)
    result = transcribe(str(raw))
    assert result.returncode == 2 and "not an audio file" in result.stderr
    mulaw = AudioFormat(Encoding.MULAW, 8000, 1)
    assert decode_audio(raw, mulaw).fmt == mulaw
    result = transcribe("--encoding", "mulaw", "--sample-rate", "8000", str(raw))  # mu-law silence
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr.strip() == (
        "asr-worker transcribe: call.ulaw: no speech heard in 0.1 s; "
        "is its --encoding and --sample-rate right?"
    )
    result = transcribe("--encoding", "mulaw", str(raw))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "asr-worker transcribe: raw audio needs --sample-rate (and --channels if not 1) with --encoding"
    )
    result = transcribe("--sample-rate", "8000", str(raw))
    assert result.returncode == 2 and "--sample-rate is for raw audio: give --encoding too" in result.stderr


def test_a_provider_that_holds_a_long_utterance_does_not_stall_the_feeding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Feeding waits for finals once it is `LOOKAHEAD_S` ahead of them; a provider that gives
    its first final only after 20 s of unbroken sound (the mock, a final every 100 words of
    200 ms) must still get the audio it needs for it. With the bound at 15 s, feeding and
    finals waited on each other for ever."""
    wav = tmp_path / "unbroken.wav"
    noise = np.random.default_rng(7).integers(-8000, 8000, 8000 * 45).astype("<i2")
    write_wav(wav, noise.tobytes(), PCM8K)
    monkeypatch.setenv("ASR_MOCK", "words_per_final=100")
    result = transcribe(str(wav), timeout=60)
    assert result.returncode == 0, result.stderr
    printed = words_of(result.stdout.splitlines())
    assert printed.split() == expected_words(noise.tobytes(), PCM8K)
    assert [line.split()[2] for line in result.stdout.splitlines()][:2] == ["0.00-20.00", "20.00-40.00"]


def test_the_feeding_bound_is_wider_than_the_most_the_local_engine_holds() -> None:
    from asr_worker.engine.channel import ChannelOptions
    from asr_worker.tools.transcribe import LOOKAHEAD_S

    options = ChannelOptions()
    vad = options.vad
    held_s = vad.max_utterance_s + (vad.lead_in_ms + vad.blip_hold_ms + vad.pad_ms) / 1000
    assert held_s + options.silence_final_s + 5 < LOOKAHEAD_S


def test_off_a_terminal_what_else_happens_to_a_call_is_one_line_on_stderr() -> None:
    """The transcript stays clean on stdout; a move to the fallback provider or an error is
    said on stderr, in `stream`'s lines, with the file's name when there are several."""
    out, err = io.StringIO(), io.StringIO()
    display = Display(out, err, as_json=False)
    result = FileResult("call.wav", duration_s=10.0)
    display.event(result, SessionStarted("c", None, 1, "deepgram", "mulaw", 8000, 1, 0), many=True)
    display.event(
        result, ProviderChanged("c", None, 2, "deepgram", "local", "circuit_open", 3.2, 0), many=True
    )
    display.event(result, CallError("c", None, 3, "audio_dropped", "1.0 s of audio dropped", 0), many=True)
    display.event(result, SessionEnded("c", None, 4, "end", 9.0, 0, 2, "local", 0), many=True)
    assert out.getvalue() == ""
    assert err.getvalue().splitlines() == [
        "[call.wav] provider_changed deepgram -> local (circuit_open), transcribing from 3.20 s",
        "[call.wav] error   audio_dropped: 1.0 s of audio dropped",
    ]
