"""AudioHook messages as data: durations, the media choice, the transcript entity, and what
each malformed client message is refused with."""

from __future__ import annotations

import json
import uuid

import pytest

from asr_worker.audiohook import protocol as ah
from asr_worker.errors import ProtocolError

SESSION = str(uuid.uuid4())


def message(kind: str, parameters: dict[str, object], **fields: object) -> str:
    body: dict[str, object] = {
        "version": "2",
        "id": SESSION,
        "type": kind,
        "seq": 1,
        "serverseq": 0,
        "position": "PT0S",
        "parameters": parameters,
    }
    body.update(fields)
    return json.dumps(body)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "PT0S"), (1.5, "PT1.5S"), (12.3456, "PT12.346S"), (0.0004, "PT0S"), (3600, "PT3600S")],
)
def test_durations(seconds: float, text: str) -> None:
    assert ah.format_duration(seconds) == text
    assert ah.parse_duration(text) == pytest.approx(round(seconds, 3))


@pytest.mark.parametrize("bad", ["1.5", "PT1.5", "PT-1S", "P1DT1S", "PTS", 5, None, "PT1e3S"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ProtocolError):
        ah.parse_duration(bad)


def offer(fmt: str, *channels: str, rate: int = 8000) -> ah.MediaOffer:
    return ah.MediaOffer("PCMU" if fmt == "PCMU" else "L16", rate, channels)


def test_media_choice_prefers_both_parties_then_the_customer_then_the_agent() -> None:
    both_l16, both_pcmu = offer("L16", "external", "internal"), offer("PCMU", "external", "internal")
    external, internal = offer("PCMU", "external"), offer("PCMU", "internal")
    assert ah.choose_media([internal, external, both_l16, both_pcmu]) == both_l16  # the client's order
    assert ah.choose_media([internal, external]) == external
    assert ah.choose_media([internal]) == internal
    assert ah.choose_media([offer("PCMU", "internal", "external")]) is None  # channel 0 must be external
    assert ah.choose_media([offer("PCMU", "external", rate=16000)]) is None
    assert ah.choose_media([]) is None


def test_an_open_skips_offers_it_cannot_read() -> None:
    parsed = ah.parse_client_message(
        message(
            "open",
            {
                "organizationId": str(uuid.uuid4()),
                "conversationId": str(uuid.uuid4()),
                "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
                "media": [
                    {"type": "audio", "format": "opus", "channels": ["external"], "rate": 8000},
                    {"type": "video"},
                    {"type": "audio", "format": "L16", "channels": ["external", "external"], "rate": 8000},
                    {"type": "audio", "format": "L16", "channels": ["internal"], "rate": 8000},
                ],
            },
        )
    )
    assert isinstance(parsed, ah.Open)
    assert parsed.media == (offer("L16", "internal"),) and parsed.offered == 4


@pytest.mark.parametrize(
    ("text", "info"),
    [
        ("[1]", "well-formed"),
        (message("ping", {}, version="1"), "well-formed"),
        (message("ping", {}, id="not-a-uuid"), "well-formed"),
        (message("ping", {}, seq=-1), "well-formed"),
        (message("ping", {}, seq=True), "well-formed"),
        (message("ping", {}, position="1s"), "well-formed"),
        (message("ping", {}).replace('"parameters": {}', '"parameters": []'), "well-formed"),
        (message("pong", {}), "'pong' is not a supported client message"),
        (message("close", {"reason": "bored"}), "`reason` must be one of"),
        (message("update", {"language": "english"}), "language code"),
        (message("error", {"code": 200, "message": "x"}), "`code`"),
        (message("resumed", {"start": "PT1S"}), "not a duration"),
        (message("open", {"organizationId": "x"}), "must be UUIDs"),
        ("{" * 10, "not valid JSON"),
        (" " * 70_000, "too large"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(text: str, info: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        ah.parse_client_message(text)
    assert info in refused.value.message


def test_the_transcript_entity_has_the_reference_shape() -> None:
    entity = ah.transcript_entity(
        utterance_id="u-1",
        channel_id=1,
        is_final=True,
        offset=1.2345,
        duration=0.5,
        text="hello there",
        confidence=1.7,
        tokens=[ah.Token("hello", 0.9, 1.2345, 0.25), ah.Token("there", -1.0, 1.5, 0.2345)],
        language="en-US",
    )
    assert entity == {
        "type": "transcript",
        "data": {
            "id": "u-1",
            "channelId": 1,
            "isFinal": True,
            "offset": "PT1.234S",
            "duration": "PT0.5S",
            "alternatives": [
                {
                    "confidence": 1.0,
                    "languages": ["en-US"],
                    "interpretations": [
                        {
                            "type": "display",
                            "transcript": "hello there",
                            "tokens": [
                                {
                                    "type": "word",
                                    "value": "hello",
                                    "confidence": 0.9,
                                    "offset": "PT1.234S",
                                    "duration": "PT0.25S",
                                },
                                {
                                    "type": "word",
                                    "value": "there",
                                    "confidence": 0.0,
                                    "offset": "PT1.5S",
                                    "duration": "PT0.234S",
                                },
                            ],
                        }
                    ],
                }
            ],
        },
    }


def test_server_messages() -> None:
    text = ah.server_message(
        "opened", SESSION, 1, 1, ah.opened_parameters(offer("PCMU", "external"), ["en-US"])
    )
    assert json.loads(text) == {
        "version": "2",
        "id": SESSION,
        "type": "opened",
        "seq": 1,
        "clientseq": 1,
        "parameters": {
            "media": [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}],
            "startPaused": False,
            "supportedLanguages": ["en-US"],
        },
    }
    assert ah.disconnect_parameters("error", "x" * 900) == {"reason": "error", "info": "x" * 500}


def test_the_client_side_writes_messages_the_server_side_reads() -> None:
    offer = ah.MediaOffer("PCMU", 8000, ("external", "internal"))
    params = ah.open_parameters(
        "d7934305-0972-4844-938e-9060eef73d05", str(uuid.uuid4()), [offer], {"interaction_id": "c-1"}
    )
    opened = ah.parse_client_message(ah.client_message("open", SESSION, 1, 0, 0.0, params))
    assert isinstance(opened, ah.Open)
    assert opened.media == (offer,) and opened.custom_config == {"interaction_id": "c-1"}
    closing = ah.parse_client_message(ah.client_message("close", SESSION, 2, 3, 1.5, {"reason": "end"}))
    assert isinstance(closing, ah.Close) and closing.header == ah.Header(SESSION, 2, 3, 1.5)


def test_the_client_side_reads_the_servers_transcripts() -> None:
    entity = ah.transcript_entity(
        utterance_id="u-1",
        channel_id=1,
        is_final=True,
        offset=1.24,
        duration=1.56,
        text="how can I help",
        confidence=0.93,
        tokens=[],
        language="en-US",
    )
    message = ah.parse_server_message(ah.server_message("event", SESSION, 7, 12, {"entities": [entity]}))
    assert (message.type, message.seq, message.clientseq) == ("event", 7, 12)
    assert ah.transcripts_in(message.parameters) == [
        ah.TranscriptEntity(1, True, 1.24, 1.56, "how can I help", 0.93)
    ]
    with pytest.raises(ProtocolError):
        ah.transcripts_in({"entities": [{"type": "transcript", "data": {"channelId": 0}}]})
    with pytest.raises(ProtocolError):
        ah.parse_server_message('{"version": "2", "type": "event", "seq": "1"}')
