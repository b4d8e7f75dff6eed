"""SIP messages, the INVITE's multipart body, SDP offer/answer and RFC 7865 metadata: pure."""

from __future__ import annotations

import uuid

import pytest

from asr_worker.core.audio import Encoding
from asr_worker.transports.siprec import body, metadata, sdp, sip
from asr_worker.transports.siprec.options import RoleRule, role_rules

METADATA = b"""<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="hVpd7YQgRW2nD22h7q60JQ=="/>
  <participant participant_id="srfBElmCRp2QB23b7Mpk0w==">
    <nameID aor="sip:alice@atlanta.com"><name xml:lang="it">Alice</name></nameID>
  </participant>
  <participant participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
    <nameID aor="sip:agent7@cc.example.com"><name>Bob</name></nameID>
  </participant>
  <stream stream_id="UAAMm5GRQKSCMVvLyl4rFw==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>96</label></stream>
  <stream stream_id="i1Pz3to5hGk8fuXl+PbwCw==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>97</label></stream>
  <participantstreamassoc participant_id="srfBElmCRp2QB23b7Mpk0w==">
    <send>i1Pz3to5hGk8fuXl+PbwCw==</send><recv>UAAMm5GRQKSCMVvLyl4rFw==</recv>
  </participantstreamassoc>
  <participantstreamassoc participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
    <send>UAAMm5GRQKSCMVvLyl4rFw==</send><recv>i1Pz3to5hGk8fuXl+PbwCw==</recv>
  </participantstreamassoc>
</recording>"""

OFFER = (
    b"v=0\r\no=SRC 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 10000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=label:96\r\na=sendonly\r\n"
    b"m=audio 10002 RTP/AVP 0 13\r\nc=IN IP4 192.0.2.9\r\na=label:97\r\na=sendonly\r\n"
    b"m=video 10004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=label:98\r\n"
)


def invite(body_bytes: bytes = b"", content_type: str = "application/sdp", extra: str = "") -> bytes:
    head = (
        "INVITE sip:srs@192.0.2.50 SIP/2.0\r\n"
        "v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
        "Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKfirst\r\n"
        "f: <sip:src@192.0.2.1>;tag=1928301774\r\n"
        "t: <sip:srs@192.0.2.50>\r\n"
        "i: a84b4c76e66710@192.0.2.1\r\n"
        "CSeq: 314159 INVITE\r\n"
        "Subject: a header\r\n folded onto two lines\r\n"
        f"{extra}"
        f"c: {content_type}\r\n"
        f"l: {len(body_bytes)}\r\n\r\n"
    )
    return head.encode() + body_bytes


def test_a_request_is_read_with_compact_and_folded_headers() -> None:
    message = sip.parse(invite(OFFER))
    assert isinstance(message, sip.Request)
    assert message.method == "INVITE" and message.call_id == "a84b4c76e66710@192.0.2.1"
    assert message.cseq == sip.CSeq(314159, "INVITE")
    assert (
        message.branch == "z9hG4bK776asdhds" and message.from_tag == "1928301774" and message.to_tag is None
    )
    assert message.headers.get("Subject") == "a header folded onto two lines"
    assert message.body == OFFER


def test_the_response_copies_every_via_and_tags_the_to() -> None:
    request = sip.parse(invite())
    assert isinstance(request, sip.Request)
    text = sip.response(request, 200, "OK", to_tag="abc", headers=(("Contact", "<sip:srs@x>"),)).decode()
    lines = text.split("\r\n")
    assert lines[0] == "SIP/2.0 200 OK"
    assert [line for line in lines if line.startswith("Via:")] == [
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds",
        "Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKfirst",
    ]
    assert "To: <sip:srs@192.0.2.50>;tag=abc" in lines and "CSeq: 314159 INVITE" in lines
    assert text.endswith("Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (invite().replace(b"i: a84b4c76e66710@192.0.2.1\r\n", b""), 400),
        (invite().replace(b"CSeq: 314159 INVITE", b"CSeq: many INVITE"), 400),
        (invite().replace(b"CSeq: 314159 INVITE", b"CSeq: 1 BYE"), 400),
        (invite().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
        (invite(b"x" * 70_000), 513),
        (b"INVITE sip:x SIP/2.0\r\nVia: a\r\n", 400),
        (invite().replace(b"l: 0", b"l: 50"), 400),
        (b"\xff\xfe garbage\r\n\r\n", 400),
    ],
)
def test_what_cannot_be_read_is_refused_with_its_status(data: bytes, status: int) -> None:
    with pytest.raises(sip.SipError) as refused:
        sip.parse(data)
    assert refused.value.status == status


