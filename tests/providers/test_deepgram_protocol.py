"""Deepgram's protocol as data, the close-code and refusal mapping, and the circuit breaker:
pure logic, tested without sockets (the end-to-end tests cover the same paths over them)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asr_worker.config import settings_with
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.call_options import NO_FORMAT
from asr_worker.core.provider_events import (
    SpeechStarted,
    StreamMetadata,
    TranscriptResult,
    UtteranceEnd,
    Word,
)
from asr_worker.credentials import Secret
from asr_worker.deepgram import protocol
from asr_worker.deepgram.protocol import ListenParams, ModelInfo
from asr_worker.errors import ParamError, ProtocolViolation
from asr_worker.providers import deepgram
from asr_worker.providers.breaker import BreakerState, CircuitBreaker
from asr_worker.providers.deepgram import DeepgramOptions, DeepgramProvider, close_error, parse_extra_params

# Shaped like a recorded real response (deepgram-python-sdk tests/response_data, listen/websocket).
RECORDED_FINAL = {
    "channel": {
        "alternatives": [
            {
                "transcript": "Ensure domestic tranquility.",
                "confidence": 0.9897461,
                "words": [
                    {
                        "word": "ensure",
                        "start": 6.25,
                        "end": 6.64,
                        "confidence": 0.98,
                        "punctuated_word": "Ensure",
                    },
                    {"word": "domestic", "start": 6.64, "end": 7.14, "confidence": 0.99},
                    {"word": "tranquility", "start": 7.19, "end": 7.42, "confidence": 0.92, "speaker": 0},
                ],
            }
        ]
    },
    "metadata": {
        "model_info": {"name": "general", "version": "2024-01-26.8851", "arch": "base"},
        "request_id": "4b21fb93-0ece-46c8-a7c8-05709d2119dc",
        "model_uuid": "1ed36bac-f71c-4f3f-a31f-02fd6525c489",
    },
    "type": "Results",
    "channel_index": [0, 1],
    "duration": 1.73,
    "start": 5.9,
    "is_final": True,
    "from_finalize": False,
    "speech_final": True,
}


def test_query_has_lowercase_booleans_and_multichannel_for_two_channels() -> None:
    query = dict(ListenParams(channels=2, endpointing_ms=None).query())
    assert query["interim_results"] == "true" and query["smart_format"] == "false"
    assert query["multichannel"] == "true" and query["endpointing"] == "false"
    assert "multichannel" not in dict(ListenParams().query())


def test_a_server_parses_what_the_client_sends_and_refuses_what_it_cannot_take() -> None:
    params = ListenParams(encoding="mulaw", sample_rate=8000, channels=2, utterance_end_ms=1500)
    parsed = ListenParams.from_query(dict(params.query()))
    assert replace(parsed, format=NO_FORMAT) == params
    # the server's formatting: what was sent, and Deepgram's defaults for what was not
    assert parsed.format.punctuate is True and parsed.format.numerals is False
    loose = ListenParams.from_query(
        {"encoding": "linear16", "sample_rate": "16000", "interim_results": "TRUE"}
    )
    assert loose.interim_results and loose.endpointing_ms == 10 and not loose.vad_events
    for query, named in [
        ({"encoding": "flac", "sample_rate": "8000"}, "encoding"),
        ({"encoding": "linear16"}, "sample_rate is required"),
        ({"encoding": "linear16", "sample_rate": "8000", "channels": "2"}, "multichannel"),
        ({"encoding": "linear16", "sample_rate": "8000", "punctuate": "maybe"}, "punctuate"),
    ]:
        with pytest.raises(ParamError, match=named):
            ListenParams.from_query(query)


def test_a_recorded_final_parses_into_a_transcript_result() -> None:
    result = protocol.parse_server_message(json.dumps(RECORDED_FINAL), channels=1)
    assert isinstance(result, TranscriptResult)
    assert result.is_final and result.speech_final and not result.from_finalize
    assert result.text == "Ensure domestic tranquility." and result.end == pytest.approx(7.63)
    assert result.words[0] == Word("ensure", 6.25, 6.64, 0.98, "Ensure", None)
    assert result.words[2].speaker == 0 and result.channels == 1


def test_built_messages_parse_back_to_the_same_events() -> None:
    model = ModelInfo("nova-3", "v", "mock", "uuid")
    result = TranscriptResult(1, True, False, "a b", 0.5, 1.0, 0.5, (Word("a", 1.0, 1.2, 0.9),), True, 2)
    built = protocol.results_message(result, channels=2, request_id="r", model=model)
    parsed = protocol.parse_server_message(protocol.dumps(built), channels=2)
    assert parsed == TranscriptResult(
        1, True, False, "a b", 0.5, 1.0, 0.5, (Word("a", 1.0, 1.2, 0.9, "a"),), True, 2
    )
    assert protocol.parse_server_message(
        protocol.dumps(protocol.utterance_end_message(1, 2, 3.5)), 2
    ) == UtteranceEnd(1, 3.5)
    assert protocol.parse_server_message(
        protocol.dumps(protocol.speech_started_message(0, 1, 0.25)), 1
    ) == SpeechStarted(0, 0.25)
    metadata = protocol.metadata_message(
        request_id="r", sha256="s", created="c", duration_s=2.0, channels=1, model=model
    )
    parsed_metadata = protocol.parse_server_message(protocol.dumps(metadata), 1)
    assert isinstance(parsed_metadata, StreamMetadata) and parsed_metadata.duration == 2.0


_ODD = [None, True, False, 0, 1, -1, 2_000_000, float("nan"), float("inf"), -float("inf"), "1", ""]
_ODD_BY_FIELD = {
    "word": _ODD,
    "start": [-0.0, -1e-9, 1e7, 1e7 + 1, *_ODD],
    "end": [-0.0, -1e-9, 1e7, 1e7 + 1, *_ODD],
    "confidence": [1.0, 1.0000001, 1.2, -0.1, -0.0, *_ODD],
    "punctuated_word": _ODD,
    "speaker": [-1, 999_999, 1_000_000, 0.0, *_ODD],
}


@st.composite
def _words(draw: st.DrawFn) -> object:
    """What Deepgram sends, with up to two fields dropped or odd: the paths must agree on all."""
    word: dict[str, object] = {
        "word": draw(st.text(max_size=5)),
        "start": draw(st.floats(0.0, 1e7)),
        "end": draw(st.floats(0.0, 1e7)),
        "confidence": draw(st.floats(0.0, 1.0)),
        "punctuated_word": draw(st.text(max_size=5)),
        "speaker": draw(st.integers(0, 3)),
    }
    for key in draw(st.sets(st.sampled_from(sorted(word)), max_size=2)):
        if draw(st.booleans()):
            del word[key]
        else:
            word[key] = draw(st.sampled_from(_ODD_BY_FIELD[key]))
    return word


_WORDS = st.one_of(_words(), st.sampled_from([*_ODD, [], ()]))


def _assert_word_paths_agree(raw: object) -> None:
    try:
        expected: Word | type[Exception] = protocol._checked_word(raw)
    except (KeyError, TypeError, ValueError) as exc:
        expected = type(exc)
    if isinstance(expected, Word):
        assert protocol._word(raw) == expected
    else:
        with pytest.raises(expected):
            protocol._word(raw)


@settings(max_examples=300)
@given(_WORDS)
def test_the_fast_word_path_gives_what_the_checked_path_gives(raw: object) -> None:
    """`_word` takes the common case in one step; for any input it must agree with the
    general checks: the same Word, or an error where they raise one."""
    _assert_word_paths_agree(raw)


@pytest.mark.parametrize(
    ("key", "value"), [(key, value) for key, values in _ODD_BY_FIELD.items() for value in [..., *values]]
)
def test_the_word_paths_agree_on_every_odd_field(key: str, value: object) -> None:
    """Each field dropped (...) or odd in turn, on an otherwise ordinary word."""
    word: dict[str, object] = {
        "word": "hello",
        "start": 1.25,
        "end": 1.5,
        "confidence": 0.9,
        "punctuated_word": "Hello",
        "speaker": 1,
    }
    if value is ...:
        del word[key]
    else:
        word[key] = value
    _assert_word_paths_agree(word)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("not json", "not_json"),
        (b"\x00", "binary"),
        ("[1, 2]", "not_object"),
        ('{"type": "Surprise"}', "unknown_type"),
        ('{"type": "Results", "channel_index": [0, 1]}', "bad_fields"),
        (
            '{"type": "Results", "channel_index": [3, 4], "start": 0, "duration": 1, "channel": {}}',
            "bad_fields",
        ),
        ('{"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": "soon"}', "bad_fields"),
        ('{"type": "SpeechStarted", "channel": [0, 1], "timestamp": -1}', "bad_fields"),
    ],
)
def test_garbage_is_classified_not_crashed_on(message: str | bytes, kind: str) -> None:
    with pytest.raises(ProtocolViolation) as violation:
        protocol.parse_server_message(message, channels=1)
    assert violation.value.kind == kind


def test_refusals_are_read_from_the_body_then_the_dg_error_header() -> None:
    body = b'{"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "x"}'
    assert protocol.read_refusal(401, {}, body) == ("INVALID_AUTH", "Invalid credentials.")
    assert protocol.read_refusal(402, {"dg-error": "No credit."}, b"<html>") == ("HTTP_402", "No credit.")
    assert protocol.read_refusal(503, {}, b"") == ("HTTP_503", "HTTP 503")


def test_credentials_from_authorization_or_subprotocol() -> None:
    assert protocol.credentials({"Authorization": "Token abc"}) == ("abc", False)
    assert protocol.credentials({"Authorization": "bearer jwt"}) == ("jwt", False)
    assert protocol.credentials({"Sec-WebSocket-Protocol": "token, abc"}) == ("abc", True)
    assert protocol.credentials({}) == (None, False)


@pytest.mark.parametrize(
    ("code", "reason", "error_code", "retryable"),
    [
        (1006, "", "connection_lost", True),
        (1011, protocol.NET0001_REASON, "idle_timeout", True),
        (1011, protocol.NET0000_REASON, "provider_closed", True),
        (1008, protocol.DATA0000_REASON, "provider_rejected", False),
        (1009, "too big", "provider_rejected", False),
        (1001, "going away", "provider_closed", True),
    ],
)
def test_close_codes_map_to_retry_or_fail(code: int, reason: str, error_code: str, retryable: bool) -> None:
    error = close_error(code, reason)
    assert (error.code, error.retryable) == (error_code, retryable)
    assert str(code) in error.message or code == 1006


def test_the_url_carries_the_call_format_and_lets_configuration_override_the_rest() -> None:
    provider = DeepgramProvider(
        DeepgramOptions(
            url="ws://dg.example/v1/listen?tag=prod&channels=9",
            api_key=Secret("k"),
            extra_params=(("smart_format", "true"), ("endpointing", "500")),
        )
    )
    url = provider.url_for(AudioFormat(Encoding.MULAW, 8000, 2))
    query = dict(pair.split("=") for pair in url.split("?")[1].split("&"))
    assert query["encoding"] == "mulaw" and query["channels"] == "2" and query["multichannel"] == "true"
    assert query["smart_format"] == "true" and query["endpointing"] == "500" and query["tag"] == "prod"
    assert url.startswith("ws://dg.example/v1/listen?") and "k" not in query.values()
    with pytest.raises(ValueError, match="sample_rate"):
        parse_extra_params("sample_rate=16000")
    settings = settings_with(deepgram_api_key=Secret("key"), deepgram_params=(("numerals", "true"),))
    assert settings.of(deepgram.SETTINGS).extra_params == (("numerals", "true"),)


def test_the_breaker_opens_after_consecutive_failures_and_probes_after_the_cooldown() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown_s=10.0)
    for t in (0.0, 1.0):
        breaker.failure(t)
    assert breaker.state(1.0) is BreakerState.CLOSED and breaker.allow_new(1.0)
    breaker.failure(2.0)
    assert breaker.state(2.0) is BreakerState.OPEN and not breaker.allow_new(5.0)
    assert breaker.retry_in_s(5.0) == pytest.approx(7.0)
    assert breaker.state(12.0) is BreakerState.HALF_OPEN and breaker.allow_new(12.0)
    breaker.failure(12.5)  # the probe failed: open for another cooldown
    assert breaker.state(13.0) is BreakerState.OPEN and breaker.trips == 2
    breaker.success()
    assert breaker.state(13.0) is BreakerState.CLOSED and breaker.failures == 0
    assert breaker.refused == 1


def test_the_breakers_health_says_only_what_connections_showed() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown_s=10.0)
    unknown = breaker.health(0.0, "", connected=False)
    assert (unknown.state, unknown.ok) == ("unknown", False)
    breaker.failure(1.0)
    never = breaker.health(1.0, "HTTP 503", connected=False)
    assert (
        never.state == "failing"
        and never.detail == "never connected: 1 connection attempt failed (last: HTTP 503)"
    )
    breaker.success()
    assert breaker.health(2.0, "", connected=True).state == "ok"
    breaker.failure(3.0)
    breaker.failure(3.5)
    since = breaker.health(3.5, "HTTP 503", connected=True)
    assert since.state == "failing" and since.detail.startswith("the last 2 connection attempts failed")
    breaker.failure(4.0)
    opened = breaker.health(5.0, "HTTP 503", connected=True)
    assert opened.state == "failing" and opened.refusing_new_calls_s == pytest.approx(9.0)
    refused = CircuitBreaker().health(0.0, "", "unauthorized: INVALID_AUTH", connected=False)
    assert refused.state == "failing" and refused.detail == "unauthorized: INVALID_AUTH"
