"""The events' JSON: one golden line per event type, exactly as watchers, the bus and the
tools receive it (field names and order, fields left out rather than null, number formats),
and a property check that a transcript the core makes is written exactly as the dicts the
core once built were."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asr_worker import jsonwire
from asr_worker.core.actions import Emit
from asr_worker.core.clock import FakeClock
from asr_worker.core.events import (
    CallError,
    Dtmf,
    Event,
    EventsDropped,
    Paused,
    ProviderChanged,
    Refusal,
    Resumed,
    SessionEnded,
    SessionStarted,
    SpeechStarted,
    Transcript,
    TranscriptWord,
    UtteranceEnd,
)
from asr_worker.core.provider_events import TranscriptResult, Word
from tests.support.sim import make_core

GOLDEN: list[tuple[Event, str]] = [
    (
        SessionStarted("call-1", "acme", 1, "deepgram", "linear16", 8000, 1, 1764300000000),
        '{"type":"session_started","interaction_id":"call-1","tenant_id":"acme","seq":1,'
        '"provider":"deepgram","encoding":"linear16","sample_rate":8000,"channels":1,'
        '"timestamp_ms":1764300000000}',
    ),
    (
        SessionStarted(
            "call-1", None, 41, "local", "mulaw", 8000, 2, 1764300000000, resumed=True, offset_s=12.5
        ),
        '{"type":"session_started","interaction_id":"call-1","tenant_id":null,"seq":41,'
        '"provider":"local","encoding":"mulaw","sample_rate":8000,"channels":2,'
        '"resumed":true,"offset_s":12.5,"timestamp_ms":1764300000000}',
    ),
    (
        Transcript(
            "call-1",
            "acme",
            7,
            0,
            True,
            True,
            False,
            "How can I help?",
            0.93,
            1.24,
            2.8,
            (
                TranscriptWord("how", 1.24, 1.4, 0.98, "How"),
                TranscriptWord("help", 2.5, 2.8, 0.9, None, 1),
                TranscriptWord("can", 1.4, 1.6, 1.0),
            ),
            "deepgram",
            180,
            1764300000000,
        ),
        '{"type":"transcript","interaction_id":"call-1","tenant_id":"acme","seq":7,"channel":0,'
        '"is_final":true,"speech_final":true,"from_finalize":false,"text":"How can I help?",'
        '"confidence":0.93,"start":1.24,"end":2.8,"words":['
        '{"word":"how","start":1.24,"end":1.4,"confidence":0.98,"punctuated_word":"How"},'
        '{"word":"help","start":2.5,"end":2.8,"confidence":0.9,"speaker":1},'
        '{"word":"can","start":1.4,"end":1.6,"confidence":1.0}],'
        '"provider":"deepgram","latency_ms":180,"timestamp_ms":1764300000000}',
    ),
    (
        Transcript("c", "t", 2, 1, False, False, True, "", 0.0, 3.0, 3.0, (), "mock", 0, 5),
        '{"type":"transcript","interaction_id":"c","tenant_id":"t","seq":2,"channel":1,'
        '"is_final":false,"speech_final":false,"from_finalize":true,"text":"","confidence":0.0,'
        '"start":3.0,"end":3.0,"words":[],"provider":"mock","latency_ms":0,"timestamp_ms":5}',
    ),
    (
        UtteranceEnd("call-1", "acme", 8, 0, 2.8, "deepgram", 1764300001000),
        '{"type":"utterance_end","interaction_id":"call-1","tenant_id":"acme","seq":8,"channel":0,'
        '"last_word_end":2.8,"provider":"deepgram","timestamp_ms":1764300001000}',
    ),
    (
        SpeechStarted("call-1", "acme", 3, 1, 0.52, "deepgram", 1764300000600),
        '{"type":"speech_started","interaction_id":"call-1","tenant_id":"acme","seq":3,"channel":1,'
        '"timestamp":0.52,"provider":"deepgram","timestamp_ms":1764300000600}',
    ),
    (
        Dtmf("call-1", "acme", 4, "5", 0, 3.6, 1764300003600),
        '{"type":"dtmf","interaction_id":"call-1","tenant_id":"acme","seq":4,"digit":"5",'
        '"channel":0,"at":3.6,"timestamp_ms":1764300003600}',
    ),
    (
        Paused("call-1", "acme", 5, 12.5, 1764300012500),
        '{"type":"paused","interaction_id":"call-1","tenant_id":"acme","seq":5,"at":12.5,'
        '"timestamp_ms":1764300012500}',
    ),
    (
        Resumed("call-1", "acme", 6, 31.04, 1764300031040),
        '{"type":"resumed","interaction_id":"call-1","tenant_id":"acme","seq":6,"at":31.04,'
        '"timestamp_ms":1764300031040}',
    ),
    (
        CallError("call-1", "acme", 5, "bad_audio", "a message of 3 bytes is not whole samples", 17),
        '{"type":"error","interaction_id":"call-1","tenant_id":"acme","seq":5,"code":"bad_audio",'
        '"message":"a message of 3 bytes is not whole samples","timestamp_ms":17}',
    ),
    (
        ProviderChanged("call-1", "acme", 8, "deepgram", "local", "circuit_open", 7.42, 1764300011000),
        '{"type":"provider_changed","interaction_id":"call-1","tenant_id":"acme","seq":8,'
        '"from":"deepgram","to":"local","reason":"circuit_open","at":7.42,"timestamp_ms":1764300011000}',
    ),
    (
        SessionEnded("call-1", "acme", 9, "end", 12.34, 1, 6, "local", 1764300012400),
        '{"type":"session_ended","interaction_id":"call-1","tenant_id":"acme","seq":9,'
        '"reason":"end","audio_s":12.34,"reconnects":1,"finals":6,"provider":"local",'
        '"timestamp_ms":1764300012400}',
    ),
    (
        EventsDropped("call-1", 7),
        '{"type":"events_dropped","interaction_id":"call-1","count":7}',
    ),
    (
        EventsDropped(None, 3),
        '{"type":"events_dropped","interaction_id":null,"count":3}',
    ),
    (
        Refusal("capacity", "the worker is at its 500 calls"),
        '{"type":"error","code":"capacity","message":"the worker is at its 500 calls"}',
    ),
    (
        Refusal("bad_call", "encoding 'opus' is not supported", "call-9"),
        '{"type":"error","interaction_id":"call-9","code":"bad_call",'
        '"message":"encoding \'opus\' is not supported"}',
    ),
]


@pytest.mark.parametrize(("event", "line"), GOLDEN, ids=lambda v: getattr(v, "type", ""))
def test_each_event_is_written_as_its_documented_json(event: Event, line: str) -> None:
    assert jsonwire.dumps_event(event) == line.encode()
    assert jsonwire.dumps_event_text(event) == line
    assert json.loads(line)["type"] == event.type


def test_every_event_type_has_a_golden_line() -> None:
    kinds = {type(event) for event, _ in GOLDEN}
    assert kinds == set(Event.__args__)


def test_content_json_cannot_carry_is_still_written() -> None:
    event = CallError("a\ud800b", None, 1, "x", "y", 2**70)
    assert json.loads(jsonwire.dumps_event(event))["interaction_id"] == "a\ud800b"


# --- the core's transcripts against the dicts it once built ---------------------------------

_times = st.floats(min_value=0.0, max_value=30.0, allow_nan=False)
_confidences = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
_words = st.builds(
    Word,
    word=st.text(max_size=8),
    start=_times,
    end=_times,
    confidence=_confidences,
    punctuated_word=st.one_of(st.none(), st.just(""), st.text(min_size=1, max_size=8)),
    speaker=st.one_of(st.none(), st.integers(min_value=0, max_value=9)),
)
_results = st.builds(
    TranscriptResult,
    channel=st.just(0),
    is_final=st.booleans(),
    speech_final=st.booleans(),
    text=st.text(max_size=30),
    confidence=_confidences,
    start=_times,
    duration=st.floats(min_value=0.0, max_value=10.0, allow_nan=False),
    words=st.lists(_words, max_size=4).map(tuple),
    from_finalize=st.booleans(),
)


def _old_dict(result: TranscriptResult, event: Transcript) -> dict[str, object]:
    """What the core built for `result` on a fresh stream (stream time = call time), before
    events were typed; seq, latency and time come from the event, which computes them as before."""
    words = []
    for w in result.words:
        word: dict[str, object] = {
            "word": w.word,
            "start": round(w.start, 3),
            "end": round(w.end, 3),
            "confidence": round(w.confidence, 4),
        }
        if w.punctuated_word:
            word["punctuated_word"] = w.punctuated_word
        if w.speaker is not None:
            word["speaker"] = w.speaker
        words.append(word)
    return {
        "type": "transcript",
        "interaction_id": "call-1",
        "tenant_id": "acme",
        "seq": event.seq,
        "channel": result.channel,
        "is_final": result.is_final,
        "speech_final": result.speech_final,
        "from_finalize": result.from_finalize,
        "text": result.text,
        "confidence": round(result.confidence, 4),
        "start": round(result.start, 3),
        "end": round(max(result.start, result.end), 3),
        "words": words,
        "provider": "mock",
        "latency_ms": event.latency_ms,
        "timestamp_ms": event.timestamp_ms,
    }


@given(_results)
def test_a_transcript_is_written_as_the_dict_the_core_once_built(result: TranscriptResult) -> None:
    clock = FakeClock()
    core = make_core(clock)
    core.attach_source("a", clock.monotonic())
    core.on_audio(b"\x01\x00" * 160, clock.monotonic())
    core.poll(clock.monotonic())
    assert core.on_stream_opened(1, clock.monotonic())
    core.poll(clock.monotonic())
    clock.advance(0.25)
    core.on_stream_event(1, result, clock.monotonic())
    made = [a.event for a in core.poll(clock.monotonic()) if isinstance(a, Emit)]
    if not result.text and not result.from_finalize:
        assert made == []  # silence is not sent
        return
    (event,) = made
    assert isinstance(event, Transcript)
    assert jsonwire.dumps_event(event) == jsonwire.dumps(_old_dict(result, event))
