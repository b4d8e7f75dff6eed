"""Fuzzing what the HTTP edge parses from clients: the ingest socket's text messages, ids,
audio formats from a query, credentials, and SSE resume points. Each returns a typed value or
raises its own error with a short message; nothing else escapes."""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import example, given
from hypothesis import strategies as st

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.ids import check_id, check_optional_id
from asr_worker.credentials import Secret, token_matches
from asr_worker.errors import AudioFormatError, BadRequest, ProtocolError
from asr_worker.http.auth import presented_tokens
from asr_worker.transports.ingest_call import parse_control
from asr_worker.transports.sse import _resume_after
from tests.conftest import running_worker
from tests.support.fuzz import (
    HOSTILE,
    SCALARS,
    SENDABLE_STRINGS,
    TRICKY_STRINGS,
    bounded,
    examples,
    near_valid,
)

# --- the ingest socket's control messages ---------------------------------------------------------

CONTROL = st.one_of(
    near_valid({"type": "end"}),
    near_valid({"type": "KeepAlive"}),
    near_valid({"type": "CloseStream", "extra": [1, 2]}),
    st.text(max_size=100),
    TRICKY_STRINGS,
)


@examples(300)
@given(CONTROL)
@example("[" * 100_000 + "]" * 100_000)
@example('{"type": "' + "x" * 100_000 + '"}')
@example('{"type": "\\ud800"}')
def test_a_control_message_is_a_command_or_a_short_control_error(text: str) -> None:
    try:
        command = parse_control(text)
    except ProtocolError as exc:
        assert exc.code in ("bad_message", "unknown_message")
        bounded(exc.message)
        return
    assert command in ("end", "keepalive")


# --- ids and formats from the URL ---------------------------------------------------------------------


@examples(200)
@given(st.none() | st.text(max_size=200) | TRICKY_STRINGS)
def test_an_id_is_checked_or_refused_with_a_short_reason(value: str | None) -> None:
    try:
        checked = check_optional_id(value, "tenant_id")
    except BadRequest as exc:
        bounded(str(exc))
        return
    if checked is not None:
        assert checked == value and 1 <= len(checked) <= 128 and checked.isascii()
        assert check_id(checked, "interaction_id") == checked


FORMAT_VALUES = st.one_of(SCALARS, HOSTILE, st.sampled_from(["linear16", "mulaw", "alaw", "pcm16", "ULAW"]))
RATES = st.one_of(SCALARS, st.integers(7000, 50000), st.sampled_from(["8000", " 16000 ", "48000", "²", "٣"]))


@examples(300)
@given(FORMAT_VALUES, RATES, st.one_of(SCALARS, st.sampled_from([1, 2, "1", "2", "3"])))
@example("linear16", "²", 1)  # str.isdigit() says yes, int() says no: was a bare ValueError
@example("linear16", "8000", "¹")
@example("linear16", 10**4000, 1)  # the error message quoted all 4000 digits
@example("mulaw", 8000, -(10**4000))
def test_an_audio_format_is_valid_or_a_short_format_error(
    encoding: object, rate: object, channels: object
) -> None:
    try:
        fmt = AudioFormat.parse(encoding, rate, channels)
    except AudioFormatError as exc:
        bounded(str(exc))
        return
    assert isinstance(fmt.encoding, Encoding)
    assert 8000 <= fmt.sample_rate <= 48000 and fmt.channels in (1, 2)


# --- credentials ---------------------------------------------------------------------------------------

TOKEN = "tok-fuzz-8c1d"

AUTH_HEADERS = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda s, v: f"{s} {v}",
        st.sampled_from(["Bearer", "bearer", "Basic", "basic", "Token"]),
        st.text(max_size=40),
    ),
    st.builds(
        lambda user, password: "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        st.text(max_size=10),
        st.text(max_size=20) | st.just(TOKEN),
    ),
    st.builds(lambda raw: "Basic " + base64.b64encode(raw).decode(), st.binary(max_size=30)),
    st.sampled_from(["Basic é", "Basic ＡＡＡＡ", "Basic ====", "Basic", "Bearer", f"Bearer {TOKEN}"]),
)


@examples(300)
@given(AUTH_HEADERS, st.none() | st.text(max_size=30) | st.just(TOKEN), st.sampled_from(["GET", "POST"]))
@example("Basic é", None, "GET")  # base64 of non-ASCII text raised ValueError: a 500 for the client
def test_credentials_are_read_from_any_header_without_an_exception(
    authorization: str, query_token: str | None, method: str
) -> None:
    headers = {"Authorization": authorization}
    request = make_mocked_request(method, "/v1/sessions", headers=headers)
    if query_token is not None:
        request = request.clone(rel_url=request.rel_url.with_query(token=query_token))
    presented = presented_tokens(request)
    assert all(isinstance(token, str) for token in presented)
    # The comparison takes any presented text, surrogates included, and only the token passes.
    matched = token_matches(Secret(TOKEN), presented)
    assert matched == (TOKEN in presented)


@examples(100)
@given(st.lists(st.text(max_size=20) | TRICKY_STRINGS, max_size=4))
@example(["\udcff", "\ud800x"])  # undecodable header bytes arrive as lone surrogates
def test_any_presented_text_is_compared_without_an_exception(presented: list[str]) -> None:
    assert token_matches(Secret(TOKEN), presented) == (TOKEN in presented)


@pytest.mark.parametrize("raw", [b"Basic \xc3\xa9", b"Basic \xff\xfe", b"Bearer \xff", b"Basic w6k="])
async def test_undecodable_credentials_get_a_401_not_a_500(raw: bytes) -> None:
    """Over a real socket, header bytes that are not UTF-8 (aiohttp hands them over as lone
    surrogates) or Basic credentials that are not base64 of UTF-8 are refused like any
    wrong token."""
    async with running_worker(worker_token=Secret(TOKEN)) as worker:
        reader, writer = await asyncio.open_connection("127.0.0.1", worker.port)
        writer.write(
            b"GET /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
            + raw
            + b"\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(10):
            response = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert response.startswith(b"HTTP/1.1 401 "), response[:200]


# --- SSE resume points -----------------------------------------------------------------------------


@examples(200)
@given(
    st.none() | st.text(max_size=30) | SENDABLE_STRINGS, st.none() | st.text(max_size=30) | SENDABLE_STRINGS
)
def test_a_resume_point_is_a_seq_or_a_short_bad_request(header: str | None, query: str | None) -> None:
    request = make_mocked_request(
        "GET", "/v1/calls/c/events", headers={} if header is None else {"Last-Event-ID": header}
    )
    if query is not None:
        request = request.clone(rel_url=request.rel_url.with_query(last_event_id=query))
    try:
        after = _resume_after(request)
    except BadRequest as exc:
        bounded(str(exc))
        return
    assert after is None or (isinstance(after, int) and 0 <= after < 10**12)
