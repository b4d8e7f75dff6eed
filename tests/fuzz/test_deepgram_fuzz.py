"""Fuzzing both ends of Deepgram's live protocol: what the worker's client parses from a
server (Results, Metadata, UtteranceEnd, SpeechStarted, Error, garbage; handshake refusals
with their status, `dg-error`, JSON body and Retry-After), and what dg-server parses from a
client (text messages, query parameters, credentials). Each is a typed value or the
module's own error with a short message; a parsed result is also safe for the session core."""

from __future__ import annotations

import json
import math

import aiohttp
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from websockets.datastructures import Headers, is_valid_header_value
from websockets.http11 import Response

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.clock import FakeClock
from asr_worker.core.provider_events import (
    SpeechStarted,
    StreamMetadata,
    TranscriptResult,
    UtteranceEnd,
    Word,
)
from asr_worker.credentials import Secret
from asr_worker.deepgram import protocol
from asr_worker.deepgram.protocol import MAX_STREAM_S, ListenParams, ModelInfo, ServerError
from asr_worker.errors import ParamError, ProtocolViolation, ProviderError
from asr_worker.providers.deepgram import DeepgramOptions, DeepgramProvider, _retry_after_s, close_error
from tests.support.dg_server import running_dg_server
from tests.support.fuzz import (
    HUGE_TEXT,
    SENDABLE_STRINGS,
    TRICKY_STRINGS,
    bounded,
    dumps,
    examples,
    near_valid,
)
from tests.support.sim import Recorder, make_core

MODEL = ModelInfo("nova-3", "v1", "mock", "uuid-1")
WORDS = (Word("hello", 0.2, 0.5, 0.91, "Hello,", 0), Word("there", 0.6, 0.9, 0.88))
SERVER_MESSAGES: list[dict[str, object]] = [
    protocol.results_message(
        TranscriptResult(0, True, True, "hello there", 0.9, 0.1, 1.2, WORDS, False, 2),
        channels=2,
        request_id="r-1",
        model=MODEL,
    ),
    protocol.results_message(
        TranscriptResult(1, False, False, "hi", 0.5, 0.0, 0.5, (Word("hi", 0.1, 0.3, 0.7),)),
        channels=2,
        request_id="r-1",
        model=MODEL,
    ),
    protocol.metadata_message(
        request_id="r-1", sha256="ab", created="c", duration_s=3.0, channels=2, model=MODEL
    ),
    protocol.utterance_end_message(1, 2, 2.5),
    protocol.speech_started_message(0, 2, 0.25),
    protocol.error_message("SchemaError", "bad message", "the message"),
]
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
VIOLATIONS = {"binary", "not_json", "not_object", "bad_fields", "unknown_type"}
STEREO = AudioFormat(Encoding.LINEAR16, 8000, 2)


def _results(**fields: object) -> str:
    body = dict(SERVER_MESSAGES[0])
    body.update(fields)
    return dumps(body)


def _check_result(result: TranscriptResult, channels: int) -> None:
    assert 0 <= result.channel < channels and 1 <= result.channels <= channels
    for seconds in (result.start, result.duration):
        assert math.isfinite(seconds) and 0 <= seconds <= MAX_STREAM_S
    assert 0.0 <= result.confidence <= 1.0 and isinstance(result.text, str)
    for word in result.words:
        assert isinstance(word.word, str) and 0.0 <= word.confidence <= 1.0
        assert all(math.isfinite(t) and 0 <= t <= MAX_STREAM_S for t in (word.start, word.end))
        assert word.speaker is None or (isinstance(word.speaker, int) and word.speaker >= 0)


def _fed_to_a_core(message: TranscriptResult | UtteranceEnd | SpeechStarted | StreamMetadata) -> None:
    """What the parser lets through, the session core takes without an exception."""
    clock = FakeClock()
    rec = Recorder(make_core(clock, fmt=STEREO), clock)
    rec.core.on_audio(b"\x01\x00" * 1600, clock.monotonic())
    rec.poll()
    rec.core.on_stream_opened(1, clock.monotonic())
    rec.core.on_stream_event(1, message, clock.monotonic())
    rec.poll()
    json.dumps(rec.events(), allow_nan=False)  # events stay valid JSON for strict clients


