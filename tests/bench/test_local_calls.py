"""The local benchmark's real-time clients (`bench/local_calls.py`), over the mock engine: each
path's client gets every final of its calls, and the latencies are measured from them."""

from __future__ import annotations

import pytest
from bench.local_calls import PATHS, call_latencies, parse_paths, paths_at_once

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.providers.mock import expected_words
from tests.support.audio import silence, speechlike
from tests.support.speech import CallAudio, Spoken

MULAW8K = AudioFormat(Encoding.MULAW, 8000, 1)


def call(seed: int) -> CallAudio:
    data = (
        speechlike(0.6, MULAW8K, seed)
        + silence(0.6, MULAW8K)
        + speechlike(0.4, MULAW8K, seed + 1)
        + silence(0.6, MULAW8K)
    )
    return CallAudio(MULAW8K, data, (Spoken("a", 0.0, 0.6), Spoken("b", 1.2, 1.6)))


# deepgram-sdk 7.x uses websockets' legacy client, which warns that it is deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_every_path_delivers_each_calls_finals_and_their_latency() -> None:
    calls = [call(1), call(5)]
    runs = await paths_at_once([(f"c{i}", c) for i, c in enumerate(calls)], list(PATHS), provider="mock")
    assert list(runs) == list(PATHS)
    for path, path_run in runs.items():
        path_runs = path_run.runs
        for c, run in zip(calls, path_runs, strict=True):
            assert run.ended and not run.errors, path
            assert run.text == " ".join(expected_words(c.data, MULAW8K)), path
            assert run.interims > 0, path
        latencies, missing = call_latencies(calls, path_runs)
        assert missing == 0, path
        assert all(0.0 < s < 5.0 for s in latencies), (path, latencies)


def test_paths_are_checked_by_name() -> None:
    assert parse_paths("dg, ingest") == ["dg", "ingest"]
    with pytest.raises(ValueError, match="unknown path"):
        parse_paths("ingest,sip")
