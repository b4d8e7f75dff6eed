"""The one event printer of `stream`, `publish --follow` and `transcribe`: every event type one
line, with what matters of it."""

from __future__ import annotations

import pytest

from asr_worker.tools.printer import describe

ENVELOPE = {"interaction_id": "call-1", "tenant_id": "acme", "seq": 4, "timestamp_ms": 1764300000000}


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            {
                "type": "session_started",
                "provider": "deepgram",
                "encoding": "mulaw",
                "sample_rate": 8000,
                "channels": 2,
            },
            "[call-1] session_started on deepgram, mulaw 8000 Hz, 2 channels",
        ),
        (
            {
                "type": "session_started",
                "provider": "local",
                "encoding": "mulaw",
                "sample_rate": 8000,
                "channels": 1,
                "resumed": True,
                "offset_s": 36.2,
            },
            "[call-1] session_started on local, mulaw 8000 Hz, 1 channel; resumed: continues the call from "
            "36.20 s (another worker began it)",
        ),
        (
            {
                "type": "transcript",
                "channel": 1,
                "is_final": True,
                "text": "how can I help",
                "start": 1.24,
                "end": 2.8,
            },
            "[call-1] final   ch1    1.24-2.80    how can I help",
        ),
        (
            {
                "type": "transcript",
                "channel": 0,
                "is_final": False,
                "text": "how can",
                "start": 1.24,
                "end": 2.0,
            },
            "[call-1] interim ch0    1.24-2.00    how can",
        ),
        (
            {
                "type": "provider_changed",
                "from": "deepgram",
                "to": "local",
                "reason": "circuit_open",
                "at": 3.2,
            },
            "[call-1] provider_changed deepgram -> local (circuit_open), transcribing from 3.20 s",
        ),
        (
            {"type": "dtmf", "digit": "5", "channel": 0, "at": 12.34},
            "[call-1] dtmf    digit 5 on ch0 at 12.34 s",
        ),
        (
            {"type": "error", "code": "audio_dropped", "message": "2.0 s of audio dropped"},
            "[call-1] error   audio_dropped: 2.0 s of audio dropped",
        ),
        (
            {"type": "events_dropped", "count": 12},
            "[call-1] events_dropped 12 events lost here: this reader fell too far behind",
        ),
        (
            {"type": "speech_started", "channel": 0, "timestamp": 1.2, "provider": "deepgram"},
            "[call-1] speech_started ch0 at 1.20 s",
        ),
        (
            {"type": "utterance_end", "channel": 1, "last_word_end": 2.3, "provider": "deepgram"},
            "[call-1] utterance_end ch1, last word ended at 2.30 s",
        ),
        (
            {
                "type": "session_ended",
                "reason": "end",
                "audio_s": 3.647,
                "reconnects": 1,
                "finals": 1,
                "provider": "local",
            },
            "[call-1] session_ended reason end, 3.65 s of audio, 1 final, 1 reconnect, on local",
        ),
        ({"type": "paused", "at": 4.0}, "[call-1] paused  at 4.00 s"),
        ({"type": "redacted", "entities": 2}, '[call-1] redacted {"entities": 2}'),
    ],
)
def test_every_event_type_is_one_line_with_what_matters(event: dict[str, object], line: str) -> None:
    assert describe(ENVELOPE | event) == line


def test_a_transcript_without_words_is_no_line() -> None:
    """A final that confirms a flush or covers silence: `final 36.2-37.3:` said nothing."""
    empty = ENVELOPE | {"type": "transcript", "is_final": True, "text": "", "start": 36.2, "end": 37.3}
    assert describe(empty) is None
    assert describe(empty | {"text": "  "}) is None


def test_the_call_is_named_as_the_caller_says() -> None:
    event = ENVELOPE | {"type": "error", "code": "x", "message": "y"}
    assert describe(event, call="other") == "[other] error   x: y"
    assert describe(event, call="") == "error   x: y"
    assert describe({"type": "error", "code": "x", "message": "y"}) == "error   x: y"
