"""The transcript document, built from events alone (no worker): what a call said in call-time
order, where it moved provider or worker, its errors; a call taken over reads as one call;
copies of events count once; an id used again starts a new call. Events read back from JSON
(what Redis keeps) build the same document."""

from __future__ import annotations

from asr_worker.core.events import (
    CallError,
    CallEvent,
    ProviderChanged,
    SessionEnded,
    SessionStarted,
    SpeechStarted,
    Transcript,
    TranscriptWord,
)
from asr_worker.jsonwire import dumps_event
from asr_worker.transcripts import build
from asr_worker.transcripts.document import in_document
from asr_worker.transcripts.formats import render
from asr_worker.transcripts.readback import read_event, read_events

T0 = 1_764_300_000_000


def started(seq: int, *, resumed: bool = False, channels: int = 2, at_ms: int = T0) -> SessionStarted:
    return SessionStarted(
        "c1", "acme", seq, "deepgram", "mulaw", 8000, channels, at_ms, resumed, 4.0 if resumed else None
    )


def final(seq: int, channel: int, start: float, text: str, *, language: str | None = "en") -> Transcript:
    words = tuple(
        TranscriptWord(w, start + i * 0.3, start + i * 0.3 + 0.25, 0.9, w.capitalize())
        for i, w in enumerate(text.split())
    )
    return Transcript(
        "c1",
        "acme",
        seq,
        channel,
        True,
        True,
        False,
        text,
        0.91,
        start,
        start + 0.3 * len(words),
        words,
        "deepgram",
        120,
        T0 + seq,
        language,
    )


def interim(seq: int) -> Transcript:
    return Transcript(
        "c1", "acme", seq, 0, False, False, False, "draft", 0.5, 0.0, 0.4, (), "deepgram", 50, T0
    )


def ended(seq: int, reason: str = "end") -> SessionEnded:
    return SessionEnded("c1", "acme", seq, reason, 9.5, 0, 4, "local", T0 + 9_500)


CALL: list[CallEvent] = [
    started(1),
    interim(2),
    final(3, 0, 0.5, "hello there"),
    SpeechStarted("c1", "acme", 4, 1, 1.0, "deepgram", T0),
    final(5, 1, 1.2, "good morning how can I help", language="en-US"),
    final(6, 0, 1.0, "hola"),  # emitted after the agent's, earlier in the call
    ProviderChanged("c1", "acme", 7, "deepgram", "local", "provider_down", 3.1, T0 + 3_100),
    CallError("c1", "acme", 8, "provider_error", "Deepgram dropped", T0 + 3_000),
    final(9, 0, 3.5, "my card", language="es"),
    ended(10),
]


def test_a_call_in_call_time_order_with_its_channels_changes_and_errors() -> None:
    document = build(CALL)
    assert document is not None
    wire = document.wire()
    assert (wire["status"], wire["end_reason"], wire["audio_s"], wire["last_seq"]) == (
        "ended",
        "end",
        9.5,
        10,
    )
    assert wire["format"] == {"encoding": "mulaw", "sample_rate": 8000, "channels": 2}
    assert wire["started_at"] == "2025-11-28T03:20:00.000Z" and wire["ended_at"] == "2025-11-28T03:20:09.500Z"
    assert wire["channels"] == [{"channel": 0, "role": "customer"}, {"channel": 1, "role": "agent"}]
    assert wire["providers"] == ["deepgram", "local"] and wire["languages"] == ["en", "en-US", "es"]
    assert [(u.seq, u.role, u.start) for u in document.utterances] == [
        (3, "customer", 0.5),
        (6, "customer", 1.0),
        (5, "agent", 1.2),
        (9, "customer", 3.5),
    ]
    assert wire["provider_changes"] == [
        {"seq": 7, "from": "deepgram", "to": "local", "reason": "provider_down", "at": 3.1}
    ]
    assert wire["errors"] == [
        {"seq": 8, "code": "provider_error", "message": "Deepgram dropped", "at": "2025-11-28T03:20:03.000Z"}
    ]
    assert wire["redactions"] == [] and wire["resumes"] == []
    [first] = [u for u in document.utterances if u.seq == 3]
    assert first.words[0].wire() == {
        "word": "hello",
        "start": 0.5,
        "end": 0.75,
        "confidence": 0.9,
        "punctuated_word": "Hello",
    }


