"""docs/pbx-and-platforms.md's example for each platform is right: built by the platform's own
SDK where it has one (Vonage's NCCO models, Plivo's XML builder, Twilio's TwiML builder that
SignalWire's documentation uses for cXML, Telnyx's `streaming_start` types), pointed at one of
the worker's routes, and what the platform then sends is taken as the page says."""

from __future__ import annotations

import json
import re
import typing
import uuid
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import pytest
from plivo import plivoxml
from telnyx.types import stream_codec
from telnyx.types.calls.action_start_streaming_params import ActionStartStreamingParams
from twilio.twiml.voice_response import Start, Stream, VoiceResponse
from vonage_voice.models.connect_endpoints import WebsocketAuthorization, WebsocketEndpoint
from vonage_voice.models.ncco import Connect

from asr_worker.config import settings_with
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.transports import forks
from asr_worker.transports.forks import (
    asterisk_messages,
    audiosocket,
    freeswitch_messages,
    jambonz_messages,
    jambonz_stt_messages,
    telnyx_messages,
    vonage_messages,
)
from asr_worker.transports.forks.vonage import VonageOptions
from asr_worker.worker import Worker

PAGE: Final = Path(__file__).resolve().parents[3] / "docs" / "pbx-and-platforms.md"
_EXAMPLE: Final = re.compile(r"<!-- example: (\w+) -->\n```\w*\n(.*?)\n```", re.DOTALL)


