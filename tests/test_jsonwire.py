"""The worker's JSON: compact UTF-8 out, never failing on an event's content; strict in."""

from __future__ import annotations

import json

import pytest

from asr_worker import jsonwire


def test_events_are_compact_utf8_and_read_back_the_same() -> None:
    event = {"type": "transcript", "text": "café ¿sí?", "confidence": 0.9134, "words": [], "seq": 3}
    data = jsonwire.dumps(event)
    assert data == json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    assert jsonwire.loads(data) == event and jsonwire.dumps_text(event) == data.decode()


def test_what_orjson_refuses_is_still_written() -> None:
    lone_surrogate = {"interaction_id": "a\ud800b"}
    assert json.loads(jsonwire.dumps(lone_surrogate)) == lone_surrogate
    huge = {"n": 2**70}
    assert json.loads(jsonwire.dumps(huge)) == huge


def test_a_nan_is_written_as_null_not_as_invalid_json() -> None:
    assert jsonwire.dumps({"x": float("nan")}) == b'{"x":null}'


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", "{", "[" * 2000 + "]" * 2000, '"\\ud800"'])
def test_invalid_json_raises_a_value_error(text: str) -> None:
    with pytest.raises(jsonwire.JSONDecodeError):
        jsonwire.loads(text)
    assert issubclass(jsonwire.JSONDecodeError, ValueError)  # what the parsers catch