def test_a_stream_is_cut_into_messages_by_content_length_and_keepalives_are_counted() -> None:
    framer = sip.StreamFramer()
    one, two = invite(OFFER), invite(b"v=0\r\n")
    whole = b"\r\n\r\n" + one + two
    assert framer.push(whole[:100]) == []
    assert framer.push(whole[100:]) == [one, two]
    assert framer.keepalives == 1
    with pytest.raises(sip.SipError):
        sip.StreamFramer().push(b"OPTIONS sip:x SIP/2.0\r\nVia: a\r\n\r\n")  # no Content-Length


def test_a_multipart_body_gives_the_sdp_and_the_metadata() -> None:
    data = (
        b"--OSS-unique-boundary-42\r\nContent-Type: application/sdp\r\n\r\n"
        + OFFER
        + b"\r\n--OSS-unique-boundary-42\r\nContent-Type: application/rs-metadata+xml\r\n"
        + b"Content-Disposition: recording-session\r\n\r\n"
        + METADATA
        + b"\r\n--OSS-unique-boundary-42--\r\n"
    )
    parts = body.split('multipart/mixed;boundary="OSS-unique-boundary-42"', data)
    assert parts.sdp == OFFER and parts.metadata == METADATA
    with pytest.raises(sip.SipError) as refused:
        body.split("text/plain", b"hello")
    assert refused.value.status == 415


def test_the_answer_records_each_g711_stream_in_one_law_and_refuses_the_rest() -> None:
    offer = sdp.parse(OFFER)
    assert [m.label for m in offer.media] == ["96", "97", "98"]
    assert offer.media[1].address == "192.0.2.9" and offer.media[0].address == "192.0.2.1"
    plans = sdp.plan(offer)
    assert sdp.call_law(plans) is Encoding.ALAW  # the first stream prefers PCMA
    assert [p.codec.name if p.codec else None for p in plans] == ["PCMA", "PCMU", None]
    assert plans[0].telephone_event == 101 and plans[1].comfort_noise == 13
    text = sdp.answer(plans, {0: 20000, 1: 20002}, "198.51.100.7", 42, 1).decode()
    assert "m=audio 20000 RTP/AVP 8 101\r\n" in text and "m=audio 20002 RTP/AVP 0 13\r\n" in text
    assert "m=video 0 RTP/AVP 96\r\n" in text
    assert text.count("a=recvonly") == 2 and "c=IN IP4 198.51.100.7" in text
    held = sdp.plan(sdp.parse(OFFER.replace(b"a=sendonly", b"a=inactive")), keep=Encoding.MULAW)
    assert [p.codec.name if p.codec else None for p in held] == ["PCMU", "PCMU", None]
    assert "a=inactive" in sdp.answer(held, {0: 20000, 1: 20002}, "198.51.100.7", 42, 2).decode()


