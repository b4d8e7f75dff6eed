"""The RTP receiver and the SIP dialog on a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pytest

from asr_worker.core.audio import Encoding
from asr_worker.core.codecs import decode_g711
from asr_worker.transports.siprec import rtp, sip
from asr_worker.transports.siprec.dialog import ClientDialog, Dialog, State, retransmissions, session_timer
from asr_worker.transports.siprec.rtp import RESTART, Digit, RtpReceiver

MU = Encoding.MULAW


def receiver(jitter_ms: int = 60, max_held: int = 64) -> RtpReceiver:
    payloads = {0: MU, 8: Encoding.ALAW}
    return RtpReceiver(
        MU, payloads, telephone_event=101, comfort_noise=13, jitter_ms=jitter_ms, max_held=max_held
    )


def packet(
    seq: int, *, ssrc: int = 7, pt: int = 0, fill: int | None = None, ts: int | None = None
) -> rtp.RtpPacket:
    data = rtp.build(
        pt,
        seq,
        (seq * 160 if ts is None else ts),
        ssrc,
        bytes([seq % 200] * 160 if fill is None else [fill] * 160),
    )
    found = rtp.parse(data)
    assert found is not None
    return found


def audio(outputs: list[rtp.Output]) -> bytes:
    return b"".join(o for o in outputs if isinstance(o, bytes))


def test_packets_in_order_go_on_at_once() -> None:
    r = receiver()
    for seq in range(1, 6):
        assert audio(r.push(packet(seq), seq * 0.02)) == bytes([seq] * 160)
    assert r.deadline() is None and r.stats.lost == 0


def test_reordered_packets_are_put_back_in_order_within_the_window() -> None:
    r = receiver(jitter_ms=60)
    out = r.push(packet(1), 0.0) + r.push(packet(3), 0.04) + r.push(packet(2), 0.05) + r.push(packet(4), 0.06)
    assert audio(out) == b"".join(bytes([s] * 160) for s in (1, 2, 3, 4))
    assert r.stats.reordered == 1 and r.stats.lost == 0


def test_a_lost_packet_becomes_silence_of_its_length_once_the_window_passes() -> None:
    r = receiver(jitter_ms=60)
    out = r.push(packet(1), 0.0) + r.push(packet(3), 0.04)
    assert audio(out) == bytes([1] * 160)  # 3 waits for 2
    assert r.deadline() == pytest.approx(0.10)
    assert r.poll(0.09) == []
    out = r.poll(0.10)
    assert audio(out) == b"\xff" * 160 + bytes([3] * 160)  # call time stays true: 20 ms of silence
    assert r.stats.lost == 1 and r.stats.filled_samples == 160
    assert r.push(packet(2), 0.11) == [] and r.stats.late == 1  # too late: dropped, never repeated


def test_duplicates_are_dropped() -> None:
    r = receiver()
    out = (
        r.push(packet(1), 0.0) + r.push(packet(1), 0.001) + r.push(packet(3), 0.04) + r.push(packet(3), 0.041)
    )
    out += r.push(packet(2), 0.05)
    assert audio(out) == b"".join(bytes([s] * 160) for s in (1, 2, 3))
    assert r.stats.duplicates == 2


def test_a_new_ssrc_restarts_the_stream_and_the_old_one_is_not_heard_again() -> None:
    r = receiver()
    r.push(packet(1, ssrc=7), 0.0)
    out = r.push(packet(500, ssrc=8, ts=9_999_999), 0.02)
    assert out[0] is RESTART and audio(out) == bytes([100] * 160)
    assert r.push(packet(2, ssrc=7), 0.03) == [] and r.stats.stale_ssrc == 1
    assert r.stats.ssrc_changes == 1


def test_a_key_press_is_one_digit_however_many_packets_carry_it() -> None:
    r = receiver()
    out: list[rtp.Output] = []
    for i, end in enumerate([False, False, True, True, True]):
        payload = bytes([5, (0x80 if end else 0) | 10]) + (160 * (i + 1)).to_bytes(2, "big")
        found = rtp.parse(rtp.build(101, 10 + i, 1600, 7, payload))
        assert found is not None
        out += r.push(found, i * 0.02)
    assert out == [Digit("5")] and r.stats.digits == 1


def test_comfort_noise_and_timestamp_gaps_keep_call_time() -> None:
    r = receiver()
    out = (
        r.push(packet(1, ts=0), 0.0) + r.push(packet(2, pt=13, ts=160), 0.02) + r.push(packet(3, ts=800), 0.1)
    )
    assert len(audio(out)) == 960  # 160 + 640 of silence + 160
    assert r.stats.comfort_noise == 1
    far = r.push(packet(4, ts=800 + 160 + 8 * 5000), 0.2)
    assert RESTART in far  # past max_fill_ms: placed by the clock instead


def test_the_other_law_is_translated_and_rtcp_is_not_rtp() -> None:
    r = receiver()
    loud = 0xAA  # an A-law code near full scale
    translated = audio(r.push(packet(1, pt=8, fill=loud), 0.0))
    expected = int(decode_g711(bytes([loud]), Encoding.ALAW)[0])
    assert abs(int(decode_g711(translated[:1], MU)[0]) - expected) <= expected // 16
    assert rtp.parse(bytes([0x80, 200]) + bytes(26)) is None and rtp.is_rtcp(bytes([0x81, 201, 0, 7]))


def test_the_held_packets_are_bounded() -> None:
    r = receiver(jitter_ms=1000, max_held=4)
    r.push(packet(1), 0.0)
    for seq in range(3, 9):
        r.push(packet(seq), 0.0)
    assert r.held_packets <= 4 and r.stats.lost == 1


INVITE = (
    b"INVITE sip:srs@192.0.2.50 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKinv\r\n"
    b"From: <sip:src@192.0.2.1>;tag=src1\r\nTo: <sip:srs@192.0.2.50>\r\nCall-ID: call-1\r\n"
    b"CSeq: 1 INVITE\r\nContact: <sip:src@192.0.2.1:5070>\r\nRecord-Route: <sip:proxy@192.0.2.3;lr>\r\n"
    b"Supported: timer\r\nSession-Expires: 120\r\nContent-Length: 0\r\n\r\n"
)


def request(data: bytes) -> sip.Request:
    message = sip.parse(data)
    assert isinstance(message, sip.Request)
    return message


def in_dialog(method: str, cseq: int, tag: str, branch: str = "z9hG4bKx") -> sip.Request:
    return request(
        f"{method} sip:srs@192.0.2.50 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch={branch}\r\n"
        f"From: <sip:src@192.0.2.1>;tag=src1\r\nTo: <sip:srs@192.0.2.50>;tag={tag}\r\nCall-ID: call-1\r\n"
        f"CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n".encode()
    )


def dialog(*, reliable: bool = False) -> tuple[Dialog, sip.Request]:
    invite = request(INVITE)
    return Dialog(
        invite, "srs1", "sip:srs@192.0.2.50", 0.0, via="SIP/2.0/UDP 192.0.2.50:5060", reliable=reliable
    ), invite


def test_the_answer_is_sent_again_until_its_ack_over_udp() -> None:
    d, invite = dialog()
    timer = session_timer(invite, 90)
    assert timer is not None and timer.refresher == "uac"
    ok = d.answer(b"v=0\r\n", 0.0, timer)
    assert b"Session-Expires: 120;refresher=uac" in ok and b"Require: timer" in ok and b"tag=srs1" in ok
    assert d.poll(0.4) == []
    assert d.poll(0.5) == [ok]
    assert d.poll(1.4) == [] and d.poll(1.5) == [ok]  # 500 ms, then 1 s, 2 s, 4 s, 4 s...
    d.ack(in_dialog("ACK", 1, "srs1"), 1.6)
    assert d.state is State.CONFIRMED and d.poll(10.0) == []


def test_no_ack_in_32_s_ends_the_call_with_a_bye() -> None:
    d, _ = dialog()
    d.answer(b"v=0\r\n", 0.0, None)
    out = []
    now = 0.0
    while d.state is not State.ENDED and now < 40:
        now += 0.25
        out += d.poll(now)
    assert d.end_reason == "no_ack" and now == pytest.approx(32.0)
    assert out[-1].startswith(b"BYE sip:src@192.0.2.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5060;")
    assert b"Route: <sip:proxy@192.0.2.3;lr>" in out[-1] and b"From: <sip:srs@192.0.2.50>;tag=srs1" in out[-1]


def test_cancel_before_the_answer_ends_the_invite_with_487() -> None:
    d, invite = dialog()
    cancel = request(INVITE.replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL"))
    sent = d.cancel(cancel)
    assert [s.split(b"\r\n", 1)[0] for s in sent] == [b"SIP/2.0 200 OK", b"SIP/2.0 487 Request Terminated"]
    assert d.state is State.ENDED and d.end_reason == "cancel"
    assert d.retransmission(invite) == sent[1]  # the INVITE again gets its 487 again


def test_cancel_after_the_answer_changes_nothing() -> None:
    d, _ = dialog(reliable=True)
    d.answer(b"v=0\r\n", 0.0, None)
    cancel = request(INVITE.replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL"))
    assert len(d.cancel(cancel)) == 1 and d.state is State.ANSWERED
    assert d.poll(5.0) == []  # reliable: no retransmission


def test_a_session_not_refreshed_ends_with_a_bye_and_a_refresh_extends_it() -> None:
    d, invite = dialog(reliable=True)
    timer = session_timer(invite, 90)
    d.answer(b"v=0\r\n", 0.0, timer)
    d.ack(in_dialog("ACK", 1, "srs1"), 0.1)
    assert d.deadline() == pytest.approx(88.0)  # RFC 4028: 120 - min(32, 120 / 3)
    d.set_timer(timer, 70.0)  # an UPDATE refreshed it
    assert d.poll(100.0) == [] and d.deadline() == pytest.approx(158.0)
    (bye,) = d.poll(158.0)
    assert bye.startswith(b"BYE ") and d.end_reason == "session_expired"


def test_a_short_session_timer_is_refused_with_422() -> None:
    with pytest.raises(sip.SipError) as refused:
        session_timer(request(INVITE.replace(b"Session-Expires: 120", b"Session-Expires: 30")), 90)
    assert refused.value.status == 422


def test_stale_requests_and_bye() -> None:
    d, _ = dialog(reliable=True)
    d.answer(b"v=0\r\n", 0.0, None)
    update = in_dialog("UPDATE", 2, "srs1")
    assert not d.stale(update) and d.stale(in_dialog("UPDATE", 2, "srs1", "z9hG4bKy"))
    bye = in_dialog("BYE", 3, "srs1", "z9hG4bKbye")
    assert d.matches(bye) and not d.matches(in_dialog("BYE", 3, "other"))
    ok = d.bye(bye)
    assert ok.startswith(b"SIP/2.0 200 OK") and d.end_reason == "end" and d.retransmission(bye) == ok


def client() -> ClientDialog:
    return ClientDialog(
        call_id="c-1@192.0.2.1",
        local_tag="src9",
        local_uri="<sip:src@192.0.2.1:5070>",
        remote_uri="<sip:srs@192.0.2.50:5060>",
        contact="sip:src@192.0.2.1:5070",
        via="SIP/2.0/UDP 192.0.2.1:5070",
    )


def response(data: bytes) -> sip.Response:
    message = sip.parse(data)
    assert isinstance(message, sip.Response)
    return message


def test_the_client_dialog_and_the_servers_speak_one_session_end_to_end() -> None:
    """The recording client's INVITE, ACK and BYE, read by the server's own dialog; the ACK and
    BYE go in the dialog the answer established (the server's tag, its Contact)."""
    src = client()
    invite = request(src.invite((("Require", "siprec"),), b"v=0\r\n", "application/sdp"))
    assert (invite.uri, invite.cseq, invite.from_tag, invite.to_tag) == (
        "sip:srs@192.0.2.50:5060",
        sip.CSeq(1, "INVITE"),
        "src9",
        None,
    )
    assert invite.headers.get("Contact") == "<sip:src@192.0.2.1:5070>;+sip.src" and invite.body == b"v=0\r\n"
    srs = Dialog(
        invite, "srs1", "sip:srs@192.0.2.50:5060", 0.0, via="SIP/2.0/UDP 192.0.2.50:5060", reliable=False
    )
    ok = srs.answer(b"v=0\r\n", 0.0, None)
    sent = src.answered(response(ok))
    ack = request(sent)
    assert ack.method == "ACK" and ack.to_tag == "srs1" and ack.cseq == sip.CSeq(1, "ACK")
    assert ack.branch != invite.branch and src.ack == sent  # sent again for the 2xx again
    assert srs.matches(ack)
    srs.ack(ack, 0.1)
    assert srs.state is State.CONFIRMED
    bye = request(src.bye())
    assert bye.uri == "sip:srs@192.0.2.50:5060" and bye.cseq == sip.CSeq(2, "BYE")
    assert srs.matches(bye) and not srs.stale(bye)
    assert response(srs.bye(bye)).status == 200 and srs.end_reason == "end"


def test_a_refusal_is_acked_in_the_invites_transaction() -> None:
    src = client()
    invite = request(src.invite((), b"", "application/sdp"))
    refused = response(sip.response(invite, 403, "Forbidden", to_tag="srs2"))
    ack = request(src.refused(refused))
    assert ack.branch == invite.branch and ack.to_tag == "srs2" and ack.cseq == sip.CSeq(1, "ACK")


def test_a_client_sends_again_at_t1_doubling_for_32_s() -> None:
    assert list(retransmissions("INVITE")) == [0.5, 1, 2, 4, 8, 16, 0.5]
    waits = list(retransmissions("BYE"))
    assert waits[:5] == [0.5, 1, 2, 4, 4] and sum(waits) == pytest.approx(32.0)
