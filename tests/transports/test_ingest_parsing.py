"""The ingest socket's text messages: any input is a command or a clear error, never a crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asr_worker.errors import ProtocolError
from asr_worker.transports.ingest_call import parse_control

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ('{"type": "end"}', "end"),
        ('{"type": "CloseStream"}', "end"),
        ('{"type": "KeepAlive"}', "keepalive"),
        ('{"type": "finalize"}', "finalize"),
        ('{"type": "Finalize"}', "finalize"),
    ],
)
def test_known_commands(text: str, command: str) -> None:
    assert parse_control(text) == command


@given(st.text(max_size=200))
def test_any_text_is_a_command_or_a_clear_error(text: str) -> None:
    try:
        assert parse_control(text) in ("end", "keepalive")
    except ProtocolError as exc:
        assert exc.code in ("bad_message", "unknown_message") and exc.message


@given(json_values)
def test_any_json_is_a_command_or_a_clear_error(value: object) -> None:
    try:
        parse_control(json.dumps(value))
    except ProtocolError as exc:
        assert exc.code in ("bad_message", "unknown_message")


def test_deeply_nested_json_is_refused_not_crashed() -> None:
    with pytest.raises(ProtocolError):
        parse_control("[" * 100_000 + "]" * 100_000)
