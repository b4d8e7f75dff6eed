"""The Twilio and Exotel parsers: the platforms' documented messages, and hostile input that
must give a clear ProtocolError (never another exception)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.errors import ProtocolError
from asr_worker.transports import exotel_messages, twilio_messages
from asr_worker.transports.telephony_messages import Clear, Connected, Dtmf, Mark, Media, Message, Start, Stop
from tests.support.telephony import fixture, fixture_text

Parser = Callable[[str], Message]


# --- Twilio's documented messages ----------------------------------------------------------------


def test_twilio_connected_and_start() -> None:
    assert twilio_messages.parse(fixture_text("twilio", "connected")) == Connected("Call", "1.0.0")
    start = twilio_messages.parse(fixture_text("twilio", "start"))
    assert isinstance(start, Start)
    assert start.stream_sid == "MZ18ad3ab5a668481ce02b83e7395059f0"
    assert start.call_sid == "CA7d0bd4a9e1b7c04e7a0d1c4f2b8a5e63"
    assert start.account_sid == "AC25e16e9a716a4a1786a7c83f58e30482"
    assert start.tracks == ("inbound", "outbound")
    assert start.fmt == AudioFormat(Encoding.MULAW, 8000, 1)
    assert start.custom_parameters == {
        "interaction_id": "twilio-call-1",
        "tenant_id": "acme",
        "FirstName": "Jane",
    }


def test_twilio_media_decodes_its_payload() -> None:
    body = fixture("twilio", "media_inbound")
    media = twilio_messages.parse(json.dumps(body))
    assert isinstance(media, Media)
    assert media.track == "inbound" and media.chunk == 1 and media.timestamp_ms == 5
    raw = body["media"]
    assert isinstance(raw, dict)
    assert media.payload == base64.b64decode(str(raw["payload"])) and len(media.payload) == 160
    outbound = twilio_messages.parse(fixture_text("twilio", "media_outbound"))
    assert isinstance(outbound, Media) and outbound.track == "outbound" and outbound.payload == b"\xff" * 160


def test_twilio_control_messages() -> None:
    assert twilio_messages.parse(fixture_text("twilio", "dtmf")) == Dtmf("1", "inbound_track")
    assert twilio_messages.parse(fixture_text("twilio", "mark")) == Mark("my label")
    assert twilio_messages.parse(fixture_text("twilio", "stop")) == Stop(None)


def test_twilio_start_with_one_track_and_no_custom_parameters() -> None:
    body = fixture("twilio", "start")
    start_body = body["start"]
    assert isinstance(start_body, dict)
    start_body["tracks"] = ["inbound"]
    del start_body["customParameters"]
    start = twilio_messages.parse(json.dumps(body))
    assert isinstance(start, Start) and start.tracks == ("inbound",) and start.custom_parameters == {}


# --- Exotel's documented messages ----------------------------------------------------------------


def test_exotel_messages() -> None:
    assert exotel_messages.parse(fixture_text("exotel", "connected")) == Connected()
    start = exotel_messages.parse(fixture_text("exotel", "start"))
    assert isinstance(start, Start)
    assert start.stream_sid == "a8e0c7e4b5f5d3a1e9c2b6d4f7a0c3e5"
    assert start.call_sid == "3f1c9d2b7e8a4f6c0b5d1e2a9c8f7b6a"
    assert start.fmt == AudioFormat(Encoding.LINEAR16, 8000, 1) and start.tracks == ("inbound",)
    assert start.custom_parameters == {"interaction_id": "exotel-call-1"}
    media = exotel_messages.parse(fixture_text("exotel", "media"))
    assert isinstance(media, Media)
    assert media.chunk == 2 and media.timestamp_ms == 200 and len(media.payload) == 1600  # 100 ms
    assert exotel_messages.parse(fixture_text("exotel", "dtmf")) == Dtmf("5")
    assert exotel_messages.parse(_edit("exotel", "dtmf", "dtmf.digit", "d")) == Dtmf("D")  # A-D, as keypads
    assert exotel_messages.parse(fixture_text("exotel", "mark")) == Mark("greeting-done")
    assert exotel_messages.parse(fixture_text("exotel", "clear")) == Clear()
    assert exotel_messages.parse(fixture_text("exotel", "stop")) == Stop("callended")


@pytest.mark.parametrize("rate", ["8000", "16000", "24000", 16000])
def test_exotel_sample_rates(rate: object) -> None:
    body = fixture("exotel", "start")
    start_body = body["start"]
    assert isinstance(start_body, dict)
    start_body["media_format"] = {"encoding": "audio/x-raw", "sample_rate": rate, "bit_rate": "16"}
    start = exotel_messages.parse(json.dumps(body))
    assert isinstance(start, Start) and start.fmt.sample_rate == int(str(rate))


# --- hostile input ---------------------------------------------------------------------------------


def _edit(platform: str, name: str, path: str, value: object) -> str:
    """The fixture with one field changed (`value` Ellipsis deletes it)."""
    body = fixture(platform, name)
    *parents, leaf = path.split(".")
    node: dict[str, object] = body
    for key in parents:
        child = node[key]
        assert isinstance(child, dict)
        node = child
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return json.dumps(body)


HOSTILE_TWILIO = [
    ("", "bad_message", "not JSON"),
    ("{not json", "bad_message", "not JSON"),
    ("[1, 2]", "bad_message", "JSON object, not list"),
    ('"media"', "bad_message", "JSON object, not str"),
    ("{}", "bad_message", "string `event`"),
    ('{"event": 7}', "bad_message", "string `event`"),
    ('{"event": "dance"}', "unknown_message", "unknown event 'dance'"),
    ("[" * 100_000 + "]" * 100_000, "too_large", "over the 65536 limit"),
    ("[" * 20_000 + "]" * 20_000, "bad_message", "not JSON"),
    (_edit("twilio", "start", "start.callSid", ...), "bad_message", "start needs a string `callSid`"),
    (_edit("twilio", "start", "start.streamSid", 12), "bad_message", "start needs a string `streamSid`"),
    (
        _edit("twilio", "start", "start.mediaFormat", ...),
        "bad_message",
        "start needs an object `mediaFormat`",
    ),
    (_edit("twilio", "start", "start.mediaFormat.encoding", "audio/opus"), "bad_format", "audio/opus"),
    (_edit("twilio", "start", "start.mediaFormat.sampleRate", 3000), "bad_format", "sample_rate 3000"),
    (_edit("twilio", "start", "start.mediaFormat.sampleRate", "fast"), "bad_message", "whole number"),
    (_edit("twilio", "start", "start.mediaFormat.channels", 2), "bad_format", "channels must be 1"),
    (_edit("twilio", "start", "start.tracks", ["inbound", "sideways"]), "bad_message", "tracks"),
    (_edit("twilio", "start", "start.tracks", []), "bad_message", "tracks"),
    (_edit("twilio", "start", "start.tracks", "inbound"), "bad_message", "tracks"),
    (_edit("twilio", "start", "start.customParameters", ["x"]), "bad_message", "must be an object"),
    (_edit("twilio", "start", "start.customParameters", {"a": {"b": 1}}), "bad_message", "must be a string"),
    (_edit("twilio", "start", "start", None), "bad_message", "start needs an object `start`"),
    (_edit("twilio", "media_inbound", "media", ...), "bad_message", "media needs an object `media`"),
    (_edit("twilio", "media_inbound", "media.payload", ...), "bad_audio", "base64 string `payload`"),
    (_edit("twilio", "media_inbound", "media.payload", "!!not base64!!"), "bad_audio", "not valid base64"),
    (_edit("twilio", "media_inbound", "media.payload", "QUJ"), "bad_audio", "not valid base64"),
    (_edit("twilio", "media_inbound", "media.payload", "A" * 30_000), "too_large", "over 16000 bytes"),
    (_edit("twilio", "media_inbound", "media.track", "sideways"), "bad_message", "unknown track"),
    (_edit("twilio", "media_inbound", "media.timestamp", "-5"), "bad_message", "whole number"),
    (_edit("twilio", "media_inbound", "media.timestamp", "9" * 40), "bad_message", "whole number"),
    (_edit("twilio", "media_inbound", "media.chunk", True), "bad_message", "whole number"),
    (_edit("twilio", "mark", "mark.name", ...), "bad_message", "mark needs a string `name`"),
    (_edit("twilio", "dtmf", "dtmf", "1"), "bad_message", "dtmf needs an object `dtmf`"),
    (_edit("twilio", "dtmf", "dtmf.digit", "12"), "bad_message", "`digit` must be one of"),
    (_edit("twilio", "dtmf", "dtmf.digit", "x"), "bad_message", "`digit` must be one of"),
    (_edit("twilio", "dtmf", "dtmf.digit", 5), "bad_message", "dtmf needs a string `digit`"),
]


@pytest.mark.parametrize(("text", "code", "reason"), HOSTILE_TWILIO)
def test_hostile_twilio_input_gets_a_clear_parse_error(text: str, code: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        twilio_messages.parse(text)
    assert caught.value.code == code
    assert reason in caught.value.message
    assert len(caught.value.message) < 200  # never echoes the input back whole


HOSTILE_EXOTEL = [
    ('{"event": "start"}', "bad_message", "start needs an object `start`"),
    (_edit("exotel", "start", "start.call_sid", ...), "bad_message", "start needs a string `call_sid`"),
    (_edit("exotel", "start", "start.media_format", ...), "bad_message", "object `media_format`"),
    (_edit("exotel", "start", "start.media_format.encoding", "audio/x-flac"), "bad_format", "audio/x-flac"),
    (_edit("exotel", "start", "start.media_format.bit_rate", "8"), "bad_format", "16-bit"),
    (_edit("exotel", "start", "start.media_format.sample_rate", "44100"), "bad_format", "44100"),
    (_edit("exotel", "start", "start.media_format.sample_rate", ...), "bad_message", "sample_rate"),
    (_edit("exotel", "media", "media.payload", "%%%"), "bad_audio", "not valid base64"),
    (_edit("exotel", "media", "media.payload", 42), "bad_audio", "base64 string `payload`"),
    (_edit("exotel", "media", "media.payload", "A" * 200_000), "too_large", "over 96000 bytes"),
    (_edit("exotel", "media", "media.chunk", "two"), "bad_message", "whole number"),
    ('{"event": "hangup"}', "unknown_message", "unknown event 'hangup'"),
    ("x" * 300_000, "too_large", "limit"),
]


@pytest.mark.parametrize(("text", "code", "reason"), HOSTILE_EXOTEL)
def test_hostile_exotel_input_gets_a_clear_parse_error(text: str, code: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        exotel_messages.parse(text)
    assert caught.value.code == code
    assert reason in caught.value.message


def test_an_exotel_start_without_the_inner_stream_sid_uses_the_outer_one() -> None:
    start = exotel_messages.parse(_edit("exotel", "start", "start.stream_sid", ...))
    assert isinstance(start, Start) and start.stream_sid == "a8e0c7e4b5f5d3a1e9c2b6d4f7a0c3e5"


# --- properties: whatever arrives, a message or a ProtocolError ---------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
EVENTS = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "clear", "stop", "other"])


@st.composite
def message_like(draw: st.DrawFn) -> str:
    """Objects that look like telephony messages, with fields of every wrong type."""
    body = draw(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=4))
    body["event"] = draw(EVENTS)
    for key in ("start", "media", "stop", "dtmf", "mark"):
        if draw(st.booleans()):
            body[key] = draw(
                st.dictionaries(
                    st.sampled_from(
                        [
                            "streamSid",
                            "callSid",
                            "tracks",
                            "mediaFormat",
                            "payload",
                            "track",
                            "timestamp",
                            "chunk",
                            "stream_sid",
                            "call_sid",
                            "media_format",
                            "name",
                            "digit",
                            "customParameters",
                        ]
                    ),
                    JSON_VALUES,
                    max_size=6,
                )
            )
    return json.dumps(body)


@pytest.mark.parametrize("parse", [twilio_messages.parse, exotel_messages.parse])
@settings(max_examples=150, deadline=None)
@given(raw=st.text(max_size=200) | message_like())
def test_any_text_parses_or_gives_a_parse_error(parse: Parser, raw: str) -> None:
    error: ProtocolError | None = None
    try:
        message: Message | None = parse(raw)
    except ProtocolError as exc:
        message, error = None, exc
    if error is not None:
        assert error.code in {"bad_message", "unknown_message", "bad_audio", "bad_format", "too_large"}
        assert error.message
    else:
        assert isinstance(message, Connected | Start | Media | Dtmf | Mark | Clear | Stop)


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=400), chunk=st.integers(0, 10**9), timestamp=st.integers(0, 10**9))
def test_twilio_media_round_trips_any_payload(payload: bytes, chunk: int, timestamp: int) -> None:
    text = json.dumps(
        {
            "event": "media",
            "media": {
                "track": "outbound",
                "chunk": str(chunk),
                "timestamp": str(timestamp),
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )
    assert twilio_messages.parse(text) == Media(payload, "outbound", chunk, timestamp)


# --- the builders: what `asr-worker stream` sends, shaped as the documented messages ---------------


def _shape(value: object) -> object:
    """A message's structure: its keys, nested, without the values (custom parameters are the
    deployment's own)."""
    if isinstance(value, dict):
        return {
            key: "parameters" if key in ("customParameters", "custom_parameters") else _shape(inner)
            for key, inner in value.items()
        }
    return type(value).__name__


