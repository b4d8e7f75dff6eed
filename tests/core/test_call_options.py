"""A call's options, read the same way from every route's shape: a query, a platform's custom
parameters, a JSON object. `language` (Deepgram's codes, or `multi`), `callback` (an http or
https URL) and `callback_finals` are checked here, once, with one wording of the errors."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from asr_worker.core.call_options import ENDPOINTING_OFF, MULTI, NO_OPTIONS, CallOptions, FormatOptions
from asr_worker.errors import ParamError


def test_the_options_come_the_same_from_a_query_parameters_and_fields() -> None:
    query = MultiDict(
        [("keyterm", "Acme"), ("language", "es-419"), ("callback", "https://crm.example/hook?t=1")]
    )
    query.add("callback_finals", "true")
    expected = CallOptions(
        keyterms=("Acme",), language="es-419", callback="https://crm.example/hook?t=1", callback_finals=True
    )
    assert CallOptions.from_query(query) == expected
    assert CallOptions.from_parameters(dict(query)) == expected
    fields: dict[str, object] = {
        "keyterms": ["Acme"],
        "language": "es-419",
        "callback": "https://crm.example/hook?t=1",
        "callback_finals": True,
    }
    assert CallOptions.from_fields(fields, "customConfig") == expected


def test_none_given_is_no_options_and_multi_is_one_spelling() -> None:
    assert CallOptions.from_query({}) == NO_OPTIONS
    assert CallOptions.from_query({"language": " ", "callback": ""}) == NO_OPTIONS
    assert CallOptions.from_query({"language": "MULTI"}).language == MULTI


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"language": "english please"}, "customConfig.language must be a language code"),
        ({"language": 7}, "customConfig.language must be a string"),
        ({"callback": "ftp://example.com/x"}, "customConfig.callback must be an http:// or https:// URL"),
        ({"callback": "https://"}, "customConfig.callback must be an http:// or https:// URL"),
        ({"callback": "http://exa mple.com/"}, "customConfig.callback must be an http:// or https:// URL"),
        ({"callback": "https://x.example/" + "a" * 2048}, "at most 2048 characters"),
        ({"callback_finals": "maybe"}, "customConfig.callback_finals must be true or false"),
        ({"callback_finals": 1}, "customConfig.callback_finals must be true or false"),
    ],
)
def test_bad_options_are_refused_naming_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ParamError, match=message):
        CallOptions.from_fields(fields, "customConfig")


def test_a_refused_callback_is_never_repeated_in_the_error() -> None:
    """A callback URL may carry a token; the error says what is wrong without it."""
    with pytest.raises(ParamError) as refused:
        CallOptions.from_query({"callback": "gopher://user:s3cret-token@example.com/"})
    assert "s3cret" not in str(refused.value)


def test_endpointing_utterance_end_and_formatting_come_the_same_from_every_shape() -> None:
    query = MultiDict(
        [
            ("endpointing", "250"),
            ("utterance_end_ms", "1500"),
            ("numerals", "true"),
            ("punctuate", "false"),
            ("search", "refund"),
            ("search", "cancel my order"),
            ("replace", "acme:Acme"),
            ("replace", "um:"),
        ]
    )
    expected = CallOptions(
        endpointing_ms=250,
        utterance_end_ms=1500,
        format=FormatOptions(
            numerals=True,
            punctuate=False,
            search=("refund", "cancel my order"),
            replace=(("acme", "Acme"), ("um", "")),
        ),
    )
    assert CallOptions.from_query(query) == expected
    parameters = {
        "endpointing": "250",
        "utterance_end_ms": "1500",
        "numerals": "true",
        "punctuate": "false",
        "search": "refund,cancel my order",
        "replace": "acme:Acme,um:",
    }
    assert CallOptions.from_parameters(parameters) == expected
    fields: dict[str, object] = {
        "endpointing": 250,
        "utterance_end_ms": 1500,
        "numerals": True,
        "punctuate": False,
        "search": ["refund", "cancel my order"],
        "replace": {"acme": "Acme", "um": ""},
    }
    assert CallOptions.from_fields(fields, "customConfig") == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("false", ENDPOINTING_OFF), ("true", None), ("", None), ("0", 0), ("10", 10)]
)
def test_endpointing_is_milliseconds_or_false(value: str, expected: int | None) -> None:
    assert CallOptions.from_query({"endpointing": value}).endpointing_ms == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"endpointing": "soon"}, "endpointing must be a number of milliseconds, or false"),
        ({"endpointing": "60001"}, "endpointing must be from 0 to 60000"),
        ({"utterance_end_ms": "500"}, "utterance_end_ms must be from 1000 to 5000"),
        ({"numerals": "maybe"}, "numerals must be true or false"),
        ({"replace": "nocolon"}, "replace must be find:replacement"),
        ({"replace": ":x"}, "replace must be find:replacement"),
        ({"search": "x" * 101}, "a search term is at most 100 characters"),
    ],
)
def test_bad_formatting_and_endpointing_options_are_refused(query: dict[str, str], message: str) -> None:
    with pytest.raises(ParamError, match=message):
        CallOptions.from_query(query)