def test_an_offer_without_g711_has_no_law() -> None:
    offer = sdp.parse(b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 10000 RTP/AVP 18 9\r\na=sendonly\r\n")
    assert sdp.call_law(sdp.plan(offer)) is None


def test_metadata_names_who_sends_each_stream_and_the_roles_follow() -> None:
    found = metadata.Metadata()
    found.update(METADATA)
    assert found.interaction_id() == "855a5ded-8420-456d-a70f-6da1eeaeb425"
    sender = found.sender_of("96")
    assert sender is not None and sender.aor == "sip:agent7@cc.example.com" and sender.name == "Bob"
    rules = role_rules("agent=aor:sip:*@cc.example.com")
    assert rules == (RoleRule("agent", "aor", "sip:*@cc.example.com"),)
    assert metadata.channels(["96", "97"], found, rules) == [1, 0]
    assert metadata.channels(["96", "97"], found, ()) == [0, 1]  # the offer's order
    assert metadata.channels(["96", "97", "98"], None, ()) == [0, 1, None]
    # a transfer: the agent now sends stream 97, the customer 96
    found.update(
        b'<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>partial</datamode>'
        b'<participantstreamassoc participant_id="zSfPoSvdSDCmU3A3TRDxAw==">'
        b"<send>i1Pz3to5hGk8fuXl+PbwCw==</send></participantstreamassoc>"
        b'<participantstreamassoc participant_id="srfBElmCRp2QB23b7Mpk0w==">'
        b"<send>UAAMm5GRQKSCMVvLyl4rFw==</send></participantstreamassoc></recording>"
    )
    assert metadata.channels(["96", "97"], found, rules) == [0, 1]


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<recording>&b;</recording>",
        b'<!DOCTYPE recording SYSTEM "file:///etc/passwd"><recording/>',
        b"<recording><unclosed></recording>",
        b"<other/>",
        b"<recording>" + b"<x/>" * 3000 + b"</recording>",
        b"<recording>" + b" " * 70_000 + b"</recording>",
    ],
)
def test_metadata_is_read_defused(document: bytes) -> None:
    with pytest.raises(metadata.MetadataError):
        metadata.Metadata().update(document)


def test_a_recording_clients_body_is_read_back_by_the_server_side() -> None:
    """What `stream --protocol siprec` writes (offer, metadata, multipart) is what the server
    reads: two labelled sendonly PCMU streams, their senders by name, the call's id."""
    offer = sdp.offer("192.0.2.1", [(40000, "1"), (40002, "2")], 7)
    customer = metadata.Participant(
        metadata.encoded_id(uuid.UUID(int=1)), "Customer", "sip:customer@192.0.2.1"
    )
    agent = metadata.Participant(metadata.encoded_id(uuid.UUID(int=2)), "Agent", "sip:agent@192.0.2.1")
    sent = [
        metadata.SentStream(metadata.encoded_id(uuid.UUID(int=3)), "1", customer),
        metadata.SentStream(metadata.encoded_id(uuid.UUID(int=4)), "2", agent),
    ]
    document = metadata.document(metadata.session_id_of("call-42"), sent)
    content_type, data = body.multipart(offer, document, "b-1")
    parts = body.split(content_type, data)
    assert parts.sdp == offer and parts.metadata == document
    media = sdp.parse(offer).media
    assert [(m.port, m.label, m.direction, m.address) for m in media] == [
        (40000, "1", "sendonly", "192.0.2.1"),
        (40002, "2", "sendonly", "192.0.2.1"),
    ]
    plans = sdp.plan(sdp.parse(offer))
    assert sdp.call_law(plans) is Encoding.MULAW and all(p.recorded and p.sending for p in plans)
    found = metadata.Metadata()
    found.update(document)
    assert found.interaction_id() == "call-42"
    sender = found.sender_of("2")
    assert sender is not None and (sender.name, sender.aor) == ("Agent", "sip:agent@192.0.2.1")
    assert metadata.channels(["1", "2"], found, ()) == [0, 1]
    assert metadata.channels(["1", "2"], found, role_rules("agent=name:Agent")) == [0, 1]
    assert metadata.channels(["1", "2"], found, role_rules("agent=aor:sip:customer@*")) == [1, 0]


@pytest.mark.parametrize("interaction_id", ["call-42", "855a5ded-8420-456d-a70f-6da1eeaeb425", "A.b:c_9"])
def test_an_interaction_id_written_as_a_session_id_is_read_back_as_it_was(interaction_id: str) -> None:
    written = metadata.session_id_of(interaction_id)
    assert metadata.interaction_id_of(written) == interaction_id
    if "-" in interaction_id and len(interaction_id) == 36:
        assert written == "hVpd7YQgRW2nD22h7q60JQ=="  # a UUID in base64, as RFC 7865 writes one