def test_twilio_builders_write_the_documented_messages_and_parse_back() -> None:
    sid, call, account = "MZ" + "1" * 32, "CA" + "2" * 32, "AC" + "3" * 32
    start = twilio_messages.start_message(
        sid, call, account, ("inbound", "outbound"), {"interaction_id": "c-1"}
    )
    assert _shape(json.loads(start)) == _shape(fixture("twilio", "start"))
    assert twilio_messages.parse(start) == Start(
        sid,
        call,
        AudioFormat(Encoding.MULAW, 8000, 1),
        ("inbound", "outbound"),
        account,
        {"interaction_id": "c-1"},
    )
    media = twilio_messages.media_message(sid, 3, "outbound", 1, 20, b"\xff" * 160)
    assert _shape(json.loads(media)) == _shape(fixture("twilio", "media_outbound"))
    assert twilio_messages.parse(media) == Media(b"\xff" * 160, "outbound", 1, 20)
    stop = twilio_messages.stop_message(sid, call, account, 4)
    assert _shape(json.loads(stop)) == _shape(fixture("twilio", "stop"))
    assert isinstance(twilio_messages.parse(stop), Stop)
    assert twilio_messages.parse(twilio_messages.connected_message()) == Connected("Call", "1.0.0")


def test_exotel_builders_write_the_documented_messages_and_parse_back() -> None:
    start = exotel_messages.start_message("s-1", "c-1", "a-1", 16000, {"interaction_id": "x-1"})
    assert _shape(json.loads(start)) == _shape(fixture("exotel", "start"))
    parsed = exotel_messages.parse(start)
    assert isinstance(parsed, Start) and parsed.fmt == AudioFormat(Encoding.LINEAR16, 16000, 1)
    assert parsed.custom_parameters == {"interaction_id": "x-1"} and parsed.call_sid == "c-1"
    media = exotel_messages.media_message("s-1", 2, 0, 0, b"\x01\x00" * 800)
    assert _shape(json.loads(media)) == _shape(fixture("exotel", "media"))
    assert exotel_messages.parse(media) == Media(b"\x01\x00" * 800, "inbound", 0, 0)
    stop = exotel_messages.stop_message("s-1", "c-1", "a-1", 3)
    assert _shape(json.loads(stop)) == _shape(fixture("exotel", "stop"))
    assert isinstance(exotel_messages.parse(stop), Stop)
    assert exotel_messages.parse(exotel_messages.connected_message()) == Connected()
