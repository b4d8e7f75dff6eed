"""Fuzzing the AudioHook message parser and the signature check with near-valid input: each
client message type with fields dropped, retyped, made huge, negative, not numbers or unicode,
or the text cut and spliced; and upgrade headers with damaged signature fields. Every message
is a typed message or a ProtocolError with a short reason; every signature check a result."""

from __future__ import annotations

import uuid

from hypothesis import example, given
from hypothesis import strategies as st

from asr_worker.audiohook import protocol as ah
from asr_worker.audiohook.signature import ApiKeys, NonceCache, authenticate
from asr_worker.errors import ProtocolError
from tests.support.fuzz import bounded, dumps, examples, near_valid

SESSION = str(uuid.uuid4())
PARTICIPANT = {"id": str(uuid.uuid4()), "ani": "+1", "aniName": "A", "dnis": "+2"}
PARAMETERS: dict[str, dict[str, object]] = {
    "open": {
        "organizationId": str(uuid.uuid4()),
        "conversationId": str(uuid.uuid4()),
        "participant": PARTICIPANT,
        "media": [{"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}],
        "language": "en-US",
        "supportedLanguages": True,
        "continuedSessions": [{"id": str(uuid.uuid4()), "serverseq": 3, "clientseq": 4}],
        "customConfig": {"interaction_id": "call-1"},
    },
    "ping": {"rtt": "PT0.05S"},
    "paused": {},
    "resumed": {"start": "PT1.5S", "discarded": "PT0.25S"},
    "discarded": {"start": "PT1.5S", "discarded": "PT0.25S"},
    "update": {"language": "es-ES"},
    "error": {"code": 429, "message": "slow down", "retryAfter": "PT2S"},
    "close": {"reason": "end"},
}


def valid(kind: str) -> dict[str, object]:
    return {
        "version": "2",
        "id": SESSION,
        "type": kind,
        "seq": 2,
        "serverseq": 1,
        "position": "PT12.34S",
        "parameters": PARAMETERS[kind],
    }


def _check(text: str) -> ah.ClientMessage | None:
    try:
        message = ah.parse_client_message(text)
    except ProtocolError as exc:
        bounded(exc.message)
        return None
    header = message.header
    assert ah.is_uuid(header.id) and header.seq >= 0 and header.serverseq >= 0 and header.position >= 0
    assert ah.parse_duration(ah.format_duration(header.position)) >= 0
    if isinstance(message, ah.Open):
        assert ah.is_uuid(message.organization_id) and ah.is_uuid(message.conversation_id)
        assert len(message.media) <= message.offered and len(message.continued_sessions) <= 16
        for offer in message.media:
            assert offer.format in ("PCMU", "L16") and set(offer.channels) <= {"external", "internal"}
        chosen = ah.choose_media(message.media)
        assert chosen is None or (chosen.rate == 8000 and chosen in message.media)
    elif isinstance(message, ah.Close):
        assert message.reason in ah.CLOSE_REASONS
    elif isinstance(message, ah.ClientError):
        assert 400 <= message.code < 10000 and len(message.message) <= 500
    return message


@given(st.sampled_from(sorted(PARAMETERS)).flatmap(lambda kind: near_valid(valid(kind))))
@examples(400)
@example(dumps(valid("open")))
@example("x" * 70_000)
@example('{"version": "2"}')
def test_every_client_message_parses_or_is_refused_with_a_short_reason(text: str) -> None:
    _check(text)


@given(st.text(max_size=300))
@examples(200)
def test_any_text_parses_or_is_refused(text: str) -> None:
    _check(text)


def test_the_valid_messages_parse_as_their_types() -> None:
    types = {type(_check(dumps(valid(kind)))).__name__ for kind in PARAMETERS}
    assert types == {"Open", "Ping", "Paused", "Resumed", "Discarded", "Update", "ClientError", "Close"}


KEYS = ApiKeys.parse("SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh:TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU=,plain")
HEADERS = {
    "host": "audiohook.example.com",
    "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
    "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "x-api-key": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
    "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "signature-input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" '
    '"audiohook-session-id" "audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
    'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430',
}
FIELD_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@given(
    st.sampled_from(["signature", "signature-input", "x-api-key", "host"]),
    st.one_of(
        FIELD_TEXT,
        st.sampled_from(list(HEADERS.values())).flatmap(
            lambda v: st.tuples(st.integers(0, len(v)), FIELD_TEXT).map(
                lambda c: v[: c[0]] + c[1] + v[c[0] :]
            )
        ),
    ),
)
@examples(300)
def test_damaged_signature_headers_are_a_result_never_a_crash(name: str, value: str) -> None:
    assert KEYS is not None
    result = authenticate(
        {**HEADERS, name: value}, "/api/v1/voicebiometrics/ws", KEYS, NonceCache(), 1641013201
    )
    assert result.code in (
        "VERIFIED",
        "FAILED",
        "UNSIGNED",
        "EXPIRED",
        "INVALID",
        "PRECONDITION",
        "UNSUPPORTED",
    )
    if result.ok:  # only an undamaged request, or a key without a secret, gets through
        assert {**HEADERS, name: value} == HEADERS or KEYS.secret(
            str({**HEADERS, name: value}["x-api-key"])
        ) == b""