def test_a_call_taken_over_reads_as_one_and_copies_count_once() -> None:
    """The first worker's events, then the second's (a resumed start, numbering going on), with
    some of the first's read back twice (from Redis and from memory)."""
    first: list[CallEvent] = [started(1), final(2, 0, 0.5, "one two")]
    second: list[CallEvent] = [
        started(3, resumed=True, at_ms=T0 + 20_000),
        final(4, 0, 4.2, "three"),
        ended(5),
    ]
    document = build(first + first[1:] + second + [second[1]])
    assert document is not None and document.status == "ended"
    assert [u.text for u in document.utterances] == ["one two", "three"]
    assert document.wire()["resumes"] == [
        {"seq": 3, "offset_s": 4.0, "provider": "deepgram", "at": "2025-11-28T03:20:20.000Z"}
    ]
    assert document.started_ms == T0  # the call's start, not the takeover's


def test_an_id_used_again_is_a_new_call_and_a_resume_after_an_end_is_active() -> None:
    again = [*CALL, started(1, channels=1, at_ms=T0 + 60_000), final(2, 0, 0.2, "new call")]
    document = build(again)
    assert document is not None and document.status == "active" and document.roles == ("mixed",)
    assert [u.text for u in document.utterances] == ["new call"] and document.started_ms == T0 + 60_000
    handed = build([started(1), final(2, 0, 0.1, "a"), ended(3, "shutdown"), started(4, resumed=True)])
    assert handed is not None and handed.status == "active" and handed.end_reason is None
    assert build([]) is None


def test_the_idempotency_key_names_the_call_and_target_only() -> None:
    document, later = build(CALL), build([*CALL, final(11, 0, 9.0, "late")])
    assert document is not None and later is not None
    assert document.key("https://a.example/", "transcript.completed") == later.key(
        "https://a.example/", "transcript.completed"
    )
    assert document.key("https://a.example/", "x") != document.key("https://b.example/", "x")
    assert document.key("https://a.example/", "x").startswith("doc_")


def test_events_read_back_from_json_build_the_same_document() -> None:
    kept = [e for e in CALL if in_document(e)]
    assert not in_document(interim(2)) and not in_document(CALL[3])
    read = read_events([dumps_event(e) for e in kept])
    assert [dumps_event(e) for e in read] == [dumps_event(e) for e in kept]
    document, again = build(CALL), build(read)
    assert document is not None and again is not None and document.wire() == again.wire()
    resumed = started(3, resumed=True)
    again_resumed = read_event(dumps_event(resumed))
    assert again_resumed is not None and dumps_event(again_resumed) == dumps_event(resumed)
    for junk in (b"not json", b"[1]", b'{"type": "transcript", "seq": "x"}', b'{"type": "dtmf"}'):
        assert read_event(junk) is None


def test_text_formats_escape_what_would_break_a_cue() -> None:
    document = build([started(1), final(2, 1, 3661.0, "a <b> & c\nnext line"), ended(3)])
    assert document is not None
    assert render(document, "vtt").decode() == (
        "WEBVTT\n\n1\n01:01:01.000 --> 01:01:02.800\n<v agent>a &lt;b&gt; &amp; c next line\n"
    )
    assert (
        render(document, "srt").decode() == "1\n01:01:01,000 --> 01:01:02,800\nagent: a <b> & c next line\n"
    )
    assert render(document, "txt").decode() == "[01:01:01] agent: a <b> & c next line\n"
