"""Flux's protocol as data (`deepgram/flux.py`): the query this server honours or refuses with a
reason, the client messages, and every server message checked against the official SDK's own
types (deepgram-sdk 7.x `listen.v2`, pydantic, validated strictly)."""

from __future__ import annotations

import json

import pytest
from deepgram.listen.v2.types import (
    ListenV2ConfigureFailure,
    ListenV2ConfigureSuccess,
    ListenV2Connected,
    ListenV2FatalError,
    ListenV2TurnInfo,
    ListenV2Warning,
)
from hypothesis import given
from hypothesis import strategies as st

from asr_worker.core.provider_events import Word
from asr_worker.deepgram import flux
from asr_worker.deepgram.flux import FluxParams, Thresholds, TurnInfo
from asr_worker.errors import ParamError, ProtocolError, ProtocolViolation

# What the SDK's `listen.v2.connect(model=..., encoding=..., sample_rate=..., eot_threshold=...,
# eager_eot_threshold=..., eot_timeout_ms=..., keyterm=[...], mip_opt_out=..., tag=...)` sends
# (values as it encodes them), and what Pipecat's and LiveKit's Flux services send by default.
SDK_QUERY = [
    ("model", "flux-general-en"),
    ("encoding", "linear16"),
    ("sample_rate", "16000"),
    ("eager_eot_threshold", "0.5"),
    ("eot_threshold", "0.8"),
    ("eot_timeout_ms", "3000"),
    ("keyterm", "Dashwood"),
    ("keyterm", "Barton"),
    ("mip_opt_out", "true"),
    ("tag", "flux-test"),
]
PIPECAT_DEFAULT = [("model", "flux-general-en"), ("sample_rate", "16000"), ("encoding", "linear16")]
LIVEKIT_DEFAULT = [*PIPECAT_DEFAULT, ("mip_opt_out", "false")]


def test_the_sdks_full_query_is_honoured() -> None:
    params = FluxParams.from_query(SDK_QUERY)
    assert params == FluxParams(
        encoding="linear16",
        sample_rate=16000,
        thresholds=Thresholds(eot_threshold=0.8, eager_eot_threshold=0.5, eot_timeout_ms=3000),
        keyterms=("Dashwood", "Barton"),
        mip_opt_out=True,
        tags=("flux-test",),
    )
    assert FluxParams.from_query(params.query()) == params


@pytest.mark.parametrize("query", [PIPECAT_DEFAULT, LIVEKIT_DEFAULT])
def test_the_voice_agent_frameworks_defaults_are_honoured(query: list[tuple[str, str]]) -> None:
    params = FluxParams.from_query(query)
    assert params.thresholds == Thresholds() and params.sample_rate == 16000


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"model": None}, "model is required"),
        ({"model": "nova-3"}, "model must be flux-general-en"),
        ({"model": "flux-general-multi"}, "flux-general-multi is not served here"),
        ({"encoding": "opus"}, "encoding must be one of linear16, mulaw, alaw"),
        ({"encoding": None}, "encoding must be"),
        ({"sample_rate": None}, "sample_rate is required"),
        ({"sample_rate": "4000"}, "sample_rate must be from 8000 to 48000"),
        ({"eot_threshold": "0.4"}, "eot_threshold must be from 0.5 to 1"),
        ({"eot_threshold": "nan"}, "eot_threshold must be a number"),
        ({"eager_eot_threshold": "0.95"}, "eager_eot_threshold must be from 0.3 to 0.9"),
        ({"eager_eot_threshold": "0.8", "eot_threshold": "0.7"}, "must not be above eot_threshold"),
        ({"eot_timeout_ms": "100"}, "eot_timeout_ms must be from 500 to 60000"),
        ({"eot_timeout_ms": "1.5"}, "eot_timeout_ms must be a whole number"),
        ({"numerals": "true"}, "numerals=true is not honoured"),
        ({"profanity_filter": "true"}, "profanity_filter=true is not honoured"),
        ({"redact": "numbers"}, "redact is not honoured"),
        ({"language_hint": "en"}, "language_hint needs flux-general-multi"),
        ({"mip_opt_out": "maybe"}, "mip_opt_out must be true or false"),
        ({"endpointing": "300"}, "'endpointing' is not a /v2/listen parameter"),
        ({"tag": "x" * 129}, "tag: at most"),
    ],
)
def test_what_is_not_honoured_is_refused_with_its_reason(change: dict[str, str | None], reason: str) -> None:
    query = dict(PIPECAT_DEFAULT)
    for key, value in change.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    with pytest.raises(ParamError, match=reason.replace("(", r"\(")):
        FluxParams.from_query(query.items())


