"""A two-leg call as a contact centre has them, through the default engine: an agent and a
caller (Piper's natural voice, from the test install's wheels) taking turns on two channels
of 8 kHz mu-law. Each leg's finals say its own words, and each word is timed inside the voice
it came from (Moonshine gives no times: they are laid along the VAD's voiced spans)."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soxr

from asr_worker.config import Settings
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.codecs import encode_g711
from asr_worker.tools.audio_files import AudioFile
from asr_worker.tools.transcribe import transcribe_files
from tests.support.human_speech import word_errors
from tests.support.piper_speech import AGENT, CALLER, sentence

pytestmark = pytest.mark.timeout(300)
RATE = 8000
TURNS = ((0, AGENT[0]), (1, CALLER[0]), (0, AGENT[1]), (1, CALLER[1]), (0, AGENT[4]), (1, CALLER[6]))


def _conversation() -> tuple[bytes, list[tuple[int, str, float, float]]]:
    legs: list[list[np.ndarray]] = [[np.zeros(RATE // 2, dtype=np.float32)] for _ in range(2)]
    said, t = [], 0.5
    for channel, text in TURNS:
        rate, audio = sentence(text)
        audio = soxr.resample(audio, rate, RATE).astype(np.float32) * 0.7
        loud = np.flatnonzero(np.abs(audio) > 0.1 * np.abs(audio).max())
        said.append((channel, text, t + loud[0] / RATE, t + (loud[-1] + 1) / RATE))
        pause = np.zeros(int(0.6 * RATE), dtype=np.float32)
        for leg in (0, 1):
            legs[leg] += [audio if leg == channel else np.zeros_like(audio), pause]
        t += (audio.size + pause.size) / RATE
    both = np.stack([np.concatenate([*leg, np.zeros(RATE, dtype=np.float32)]) for leg in legs], axis=1)
    pcm = np.clip(both * 32767, -32768, 32767).astype(np.int16).reshape(-1)
    return encode_g711(pcm, Encoding.MULAW), said


def test_each_leg_of_a_conversation_gets_its_own_words_timed_within_its_voice() -> None:
    data, said = _conversation()
    out = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp:
        audio = AudioFile(Path(tmp) / "call.ulaw", AudioFormat(Encoding.MULAW, RATE, 2), data)
        (result,) = asyncio.run(
            transcribe_files([audio], Settings(), as_json=True, out=out, err=io.StringIO())
        )
    assert result.ok, result.errors
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    finals = [e for e in events if e["type"] == "transcript" and e["is_final"]]
    for channel in (0, 1):
        mine = [(text, start, end) for c, text, start, end in said if c == channel]
        words = [w for e in finals if e["channel"] == channel for w in e["words"]]
        errors, total = word_errors(" ".join(t for t, _s, _e in mine), " ".join(w["word"] for w in words))
        assert errors <= 0.1 * total, f"channel {channel}: {errors} of {total} words wrong"
        for word in words:  # each word inside (or within 0.3 s of) the voice of an utterance of its leg
            assert any(s - 0.3 <= word["start"] < word["end"] <= e + 0.3 for _t, s, e in mine), word
        assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(words)), "words in order, apart"