@examples(500)
@given(st.sampled_from(SERVER_MESSAGES).flatmap(near_valid), st.sampled_from([1, 2]))
@example(_results(channel_index=[0, math.inf]), 2)  # int(inf): OverflowError escaped
@example(_results(channel_index=[0, 10**15]), 2)  # the core then looped over 10**15 channels
@example(_results(start=10**400), 2)  # float(10**400): OverflowError escaped
@example(_results(duration=1e308), 2)  # finite, but the core's byte arithmetic overflowed
@example(dumps({"type": "SpeechStarted", "channel": [0, 1], "timestamp": 1e300}), 1)
@example(dumps({"type": "SpeechStarted", "channel": [HUGE_TEXT], "timestamp": 0}), 1)  # echoed 100 KB
@example(
    _results(channel={"alternatives": [{"transcript": "a", "confidence": math.nan}]}), 2
)  # NaN in events
@example(_results(channel={"alternatives": [{"transcript": "a", "confidence": HUGE_TEXT}]}), 2)
@example(_results(channel={"alternatives": [{"transcript": ["not", "text"], "confidence": 0.5}]}), 2)
@example(
    _results(
        channel={
            "alternatives": [
                {"transcript": "a", "words": [{"word": "a", "start": 0, "end": 1, "speaker": 10**400}]}
            ]
        }
    ),
    2,
)
@example("[" * 50_000 + "]" * 50_000, 1)
def test_a_server_message_is_an_event_or_a_short_violation(text: str, channels: int) -> None:
    try:
        parsed = protocol.parse_server_message(text, channels)
    except ProtocolViolation as exc:
        assert exc.kind in VIOLATIONS
        bounded(str(exc))
        return
    if isinstance(parsed, TranscriptResult):
        _check_result(parsed, channels)
    elif isinstance(parsed, UtteranceEnd | SpeechStarted):
        assert 0 <= parsed.channel < channels
    elif isinstance(parsed, StreamMetadata):
        assert len(parsed.request_id) <= 100 and math.isfinite(parsed.duration)
    elif isinstance(parsed, ServerError):
        assert len(parsed.variant) <= 100 and len(parsed.description) <= 300
    else:
        assert parsed is None
    if isinstance(parsed, TranscriptResult | UtteranceEnd | SpeechStarted | StreamMetadata):
        _fed_to_a_core(parsed)


def test_binary_from_the_server_is_a_violation() -> None:
    with pytest.raises(ProtocolViolation) as caught:
        protocol.parse_server_message(b"\x00" * 100_000, 1)
    assert caught.value.kind == "binary" and len(str(caught.value)) < 100


# --- handshake refusals -------------------------------------------------------------------------------

KEY = "dg-fuzz-key-6f1e0b2c"
REFUSALS: list[dict[str, object]] = [
    {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "r"},
    {"err_code": "TOO_MANY_REQUESTS", "err_msg": "Too many requests."},
    {"message": "rate limited"},
]
REFUSAL_BODIES = st.one_of(
    st.binary(max_size=100),
    st.sampled_from(REFUSALS).flatmap(near_valid).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.just(b"[" * 100_000 + b"]" * 100_000),
    st.just(json.dumps({"err_msg": HUGE_TEXT}).encode()),
    # a server (or a proxy in front of it) that echoes the request's headers back
    st.just(json.dumps({"err_msg": f"Authorization: Token {KEY}"}).encode()),
    st.just(f"<html>Authorization: Token {KEY}</html>".encode()),
)


# What a header value can be once websockets has read it (ISO-8859-1, no control characters).
HEADER_VALUES = (st.text(max_size=50) | SENDABLE_STRINGS).filter(
    lambda v: is_valid_header_value(v) is not None
)


@examples(300)
@given(
    status=st.sampled_from([400, 401, 402, 403, 404, 408, 429, 500, 502, 503, 504, 302, 200, 599]),
    dg_error=st.none() | HEADER_VALUES | st.just(f"Token {KEY}"),
    retry_after=st.none() | HEADER_VALUES | st.sampled_from(["5", "-3", "nan", "inf", "1e400"]),
    body=REFUSAL_BODIES,
    request_id=st.none() | HEADER_VALUES,
)
@example(
    status=401, dg_error=None, retry_after=None, body=b"[" * 100_000 + b"]" * 100_000, request_id=None
)  # RecursionError escaped
@example(status=429, dg_error=None, retry_after="inf", body=b"", request_id=None)
def test_a_handshake_refusal_is_a_provider_error_with_a_short_message(
    status: int, dg_error: str | None, retry_after: str | None, body: bytes, request_id: str | None
) -> None:
    clock = FakeClock()
    provider = DeepgramProvider(
        DeepgramOptions(url="ws://127.0.0.1:1/v1/listen", api_key=Secret(KEY)), clock=clock
    )
    headers = Headers()
    for name, value in (("dg-error", dg_error), ("Retry-After", retry_after), ("dg-request-id", request_id)):
        if value is not None:
            headers[name] = value
    error = provider._refused(Response(status, "Refused", headers, body))
    assert isinstance(error, ProviderError)
    assert error.retryable is (status not in protocol.NON_RETRYABLE_STATUSES)
    bounded(error.message, limit=800)  # Deepgram's err_code and err_msg (300 each) and request id
    assert provider._not_before <= clock.monotonic() + provider.options.max_retry_after_s
    assert KEY not in error.message and KEY not in provider.health().detail