def test_asking_for_what_is_done_anyway_is_taken_and_a_parameter_twice_is_refused() -> None:
    assert FluxParams.from_query([*PIPECAT_DEFAULT, ("numerals", "false"), ("profanity_filter", "false")])
    with pytest.raises(ParamError, match="sample_rate is given more than once"):
        FluxParams.from_query([*PIPECAT_DEFAULT, ("sample_rate", "8000")])


def test_client_messages() -> None:
    assert flux.parse_client_message('{"type": "CloseStream"}') == flux.CloseStream()
    assert flux.parse_client_message('{"type": "ForceEndTurn"}') == flux.ForceEndTurn()
    assert flux.parse_client_message('{"type": "KeepAlive"}') == flux.KeepAlive()
    configure = flux.parse_client_message(
        json.dumps(
            {
                "type": "Configure",
                "thresholds": {"eot_threshold": 0.8, "eot_timeout_ms": 5000},
                "keyterms": ["a"],
            }
        )
    )
    assert configure == flux.Configure(eot_threshold=0.8, eot_timeout_ms=5000, keyterms=("a",))
    assert isinstance(configure, flux.Configure)
    assert configure.thresholds(Thresholds(eager_eot_threshold=0.4)) == Thresholds(0.8, 0.4, 5000)
    assert flux.Configure(language_hints=("de",)).unsupported() == (
        "language_hints need flux-general-multi, which this server does not serve"
    )
    with pytest.raises(ParamError, match="must not be above"):
        flux.Configure(eager_eot_threshold=0.9).thresholds(Thresholds())


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", flux.UNPARSABLE_CLIENT_MESSAGE),
        ('["CloseStream"]', flux.UNPARSABLE_CLIENT_MESSAGE),
        ('{"type": "Finalize"}', flux.UNPARSABLE_CLIENT_MESSAGE),  # v1's, not Flux's
        ('{"type": "Configure", "thresholds": {"eot_threshold": "high"}}', flux.INVALID_CONFIGURE),
        ('{"type": "Configure", "thresholds": {"eot": 0.8}}', flux.INVALID_CONFIGURE),
        ('{"type": "Configure", "endpointing": 300}', flux.INVALID_CONFIGURE),
        ('{"type": "Configure", "keyterms": [1, 2]}', flux.INVALID_CONFIGURE),
        ('{"type": "Configure", "numerals": "yes"}', flux.INVALID_CONFIGURE),
    ],
)
def test_bad_client_messages_say_what_is_wrong(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as bad:
        flux.parse_client_message(text)
    assert bad.value.code == code and bad.value.message


WORDS = (Word("hello", 0.5, 0.8, 0.91, "Hello"), Word("there", 0.9, 1.2, 0.87, "there."))


def test_every_server_message_is_what_the_official_sdk_types_say() -> None:
    rid = "5f0c3d2e-8b1a-4c1f-9a41-3f6b5f1d2e7a"
    end = TurnInfo(flux.END_OF_TURN, 3, 0.5, 1.7, WORDS, 0.7123, flux.TRIGGER_MODEL)
    info = ListenV2TurnInfo.model_validate(flux.turn_info_message(end, request_id=rid, sequence_id=9))
    assert (info.event, info.turn_index, info.transcript, info.trigger) == (
        "EndOfTurn",
        3,
        "Hello there.",
        "model",
    )
    assert [(x.word, x.confidence, x.start, x.end) for x in info.words] == [
        ("Hello", 0.91, 0.5, 0.8),
        ("there.", 0.87, 0.9, 1.2),
    ]
    assert (info.audio_window_start, info.audio_window_end, info.end_of_turn_confidence) == (0.5, 1.7, 0.7123)
    update = flux.turn_info_message(
        TurnInfo(flux.UPDATE, 0, 0.0, 0.25, (), 0.0), request_id=rid, sequence_id=1
    )
    assert "trigger" not in update and ListenV2TurnInfo.model_validate(update).words == []
    assert ListenV2Connected.model_validate(flux.connected_message(rid, 0)).sequence_id == 0
    success = ListenV2ConfigureSuccess.model_validate(
        flux.configure_success_message(
            request_id=rid, sequence_id=4, thresholds=Thresholds(0.8, 0.5, 3000), keyterms=("Barton",)
        )
    )
    assert success.thresholds.eot_threshold == 0.8 and success.thresholds.eager_eot_threshold == 0.5
    assert success.keyterms == ["Barton"]
    failure = flux.configure_failure_message(request_id=rid, sequence_id=5, code="X", description="why")
    assert ListenV2ConfigureFailure.model_validate(failure).description == "why"
    warning = flux.warning_message(request_id=rid, sequence_id=6, code="W", description="what")
    assert ListenV2Warning.model_validate(warning).code == "W"
    error = flux.error_message(sequence_id=7, code="E", description="fatal")
    assert ListenV2FatalError.model_validate(error).code == "E"


def test_server_messages_read_back() -> None:
    rid = "r"
    info = TurnInfo(flux.EAGER_END_OF_TURN, 1, 0.5, 1.4, WORDS, 0.55)
    text = flux.dumps(flux.turn_info_message(info, request_id=rid, sequence_id=3))
    assert flux.parse_server_message(text) == flux.TurnMessage(
        3,
        TurnInfo(
            flux.EAGER_END_OF_TURN,
            1,
            0.5,
            1.4,
            tuple(
                Word(w.punctuated_word or "", w.start, w.end, w.confidence, w.punctuated_word) for w in WORDS
            ),
            0.55,
        ),
    )
    assert flux.parse_server_message(flux.dumps(flux.connected_message(rid, 0))) == flux.Connected(rid, 0)
    ok = flux.configure_success_message(request_id=rid, sequence_id=2, thresholds=Thresholds(), keyterms=())
    assert flux.parse_server_message(flux.dumps(ok)) == flux.ConfigureSuccess(2, Thresholds(), ())
    warning = flux.dumps(flux.warning_message(request_id=rid, sequence_id=4, code="C", description="d"))
    assert flux.parse_server_message(warning) == flux.Notice("Warning", 4, "C", "d")


@given(
    st.one_of(
        st.binary(max_size=40), st.text(max_size=80), st.dictionaries(st.text(max_size=12), st.integers())
    )
)
def test_a_server_message_is_either_read_or_refused_as_not_protocol(
    value: bytes | str | dict[str, int],
) -> None:
    text = json.dumps(value) if isinstance(value, dict) else value
    try:
        flux.parse_server_message(text)
    except ProtocolViolation as exc:
        assert exc.kind in {"binary", "not_json", "not_object", "bad_fields", "unknown_type"}


@given(st.text(max_size=200))
def test_a_client_message_is_either_read_or_refused_with_a_code(text: str) -> None:
    try:
        flux.parse_client_message(text)
    except ProtocolError as exc:
        assert exc.code in {flux.UNPARSABLE_CLIENT_MESSAGE, flux.INVALID_CONFIGURE}