@pytest.fixture(scope="module")
def examples() -> dict[str, str]:
    return dict(_EXAMPLE.findall(PAGE.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def route_paths() -> set[str]:
    worker = Worker(settings_with(provider="mock"))
    return {route.path for route in forks.routes(worker, VonageOptions())}


def url_in(text: str) -> tuple[str, dict[str, str]]:
    """The first wss:// URL of an example: its path and its query."""
    found = re.search(r"wss://[^\s\"<>]+", text)
    assert found, text
    url = urlsplit(found.group(0))
    return url.path, dict(parse_qsl(url.query))


def test_every_platform_has_its_example(examples: dict[str, str]) -> None:
    assert set(examples) == {
        "freeswitch",
        "jambonz",
        "jambonz_stt",
        "vonage",
        "telnyx",
        "plivo",
        "signalwire",
        "audiosocket",
        "asterisk",
    }


def test_freeswitch(examples: dict[str, str], route_paths: set[str]) -> None:
    command = examples["freeswitch"].replace("${uuid}", str(uuid.uuid4()))
    path, query = url_in(command)
    assert path in route_paths
    start = freeswitch_messages.parse_start(None, query)  # uuid_audio_fork sends no metadata frame
    mix, rate = command.split()[-2:]
    assert (mix, rate) == ("stereo", "16k") and start.fmt == AudioFormat(Encoding.LINEAR16, 16000, 2)
    assert start.legs == ("caller", "callee")


def test_jambonz_listen(examples: dict[str, str], route_paths: set[str]) -> None:
    verb = json.loads(examples["jambonz"])
    assert urlsplit(verb["url"]).path in route_paths
    # what jambonz sends first: sampleRate and mixType, the call's attributes, the verb's metadata
    metadata = {
        "sampleRate": verb["sampleRate"],
        "mixType": verb["mixType"],
        "callSid": "c-1",
        **verb["metadata"],
    }
    start = jambonz_messages.parse_start(json.dumps(metadata), {})
    assert start.fmt == AudioFormat(Encoding.LINEAR16, 16000, 2) and start.options.keyterms == ("Zorblax",)


def test_jambonz_speech_vendor(examples: dict[str, str]) -> None:
    shown = json.loads(examples["jambonz_stt"])
    sent = jambonz_stt_messages.transcription(
        "go forward ten meters", is_final=True, confidence=0.93, channel=0, language="en-US"
    )
    assert json.loads(sent) == shown


def test_vonage_ncco_is_one_vonages_sdk_builds(examples: dict[str, str], route_paths: set[str]) -> None:
    (action,) = json.loads(examples["vonage"])
    built = Connect(
        from_="447700900000",
        endpoint=[
            WebsocketEndpoint(
                uri="wss://asr.example.com/v1/vonage?interaction_id=CALL_UUID",
                contentType="audio/l16;rate=16000",
                authorization=WebsocketAuthorization(type="vonage"),
            )
        ],
    )
    assert json.loads(built.model_dump_json(by_alias=True, exclude_none=True)) == action
    (endpoint,) = action["endpoint"]
    path, query = url_in(endpoint["uri"])
    assert path in route_paths
    rate = int(endpoint["content-type"].rsplit("=", 1)[1])
    start = vonage_messages.parse_start(vonage_messages.connected(rate), query)
    assert (start.interaction_id, start.fmt.sample_rate) == ("CALL_UUID", 16000)


def test_telnyx_streaming_start_fits_telnyxs_sdk_types(
    examples: dict[str, str], route_paths: set[str]
) -> None:
    body = json.loads(examples["telnyx"])
    fields = typing.get_type_hints(ActionStartStreamingParams)
    assert set(body) <= set(fields)
    assert body["stream_track"] in typing.get_args(fields["stream_track"])
    assert body["stream_codec"] in typing.get_args(stream_codec.StreamCodec)
    path, query = url_in(body["stream_url"])
    assert path in route_paths and query["track"] == body["stream_track"]
    assert telnyx_messages.URL_TRACKS[query["track"]] == ("inbound", "outbound")


def test_plivo_xml_is_what_plivos_sdk_builds(examples: dict[str, str], route_paths: set[str]) -> None:
    path, query = url_in(examples["plivo"])
    assert path in route_paths and "token" in query
    response = plivoxml.ResponseElement()
    response.add(
        plivoxml.StreamElement(
            "wss://asr.example.com/v1/plivo?token=KEY",
            bidirectional=False,
            audioTrack="both",
            contentType="audio/x-l16;rate=16000",
            extraHeaders="interactionId=call1234",
            keepCallAlive=True,
        )
    )
    assert response.to_string(False) == examples["plivo"]


def test_signalwire_cxml_is_what_the_twiml_builder_writes(
    examples: dict[str, str], route_paths: set[str]
) -> None:
    path, _ = url_in(examples["signalwire"])
    assert path in route_paths
    stream = Stream(
        url="wss://asr.example.com/v1/signalwire",
        track="both_tracks",
        codec="L16@16000h",
        authBearerToken="KEY",
    )
    stream.parameter(name="interaction_id", value="call-1234")
    start = Start()
    start.append(stream)
    response = VoiceResponse()
    response.append(start)
    assert str(response) == examples["signalwire"]


def test_audiosocket(examples: dict[str, str]) -> None:
    found = re.search(r"AudioSocket\(\$\{UUID\(\)\},([\w.]+):(\d+)\)", examples["audiosocket"])
    assert found and audiosocket.optional_port(found.group(2)) == 9092
    page = PAGE.read_text(encoding="utf-8")
    assert "ASR_AUDIOSOCKET_PORT=9092" in page and "ASR_AUDIOSOCKET_ALLOW=10.0.0.5/32" in page
    assert [str(n) for n in audiosocket.networks("10.0.0.5/32")] == ["10.0.0.5/32"]


def test_asterisk_chan_websocket(examples: dict[str, str], route_paths: set[str]) -> None:
    text = examples["asterisk"]
    settings = dict(re.findall(r"^(\w+) = (.+)$", text, re.MULTILINE))
    assert settings["type"] == "websocket_client"
    assert urlsplit(settings["uri"]).path in route_paths
    assert settings["protocols"] in asterisk_messages.SUBPROTOCOLS
    dial = re.search(r"Dial\(WebSocket/(\w+)/c\((\w+)\)v\((\w+)=", text)
    assert dial and dial.group(1) == "asr" and dial.group(3) == "interaction_id"
    assert asterisk_messages.FORMATS[dial.group(2)] == AudioFormat(Encoding.LINEAR16, 16000, 1)
