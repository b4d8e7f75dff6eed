"""The HTTP message signature check against the reference implementation's test vectors
(draft-ietf-httpbis-message-signatures-11 B.2.5, and the AudioHook documentation's example),
and the authenticator's rules: required components, age, skew, nonce, keyid, replay."""

from __future__ import annotations

import base64

import pytest

from asr_worker.audiohook import sfv
from asr_worker.audiohook.signature import (
    ApiKeys,
    NonceCache,
    ResolvedKey,
    SignatureParameters,
    VerifyResult,
    authenticate,
    header_fields,
    upgrade_headers,
    verify_signature,
)

RFC_KEY = base64.b64decode(
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ=="
)
RFC_HEADERS = {
    "date": "Tue, 20 Apr 2021 02:07:55 GMT",
    "content-type": "application/json",
    "signature-input": 'sig-b25=("date" "@authority" "content-type");'
    'created=1618884473;keyid="test-shared-secret"',
    "signature": "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
}
DOC_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
DOC_SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
DOC_TARGET = "/api/v1/voicebiometrics/ws"
DOC_HEADERS = {
    "host": "audiohook.example.com",
    "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
    "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "x-api-key": DOC_KEY,
    "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "signature-input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" '
    '"audiohook-session-id" "audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
    'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430',
}
DOC_CREATED = 1641013200
NOW = 1_700_000_000.0


def rfc_resolver(parameters: SignatureParameters) -> ResolvedKey:
    good = parameters.keyid == "test-shared-secret"
    return ResolvedKey(RFC_KEY if good else bytes(64), good)


def doc_resolver(parameters: SignatureParameters) -> ResolvedKey:
    good = parameters.keyid == DOC_KEY
    return ResolvedKey(base64.b64decode(DOC_SECRET) if good else bytes(32), good)


def test_rfc_vector_with_authority_looked_up() -> None:
    result = verify_signature(
        RFC_HEADERS, rfc_resolver, now=NOW, derived=lambda n: "example.com" if n == "@authority" else None
    )
    assert result == VerifyResult("VERIFIED")


def test_rfc_vector_with_authority_from_host() -> None:
    assert verify_signature({**RFC_HEADERS, "host": "example.com"}, rfc_resolver, now=NOW).ok


@pytest.mark.parametrize("reverse", [False, True])
def test_audiohook_documentation_example_in_any_header_order(reverse: bool) -> None:
    items = list(DOC_HEADERS.items())
    headers = header_fields(reversed(items) if reverse else items)
    result = verify_signature(
        headers, doc_resolver, now=NOW, derived=lambda n: DOC_TARGET if n == "@request-target" else None
    )
    assert result.ok


def test_a_changed_component_or_key_fails() -> None:
    derived = {"derived": lambda n: DOC_TARGET if n == "@request-target" else None}
    tampered = {**DOC_HEADERS, "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c1"}
    assert verify_signature(tampered, doc_resolver, now=NOW, **derived).code == "FAILED"  # type: ignore[arg-type]
    wrong_key = {
        **DOC_HEADERS,
        "signature-input": DOC_HEADERS["signature-input"].replace('keyid="S', 'keyid="T'),
    }
    assert verify_signature(wrong_key, doc_resolver, now=NOW, **derived).code == "FAILED"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"signature": ""}, "INVALID"),
        ({"signature-input": "", "signature": ""}, "UNSIGNED"),
        ({"signature-input": "sig1=(", "signature": "x"}, "INVALID"),
        ({"signature-input": 'sig1=("x-api-key");created=1;bogus=2'}, "INVALID"),
        ({"signature-input": 'sig1=("@signature-params");created=1'}, "INVALID"),
        ({"signature-input": 'sig1=("@query-params");created=1'}, "UNSUPPORTED"),
        ({"signature-input": 'sig1=("x-api-key";sf);created=1'}, "INVALID"),
        ({"signature-input": 'sig1=("nope");created=1'}, "PRECONDITION"),
        ({"signature-input": 'sig1=("x-api-key");created=1;alg="rsa"'}, "UNSUPPORTED"),
    ],
)
def test_malformed_signatures_get_the_reference_result_codes(change: dict[str, str], code: str) -> None:
    assert verify_signature({**DOC_HEADERS, **change}, doc_resolver, now=NOW).code == code


KEYS = ApiKeys.parse(f"{DOC_KEY}:{DOC_SECRET},plain-key")


def doc_auth(headers: dict[str, str], now: float, nonces: NonceCache | None = None) -> VerifyResult:
    assert KEYS is not None
    return authenticate(headers, DOC_TARGET, KEYS, NonceCache() if nonces is None else nonces, now)


