"""Fuzzing the media forks' parsers with near-valid messages: each documented message
(tests/transports/fixtures/) with fields dropped, retyped, made huge or cut and spliced, and
AudioSocket's binary messages of every kind. Every input is a typed value or the parser's own
error (ProtocolError, or BadRequest for a call option) with a short reason."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asr_worker.core.audio import AudioFormat
from asr_worker.errors import BadRequest
from asr_worker.transports.forks import (
    asterisk_messages,
    audiosocket_messages,
    freeswitch_messages,
    jambonz_messages,
    jambonz_stt_messages,
    plivo_messages,
    signalwire_messages,
    telnyx_messages,
    vonage_messages,
)
from asr_worker.transports.forks.messages import ForkStart, Hangup, Keypress, Notice
from asr_worker.transports.telephony_messages import (
    DTMF_KEYS,
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    Message,
    Start,
    Stop,
)
from tests.support.fuzz import bounded, examples, near_valid
from tests.support.telephony import fixture

CODES = {
    "bad_message",
    "unknown_message",
    "bad_audio",
    "bad_format",
    "too_large",
    "platform_error",
    "bad_request",
}

TWILIO_LIKE: dict[str, tuple[Callable[[str], Message], tuple[str, ...]]] = {
    "telnyx": (telnyx_messages.parse, ("connected", "start", "media", "dtmf", "stop", "error")),
    "plivo": (plivo_messages.parse, ("start", "media")),
    "signalwire": (signalwire_messages.parse, ("connected", "start", "media", "dtmf", "mark", "stop")),
}


@pytest.mark.parametrize("platform", list(TWILIO_LIKE))
@examples(120)
@given(data=st.data())
def test_a_twilio_like_platforms_near_valid_message_is_a_message_or_a_short_error(
    platform: str, data: st.DataObject
) -> None:
    parse, names = TWILIO_LIKE[platform]
    raw = data.draw(st.sampled_from(names).flatmap(lambda name: near_valid(fixture(platform, name))))
    try:
        message = parse(raw)
    except BadRequest as exc:
        assert exc.code in CODES
        bounded(exc.message)
        return
    assert isinstance(message, Connected | Start | Media | Dtmf | Mark | Clear | Stop)
    if isinstance(message, Start):
        assert isinstance(message.fmt, AudioFormat) and message.fmt.channels == 1
        assert 8000 <= message.fmt.sample_rate <= 48000
        assert set(message.tracks) <= {"inbound", "outbound"}
        assert 0 < len(message.call_sid) <= 256
        assert all(isinstance(v, str) and len(v) <= 512 for v in message.custom_parameters.values())
    elif isinstance(message, Media):
        assert message.track in ("inbound", "outbound") and len(message.payload) <= 96_000
    elif isinstance(message, Dtmf):
        assert len(message.digit) == 1 and message.digit in DTMF_KEYS


ForkParser = Callable[[str | None, Mapping[str, str]], ForkStart]
FORKS: dict[str, tuple[ForkParser, dict[str, object]]] = {
    "freeswitch": (
        freeswitch_messages.parse_start,
        {"uuid": "fs-1", "sampleRate": 16000, "mixType": "stereo"},
    ),
    "jambonz": (jambonz_messages.parse_start, fixture("jambonz", "listen_metadata")),
    "vonage": (vonage_messages.parse_start, {**fixture("vonage", "connected"), "interaction_id": "v-1"}),
    "asterisk": (
        asterisk_messages.parse_start,
        json.loads(
            asterisk_messages.media_start("1.2", "slin16", as_json=True, variables={"keyterms": "a,b"})
        ),
    ),
}


@pytest.mark.parametrize("platform", list(FORKS))
@examples(120)
@given(data=st.data())
def test_a_forks_near_valid_metadata_is_a_start_or_a_short_error(platform: str, data: st.DataObject) -> None:
    parse, valid = FORKS[platform]
    raw = data.draw(near_valid(valid))
    query = data.draw(
        st.dictionaries(
            st.sampled_from(["interaction_id", "sample_rate", "mix", "tenant_id"]), st.text(max_size=8)
        )
    )
    try:
        start = parse(raw, query)
    except BadRequest as exc:
        assert exc.code in CODES
        bounded(exc.message)
        return
    assert isinstance(start.fmt, AudioFormat) and 8000 <= start.fmt.sample_rate <= 48000
    assert start.fmt.channels == len(start.legs) in (1, 2)
    assert isinstance(start.interaction_id, str) and start.interaction_id


@pytest.mark.parametrize(
    "control",
    [
        freeswitch_messages.parse_control,
        jambonz_messages.parse_control,
        vonage_messages.parse_control,
        asterisk_messages.parse_control,
    ],
)
@examples(100)
@given(
    text=st.one_of(
        st.text(max_size=300), st.sampled_from(['{"event": "dtmf", "dtmf": "5"}', "DTMF_END digit:#"])
    )
)
def test_a_later_text_frame_is_a_control_or_a_short_error(
    control: Callable[[str], object], text: str
) -> None:
    try:
        result = control(text)
    except BadRequest as exc:
        assert exc.code in CODES
        bounded(exc.message)
        return
    assert isinstance(result, Keypress | Hangup | Notice)
    if isinstance(result, Keypress):
        assert result.digit in DTMF_KEYS


@examples(120)
@given(data=st.data())
def test_jambonz_speech_vendor_starts_are_read_or_refused_shortly(data: st.DataObject) -> None:
    raw = data.draw(near_valid(fixture("jambonz", "stt_start")))
    try:
        start = jambonz_stt_messages.parse_start(raw, {})
    except BadRequest as exc:
        assert exc.code in CODES
        bounded(exc.message)
        return
    assert 8000 <= start.fmt.sample_rate <= 48000 and start.fmt.channels == 1
    assert len(start.options.keyterms) <= 100


@examples(200)
@given(kind=st.integers(0, 255), payload=st.binary(max_size=64))
def test_every_audiosocket_kind_is_a_message_or_a_short_error(kind: int, payload: bytes) -> None:
    try:
        message = audiosocket_messages.message(kind, payload)
    except BadRequest as exc:
        assert exc.code in CODES
        bounded(exc.message)
        return
    if isinstance(message, audiosocket_messages.Audio):
        assert message.sample_rate <= 48000 and message.pcm == payload
    elif isinstance(message, audiosocket_messages.CallId):
        assert len(message.interaction_id) == 36
    elif isinstance(message, audiosocket_messages.Digit):
        assert message.digit in DTMF_KEYS
