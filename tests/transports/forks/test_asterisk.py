"""`/v1/asterisk`: Asterisk's WebSocket channel driver, its control messages written as
`chan_websocket.c` writes them (plain text and JSON), over a real WebSocket offering its `media`
subprotocol and HTTP Basic as `websocket_client.conf` sends them, into a real worker on the mock
provider, watched over SSE."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import aiohttp
import pytest

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.credentials import Secret
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.transports.forks import asterisk_messages as am
from asr_worker.transports.forks.messages import Keypress, Notice
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, speechlike
from tests.support.telephony import open_sse, wait_until, ws_url

SLIN16 = AudioFormat(Encoding.LINEAR16, 16000, 1)
ULAW = AudioFormat(Encoding.MULAW, 8000, 1)
KEY = "k-asterisk-51c0aa9e"
CHANNEL_ID = "1712345678.42"


def test_the_control_messages_parse_in_both_formats() -> None:
    plain = am.media_start(CHANNEL_ID)
    assert plain == (
        "MEDIA_START connection_id:media_connection1 channel:PJSIP/1000-00000001 "
        f"channel_id:{CHANNEL_ID} format:slin16 optimal_frame_size:640 ptime:20"
    )
    start = am.parse_start(plain, {})
    assert (start.interaction_id, start.fmt, start.call_ref) == (CHANNEL_ID, SLIN16, "PJSIP/1000-00000001")
    as_json = am.media_start(CHANNEL_ID, "ulaw", as_json=True, variables={"interaction_id": "from-dialplan"})
    assert am.parse_start(as_json, {}).interaction_id == "from-dialplan"
    assert am.parse_start(as_json, {"interaction_id": "from-uri"}).interaction_id == "from-uri"
    assert am.parse_control(f"DTMF_END digit:5 channel_id:{CHANNEL_ID}") == Keypress("5")
    assert am.parse_control(
        json.dumps({"event": "DTMF_END", "channel_id": CHANNEL_ID, "digit": "#"})
    ) == Keypress("#")
    assert am.parse_control("MEDIA_XOFF") == Notice("media_xoff")
    assert am.parse_control(json.dumps({"event": "QUEUE_DRAINED", "channel_id": CHANNEL_ID})) == Notice(
        "queue_drained"
    )


async def test_a_channel_dialled_with_slin16_ends_when_asterisk_hangs_up(http: aiohttp.ClientSession) -> None:
    provider = MockProvider()
    async with running_worker(provider, worker_token=Secret(KEY), session_grace_s=120) as worker:
        basic = base64.b64encode(f"asterisk:{KEY}".encode()).decode()
        watcher = await open_sse(
            http, worker, "/v1/calls/ast-call-1/events", {"Authorization": f"Bearer {KEY}"}
        )
        ws = await http.ws_connect(
            ws_url(worker, "/v1/asterisk?interaction_id=ast-call-1"),
            protocols=["media"],
            headers={"Authorization": f"Basic {basic}"},
        )
        assert ws.protocol == "media"
        await ws.send_str(am.media_start(CHANNEL_ID))
        audio = speechlike(1.2, SLIN16, seed=6)
        for frame in frames(audio, SLIN16):
            await ws.send_bytes(frame)
        await ws.send_str(f"DTMF_END digit:7 channel_id:{CHANNEL_ID}")
        await ws.send_str("MEDIA_XOFF")
        await ws.close()  # the channel's hangup
        await watcher.rest()  # the close ended it, not the 120 s grace
        assert watcher.of("session_ended")[0]["reason"] == "end" and not watcher.of("error")
        assert [d["digit"] for d in watcher.of("dtmf")] == ["7"]
        (stream,) = provider.streams
        assert stream.request.fmt == SLIN16 and bytes(stream.received) == audio
        finals = [w for e in watcher.of("transcript") if e["is_final"] for w in str(e["text"]).split()]
        assert finals == expected_words(audio, SLIN16)


async def test_json_control_messages_and_ulaw_name_the_call_by_a_channel_variable(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    ws = await http.ws_connect(ws_url(worker, "/v1/asterisk"), protocols=["media"])
    await ws.send_str(
        am.media_start(CHANNEL_ID, "ulaw", as_json=True, variables={"interaction_id": "ast-json"})
    )
    audio = speechlike(0.4, ULAW)
    for frame in frames(audio, ULAW):
        await ws.send_bytes(frame)
    await ws.close()
    await wait_until(lambda: not worker.manager.sessions)
    (stream,) = mock_provider.streams
    assert (stream.request.interaction_id, stream.request.fmt) == ("ast-json", ULAW)
    assert bytes(stream.received) == audio


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (b"\x00\x00" * 320, "the first message must be MEDIA_START"),
        ("MEDIA_XON", "not 'MEDIA_XON'"),
        (am.media_start(CHANNEL_ID, "opus"), "format 'opus' is not one the worker takes"),
        ("MEDIA_START channel_id", "is not name:value"),
    ],
)
async def test_bad_input_before_the_call_is_closed_with_the_reason_and_a_log_line(
    worker: Worker,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    first: str | bytes,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.forks")
    ws = await http.ws_connect(ws_url(worker, "/v1/asterisk"), protocols=["media"])
    await (ws.send_bytes(first) if isinstance(first, bytes) else ws.send_str(first))
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008 and reason in str(msg.extra), msg
    assert [r for r in caplog.records if r.getMessage() == "fork refused"]


async def test_unknown_control_messages_and_asterisks_errors_mid_call_are_error_events(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    watcher = await open_sse(http, worker, "/v1/calls/ast-bad/events")
    ws = await http.ws_connect(ws_url(worker, "/v1/asterisk?interaction_id=ast-bad"), protocols=["media"])
    await ws.send_str(am.media_start(CHANNEL_ID, "slin"))
    await ws.send_bytes(speechlike(0.2))
    await ws.send_str("TRANSCRIBE channel_id:x")
    await ws.send_str(f"ERROR channel_id:{CHANNEL_ID} error_text:unknown_command")
    await ws.send_bytes(speechlike(0.2, seed=2))
    await ws.close()
    await watcher.rest()
    assert [e["code"] for e in watcher.of("error")] == ["unknown_message", "platform_error"]
    assert watcher.of("session_ended")[0]["reason"] == "end"