@examples(100)
@given(st.none() | st.text(max_size=20) | SENDABLE_STRINGS)
@example("inf")
@example("nan")
def test_retry_after_is_finite_seconds_or_none(value: str | None) -> None:
    seconds = _retry_after_s(value)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@examples(100)
@given(st.integers(1000, 4999), st.text(max_size=300) | TRICKY_STRINGS)
def test_a_close_is_a_provider_error_with_a_short_message(code: int, reason: str) -> None:
    error = close_error(code, reason)
    bounded(error.message)
    assert error.retryable is (code not in protocol.NON_RETRYABLE_CLOSE_CODES)


# --- what dg-server parses from a client ----------------------------------------------------------------


@examples(300)
@given(
    st.one_of(
        near_valid({"type": "KeepAlive"}),
        near_valid({"type": "Finalize"}),
        near_valid({"type": "CloseStream"}),
        st.text(max_size=50),
        TRICKY_STRINGS,
    )
)
@example("[" * 100_000 + "]" * 100_000)  # RecursionError escaped from dg-server's reader
def test_a_client_text_message_is_a_type_or_a_short_violation(text: str) -> None:
    try:
        kind = protocol.parse_client_message(text)
    except ProtocolViolation as exc:
        assert exc.kind in ("not_json", "no_type")
        bounded(str(exc))
        return
    assert isinstance(kind, str)


QUERY = dict(ListenParams(channels=2, utterance_end_ms=1500).query())


@st.composite
def queries(draw: st.DrawFn) -> dict[str, str]:
    """A listen query with some values replaced by hostile text and some keys dropped."""
    query = dict(QUERY)
    for key in draw(st.lists(st.sampled_from(sorted(QUERY)), max_size=4)):
        if draw(st.booleans()):
            query.pop(key, None)
        else:
            query[key] = draw(
                st.text(max_size=12) | TRICKY_STRINGS | st.sampled_from(["TRUE", "0", "-5", "99999"])
            )
    return query


@examples(300)
@given(queries())
@example({**QUERY, "sample_rate": "9" * 4000})  # the error quoted all 4000 digits
@example({**QUERY, "sample_rate": "８０００"})
@example({**QUERY, "endpointing": "1_0"})
def test_a_listen_query_is_params_or_a_short_param_error(query: dict[str, str]) -> None:
    try:
        params = ListenParams.from_query(query)
    except ParamError as exc:
        bounded(str(exc))
        return
    assert params.encoding in protocol.RAW_ENCODINGS
    assert 8000 <= params.sample_rate <= 48000 and params.channels in (1, 2)
    assert params.endpointing_ms is None or 0 <= params.endpointing_ms <= 60_000
    assert params.utterance_end_ms is None or 1000 <= params.utterance_end_ms <= 5000
    assert len(params.model) <= 100 and len(params.language) <= 40
    AudioFormat.parse(params.encoding, params.sample_rate, params.channels)  # what the server then builds


@examples(200)
@given(
    st.dictionaries(
        st.sampled_from(["Authorization", "Sec-WebSocket-Protocol", "Other"]),
        st.text(max_size=40)
        | TRICKY_STRINGS
        | st.sampled_from(["Token abc", "bearer x", "token, k", "Token  "]),
    )
)
def test_credentials_are_a_key_or_none(headers: dict[str, str]) -> None:
    key, via_subprotocol = protocol.credentials(headers)
    assert key is None or (isinstance(key, str) and key == key.strip() and key)
    assert isinstance(via_subprotocol, bool)


async def test_dg_server_answers_a_deeply_nested_message_with_an_error_and_goes_on() -> None:
    """Over a real socket: JSON nested past Python's recursion limit used to raise
    RecursionError in the connection's reader, ending the connection without a close frame."""
    async with running_dg_server() as server, aiohttp.ClientSession() as http:
        url = server.url + "?encoding=linear16&sample_rate=8000"
        async with http.ws_connect(url) as ws:
            await ws.send_str("[" * 100_000 + "]" * 100_000)
            await ws.send_bytes(b"\x01\x00" * 1600)
            await ws.send_str(protocol.CLOSE_STREAM)
            received = []
            async for msg in ws:
                assert msg.type is aiohttp.WSMsgType.TEXT
                received.append(json.loads(msg.data))
            close_code = ws.close_code
    assert received[0]["type"] == "Error" and received[0]["variant"] == "SchemaError"
    assert received[-1]["type"] == "Metadata" and close_code == 1000
