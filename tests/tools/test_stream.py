"""`asr-worker stream`: what it prints for each event the worker sends."""

from __future__ import annotations

import io
import json

from asr_worker.tools.stream import CallResult, _show


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
