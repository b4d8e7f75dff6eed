"""`asr-worker stream`: what it prints for each event the worker sends."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.tools.audio_files import AudioFile
from asr_worker.tools.stream import CallResult, _show, call_urls, summary


def test_json_prints_each_event_as_the_worker_sent_it_and_still_counts_it() -> None:
    out, result = io.StringIO(), CallResult("c-1")
    text = '{"type":"transcript","interaction_id":"c-1","seq":2,"is_final":true,"text":"hi","latency_ms":5}'
    _show(json.loads(text), result, out, text)
    assert out.getvalue() == text + "\n"  # byte for byte, not re-serialized
    assert result.finals == ["hi"] and result.latencies_ms == [5]


def test_without_json_an_event_is_one_readable_line() -> None:
    out, result = io.StringIO(), CallResult("c-1")
    event: dict[str, object] = {"type": "session_ended", "interaction_id": "c-1", "reason": "end", "seq": 9}
    _show(event, result, out, None)
    assert out.getvalue() == '[c-1] session_ended {"reason": "end", "seq": 9}\n'
    assert result.ended == event


def final(text: str, latency_ms: int) -> dict[str, object]:
    event: dict[str, object] = {"type": "transcript", "channel": 0, "start": 0.0, "end": 1.0}
    return event | {"is_final": True, "text": text, "latency_ms": latency_ms}


def test_the_summary_counts_finals_with_text_and_says_when_there_is_no_latency() -> None:
    quiet = CallResult("c-1")
    _show(final("", 0), quiet, io.StringIO(), None)
    quiet.latencies_ms.clear()  # a call that got no transcript at all
    assert summary([quiet]) == (
        "calls 1, ended 0, finals with text 0, errors 0, transcript latency p50 n/a (no transcripts)"
    )
    spoke = CallResult("c-2")
    for text, ms in (("hello", 100), ("", 300), ("bye", 200)):
        _show(final(text, ms), spoke, io.StringIO(), None)
    assert summary([spoke]).endswith("finals with text 2, errors 0, transcript latency p50 200 ms")


def test_a_url_that_contradicts_the_files_format_is_refused_not_obeyed() -> None:
    wav = AudioFile(Path("call.wav"), AudioFormat(Encoding.LINEAR16, 22050, 1), b"\x00\x00" * 100)
    with pytest.raises(ValueError, match=r"--url says sample_rate=16000 but call.wav is sample_rate=22050"):
        call_urls("ws://h:1/v1/audio/c?sample_rate=16000", 1, wav)
    ((_, url),) = call_urls("ws://h:1/v1/audio/c?sample_rate=22050&tenant_id=t", 1, wav)
    assert url == "ws://h:1/v1/audio/c?sample_rate=22050&tenant_id=t&encoding=linear16&channels=1"