def test_the_authenticator_accepts_the_example_in_its_window_and_refuses_a_replay() -> None:
    nonces = NonceCache()
    assert doc_auth(DOC_HEADERS, DOC_CREATED + 1, nonces).ok
    replay = doc_auth(DOC_HEADERS, DOC_CREATED + 2, nonces)
    assert replay.code == "FAILED" and replay.reason is not None and "replayed" in replay.reason


@pytest.mark.parametrize(
    ("now", "code"),
    [
        (DOC_CREATED - 2, "VERIFIED"),  # 2 s of clock skew: allowed
        (DOC_CREATED - 4, "PRECONDITION"),  # created in the future
        (DOC_CREATED + 7, "VERIFIED"),
        (DOC_CREATED + 8, "EXPIRED"),  # 10 s old, less 3 s of skew
    ],
)
def test_age_and_skew(now: float, code: str) -> None:
    assert doc_auth(DOC_HEADERS, now).code == code


def test_the_authenticators_own_rules() -> None:
    at = DOC_CREATED + 1
    short_nonce = DOC_HEADERS["signature-input"].replace("VGhpc0lzQVVuaXF1ZU5vbmNl", "c2hvcnQ=")
    assert doc_auth({**DOC_HEADERS, "signature-input": short_nonce}, at).code == "PRECONDITION"
    assert doc_auth({k: v for k, v in DOC_HEADERS.items() if k != "x-api-key"}, at).code == "PRECONDITION"
    mismatch = doc_auth({**DOC_HEADERS, "x-api-key": "plain-key"}, at)
    assert mismatch.code == "PRECONDITION" and "keyid mismatch" in str(mismatch.reason)
    unsigned = {k: v for k, v in DOC_HEADERS.items() if not k.startswith("signature")}
    assert doc_auth(unsigned, at).code == "UNSIGNED"  # this key has a client secret
    assert doc_auth({**unsigned, "x-api-key": "plain-key"}, at).ok  # this one has none
    assert doc_auth({**unsigned, "x-api-key": "unknown"}, at).code == "UNSIGNED"
    partial = DOC_HEADERS["signature-input"].replace(' "x-api-key")', ")")
    assert doc_auth({**DOC_HEADERS, "signature-input": partial}, at).code == "PRECONDITION"


def test_api_keys_parse_and_never_print() -> None:
    keys = ApiKeys.parse(f" a , b:{DOC_SECRET} ,")
    assert keys is not None and len(keys) == 2
    assert keys.secret("a") == b"" and keys.secret("b") == base64.b64decode(DOC_SECRET)
    assert keys.secret("c") is None
    assert DOC_SECRET not in repr(keys) and "a" not in str(keys).replace("ApiKeys", "")
    assert ApiKeys.parse(" , ") is None
    for bad in ("a:!!!", "a:", "a b"):
        with pytest.raises(ValueError, match=r"KEY|base64|empty"):
            ApiKeys.parse(bad)


def test_nonce_cache_forgets_and_is_bounded() -> None:
    cache = NonceCache(limit=2)
    assert cache.admit("n1", 0.0) is None and cache.admit("n2", 0.0) is None
    assert cache.admit("n3", 0.0) is not None  # full
    assert cache.admit("n3", 100.0) is None and len(cache) == 1  # the old ones expired


def test_structured_fields_round_trip() -> None:
    parsed = sfv.parse_dictionary('a=("x" "y";k="v");n=1;t=tok;b=:AAE=:;d=1.5, c=?0, e')
    a = parsed["a"]
    assert isinstance(a, sfv.InnerList)
    assert sfv.serialize_inner_list(a) == '("x" "y";k="v");n=1;t=tok;b=:AAE=:;d=1.5'
    assert parsed["c"] == sfv.Item(False) and parsed["e"] == sfv.Item(True)
    for bad in ("a=", "a=(", 'a="x', "a=1,", "A=1", "a=?2", "a=:!:", "a=1.2345"):
        with pytest.raises(sfv.SfvError):
            sfv.parse_dictionary(bad)


def test_the_client_side_signs_the_documentation_example_byte_for_byte() -> None:
    """What `asr-worker stream --protocol audiohook` sends: the AudioHook documentation's signed
    request, rebuilt from its key, secret, headers, nonce and times."""
    headers = upgrade_headers(
        DOC_KEY,
        session_id=DOC_HEADERS["audiohook-session-id"],
        organization_id=DOC_HEADERS["audiohook-organization-id"],
        correlation_id=DOC_HEADERS["audiohook-correlation-id"],
        secret=base64.b64decode(DOC_SECRET),
        authority=DOC_HEADERS["host"],
        target=DOC_TARGET,
        created=DOC_CREATED,
        expires=3282026430,
        nonce="VGhpc0lzQVVuaXF1ZU5vbmNl",
    )
    assert headers["Signature-Input"] == DOC_HEADERS["signature-input"]
    assert headers["Signature"] == DOC_HEADERS["signature"]
