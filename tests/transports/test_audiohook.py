"""`/v1/audiohook` end to end: a raw AudioHook client on a real socket, a real worker on a free
port, the mock provider, the call watched over SSE."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from asr_worker.audiohook import protocol as ah
from asr_worker.audiohook.signature import ApiKeys
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockOptions, MockProvider
from asr_worker.transports import audiohook as transport
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import silence, speechlike
from tests.support.audiohook import ORG, STEREO_PCMU, Hook, connect, upgrade_headers, url
from tests.support.telephony import open_sse, wait_until

SECRET = b"a client secret of 32 bytes here"
KEYS = ApiKeys.parse(f"key-1,key-2:{base64.b64encode(SECRET).decode()}")
STEREO = AudioFormat(Encoding.MULAW, 8000, 2)
NULL = "00000000-0000-0000-0000-000000000000"
DURATION = re.compile(r"^PT(\d+\.\d*|\.?\d+)S$")


@pytest.fixture(autouse=True)
def no_failure_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "FAILURE_DELAY_S", 0.0)


@pytest.fixture
async def hook_worker(mock_provider: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(mock_provider, audiohook_api_keys=KEYS, session_grace_s=5.0) as w:
        yield w


def transcripts(hook: Hook) -> list[dict[str, Any]]:
    return [e["data"] for e in hook.events() if e["type"] == "transcript"]


async def test_a_whole_session_every_message_type(
    hook_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    conversation = str(uuid.uuid4())
    watcher = await open_sse(http, hook_worker, f"/v1/calls/{conversation}/events")
    hook = await connect(http, hook_worker)
    opened = await hook.open(conversation, language="en-US")
    assert opened["parameters"]["media"] == [STEREO_PCMU]
    assert opened["clientseq"] == 1 and "supportedLanguages" not in opened["parameters"]

    ping_seq = await hook.send("ping", {})
    pong = await hook.expect("pong")
    assert pong["clientseq"] == ping_seq and pong["parameters"] == {}
    await hook.send("ping", {"rtt": "PT0.012S"})
    await hook.expect("pong")
    await hook.send("update", {"language": "es-ES"})
    assert (await hook.expect("updated"))["parameters"] == {}

    first = speechlike(1.0, STEREO, seed=1)
    await hook.audio(first)
    await hook.send("paused", {})
    await hook.audio(speechlike(0.5, STEREO, seed=2))  # in the pause: not sent on
    await hook.send("resumed", {"start": "PT1.5S", "discarded": "PT0S"})
    second = speechlike(1.0, STEREO, seed=3)
    await hook.audio(second)
    hook.position += 1.0  # as the reference client does: the position counts what it discarded
    await hook.send("discarded", {"start": "PT2.5S", "discarded": "PT1S"})
    await hook.audio(speechlike(0.6, STEREO, seed=4) + silence(0.4, STEREO))
    await hook.send("error", {"code": 500, "message": "a client-side hiccup"})
    closed = await hook.close()
    assert closed["parameters"] == {}
    await hook.ws.close()  # the client closes the socket after `closed`

    finals = [t for t in transcripts(hook) if t["isFinal"]]
    assert finals, hook.received
    assert hook.received[-1]["type"] == "closed"
    for data in transcripts(hook):
        assert data["channelId"] == 0 and uuid.UUID(str(data["id"]))
        assert DURATION.match(str(data["offset"])) and DURATION.match(str(data["duration"]))
        (alternative,) = data["alternatives"]
        assert alternative["languages"] == ["es-ES"] and 0 <= alternative["confidence"] <= 1
        (interpretation,) = alternative["interpretations"]
        assert interpretation["type"] == "display" and interpretation["transcript"]
        for token in interpretation["tokens"]:
            assert token["type"] == "word" and DURATION.match(token["offset"])
    # the last words came after the 1 s the client discarded: their offsets count it
    last = float(str(finals[-1]["offset"])[2:-1]) + float(str(finals[-1]["duration"])[2:-1])
    assert last > 3.5, str([(t["offset"], t["duration"], t["isFinal"]) for t in transcripts(hook)])

    await watcher.rest()
    started = watcher.of("session_started")[0]
    assert (started["tenant_id"], started["channels"], started["encoding"]) == (ORG, 2, "mulaw")
    assert watcher.of("session_ended")[0]["reason"] == "close"
    assert [e["code"] for e in watcher.of("error")] == ["client_error"]
    stream = mock_provider.streams[0]
    assert bytes(stream.received).startswith(first + second)  # the paused half second is not there
    assert len(stream.received) == len(first + second) + int(1.0 * STEREO.bytes_per_second)


async def test_interaction_id_from_custom_config_and_supported_languages(
    hook_worker: Worker, http: aiohttp.ClientSession
) -> None:
    hook = await connect(http, hook_worker)
    opened = await hook.open(customConfig={"interaction_id": "genesys-call-7"}, supportedLanguages=True)
    assert opened["parameters"]["supportedLanguages"] == ["en-US"]
    assert hook_worker.manager.get(CallKey(ORG, "genesys-call-7")) is not None
    await hook.close()


async def test_single_party_offers_and_l16(hook_worker: Worker, http: aiohttp.ClientSession) -> None:
    offer = {"type": "audio", "format": "L16", "channels": ["internal"], "rate": 8000}
    hook = await connect(http, hook_worker)
    opened = await hook.open(
        media=[{"type": "audio", "format": "opus", "channels": ["external"], "rate": 48000}, offer]
    )
    assert opened["parameters"]["media"] == [offer]
    (session,) = hook_worker.manager.sessions
    assert session.core.fmt == AudioFormat(Encoding.LINEAR16, 8000, 1)
    await hook.close()


async def test_no_media_that_fits_is_refused_with_disconnect(
    hook_worker: Worker, http: aiohttp.ClientSession
) -> None:
    hook = await connect(http, hook_worker)
    await hook.send(
        "open",
        {
            "organizationId": ORG,
            "conversationId": str(uuid.uuid4()),
            "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
            "media": [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 16000}],
        },
    )
    disconnect = await hook.expect("disconnect")
    assert disconnect["parameters"]["reason"] == "error"
    assert "8000 Hz" in disconnect["parameters"]["info"]
    await hook.close("disconnect")
    assert not hook_worker.manager.sessions


@pytest.mark.parametrize(
    ("session_id", "conversation_id"),
    [(NULL, NULL), (NULL, str(uuid.uuid4())), (str(uuid.uuid4()), NULL)],  # either null id
)
async def test_the_connection_probe_opens_no_call(
    hook_worker: Worker, http: aiohttp.ClientSession, session_id: str, conversation_id: str
) -> None:
    hook = await connect(http, hook_worker, session_id=session_id)
    opened = await hook.open(conversation_id)
    assert opened["parameters"]["media"] == [STEREO_PCMU]
    await hook.ws.send_bytes(b"\xff" * 320)  # dropped: there is no call
    await hook.close()
    assert not hook_worker.manager.sessions


async def test_open_is_answered_while_the_provider_is_still_connecting(http: aiohttp.ClientSession) -> None:
    slow = MockProvider(MockOptions(open_delay_ms=6000))
    async with running_worker(slow, audiohook_api_keys=KEYS) as worker:
        hook = await connect(http, worker)
        t0 = time.monotonic()
        await hook.open()
        assert time.monotonic() - t0 < 2.0  # Genesys gives up after about 5 s
        assert not slow.streams  # the provider has not opened yet
        await hook.send("close", {"reason": "reconnect"})
        await hook.expect("closed")


@pytest.mark.parametrize(
    ("bad", "info"),
    [
        ("not json", "not valid JSON"),
        ('{"version": "2", "type": "open"}', "well-formed"),
        ("unknown", "is not a supported client message"),
        ("seq", "Invalid seq value"),
        ("serverseq", "Invalid serverseq"),
        ("odd frame", "not whole samples"),
    ],
)
async def test_bad_input_gets_disconnect_with_reason_error_and_the_call_still_flushes(
    hook_worker: Worker, http: aiohttp.ClientSession, bad: str, info: str
) -> None:
    conversation = str(uuid.uuid4())
    watcher = await open_sse(http, hook_worker, f"/v1/calls/{conversation}/events")
    hook = await connect(http, hook_worker)
    await hook.open(conversation)
    await hook.audio(speechlike(1.0, STEREO, seed=5) + silence(0.3, STEREO))
    if bad == "unknown":
        await hook.send("dance", {})
    elif bad == "seq":
        hook.seq += 1
        await hook.send("ping", {})
    elif bad == "serverseq":
        await hook.send("ping", {}, serverseq=99)
    elif bad == "odd frame":
        await hook.ws.send_bytes(b"\x00\x01\x02")
    else:
        await hook.ws.send_str(bad)
    disconnect = await hook.expect("disconnect")
    assert disconnect["parameters"]["reason"] == "error" and info in disconnect["parameters"]["info"]
    await hook.close("disconnect")
    assert [t for t in transcripts(hook) if t["isFinal"]]  # what was heard still arrived
    await watcher.rest()
    assert watcher.of("session_ended")[0]["reason"] == "close"


async def test_audio_before_opened_is_a_protocol_error(
    hook_worker: Worker, http: aiohttp.ClientSession
) -> None:
    hook = await connect(http, hook_worker)
    await hook.ws.send_bytes(b"\xff" * 160)
    disconnect = await hook.expect("disconnect")
    assert "Received audio in state PREPARING" in disconnect["parameters"]["info"]


async def test_a_reconnect_with_continued_sessions_continues_the_same_call(
    hook_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    conversation = str(uuid.uuid4())
    watcher = await open_sse(http, hook_worker, f"/v1/calls/{conversation}/events")
    first = await connect(http, hook_worker)
    await first.open(conversation)
    await first.audio(speechlike(1.0, STEREO, seed=6))
    await first.close("reconnect")
    await first.ws.close()

    second = await connect(http, hook_worker)
    continued = [{"id": first.id, "serverseq": first.serverseq, "clientseq": first.seq}]
    await second.open(conversation, continuedSessions=continued)
    await second.audio(speechlike(1.0, STEREO, seed=7) + silence(0.3, STEREO))
    await second.close()

    await watcher.rest()
    assert len(watcher.of("session_started")) == 1 and len(watcher.of("session_ended")) == 1
    assert mock_provider.opens == 1
    assert watcher.of("session_ended")[0]["audio_s"] == pytest.approx(2.3)
    assert [t for t in transcripts(second) if t["isFinal"]]


async def test_the_worker_pauses_resumes_and_disconnects_on_request(
    hook_worker: Worker, http: aiohttp.ClientSession
) -> None:
    hook = await connect(http, hook_worker)
    await hook.open(customConfig={"interaction_id": "ctl-1"})
    base = f"http://127.0.0.1:{hook_worker.port}/v1/audiohook"
    for action in ("pause", "resume", "disconnect"):
        response = await http.post(f"{base}/ctl-1/{action}")
        assert response.status == 200 and (await response.json())["sessions"] == 1
        message = await hook.expect(action)
        if action == "disconnect":
            assert message["parameters"]["reason"] == "completed"
    assert (await http.post(f"{base}/nobody/pause")).status == 404
    await hook.close("disconnect")


async def test_a_draining_worker_disconnects_its_sessions(http: aiohttp.ClientSession) -> None:
    async with running_worker(audiohook_api_keys=KEYS) as worker:
        hook = await connect(http, worker)
        await hook.open()
        drain = asyncio.create_task(worker.manager.drain(5))
        disconnect = await hook.expect("disconnect")
        assert (
            disconnect["parameters"]["reason"] == "error" and "shutdown" in disconnect["parameters"]["info"]
        )
        await hook.close("disconnect")
        await drain


# --- authentication ------------------------------------------------------------------------------


async def test_closed_without_keys(worker: Worker, http: aiohttp.ClientSession) -> None:
    response = await http.get(url(worker).replace("ws://", "http://"), headers={"X-API-KEY": "k"})
    assert response.status in (403, 426)
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await http.ws_connect(url(worker), headers={"X-API-KEY": "k"})
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("key", "secret", "status"),
    [
        (None, None, 401),
        ("wrong", None, 401),
        ("key-2", None, 401),  # has a client secret: must sign
        ("key-2", b"the wrong secret", 401),
        ("key-1", None, 101),
        ("key-2", SECRET, 101),
    ],
)
async def test_api_keys_and_signatures(
    hook_worker: Worker, http: aiohttp.ClientSession, key: str | None, secret: bytes | None, status: int
) -> None:
    headers = upgrade_headers(
        key or "x", session_id=str(uuid.uuid4()), secret=secret, authority=f"127.0.0.1:{hook_worker.port}"
    )
    if key is None:
        del headers["X-API-KEY"]
    if status == 101:
        ws = await http.ws_connect(url(hook_worker), headers=headers)
        await ws.close()
        return
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await http.ws_connect(url(hook_worker), headers=headers)
    assert caught.value.status == status


async def test_a_replayed_or_stale_signature_is_refused(
    hook_worker: Worker, http: aiohttp.ClientSession
) -> None:
    authority = f"127.0.0.1:{hook_worker.port}"
    headers = upgrade_headers("key-2", session_id=str(uuid.uuid4()), secret=SECRET, authority=authority)
    ws = await http.ws_connect(url(hook_worker), headers=headers)
    await ws.close()
    for replay in (
        headers,
        upgrade_headers(
            "key-2",
            session_id=str(uuid.uuid4()),
            secret=SECRET,
            authority=authority,
            created=int(time.time()) - 60,
        ),
        upgrade_headers(
            "key-2", session_id=str(uuid.uuid4()), secret=SECRET, authority=authority, target="/elsewhere"
        ),
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(url(hook_worker), headers=replay)
        assert caught.value.status == 401


async def test_an_open_for_another_organization_is_unauthorized(
    hook_worker: Worker, http: aiohttp.ClientSession
) -> None:
    hook = await connect(http, hook_worker)
    await hook.send(
        "open",
        {
            "organizationId": str(uuid.uuid4()),
            "conversationId": str(uuid.uuid4()),
            "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
            "media": [STEREO_PCMU],
        },
    )
    disconnect = await hook.expect("disconnect")
    assert disconnect["parameters"]["reason"] == "unauthorized"
    await wait_until(lambda: not hook_worker.manager.sessions)


async def test_stereo_l16_frames_must_be_whole_four_byte_samples(
    hook_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    stereo_l16 = {"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 8000}
    hook = await connect(http, hook_worker)
    await hook.open(media=[stereo_l16])
    good = speechlike(0.5, AudioFormat(Encoding.LINEAR16, 8000, 2), seed=9)
    await hook.audio(good, bytes_per_second=32000)
    await hook.ws.send_bytes(b"\x00" * 6)  # one and a half stereo samples
    disconnect = await hook.expect("disconnect")
    assert "6 bytes is not whole samples of L16 x2" in disconnect["parameters"]["info"]
    await hook.close("error")
    assert bytes(mock_provider.streams[0].received) == good  # byte for byte; the bad frame dropped


async def test_a_fault_of_the_workers_own_is_a_disconnect_not_a_crash(
    hook_worker: Worker, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(offers: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ah, "choose_media", broken)
    hook = await connect(http, hook_worker)
    await hook.send(
        "open", {"organizationId": ORG, "conversationId": str(uuid.uuid4()), "participant": {}, "media": []}
    )
    disconnect = await hook.expect("disconnect")
    assert disconnect["parameters"] == {"reason": "error", "info": "Internal server error"}
    await hook.close("error")
    monkeypatch.undo()
    again = await connect(http, hook_worker)  # the endpoint serves on
    await again.open()
    await again.close()


async def test_a_dropped_socket_only_leaves_the_call_which_a_new_session_continues(
    hook_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    conversation = str(uuid.uuid4())
    first = await connect(http, hook_worker)
    await first.open(conversation)
    await first.audio(speechlike(0.5, STEREO, seed=8))
    await first.ws.close()  # no `close`: a network drop
    runner = hook_worker.manager.get(CallKey(ORG, conversation))
    assert runner is not None
    await wait_until(lambda: runner.core.source_count == 0)
    second = await connect(http, hook_worker)
    await second.open(conversation, continuedSessions=[{"id": first.id, "serverseq": 1, "clientseq": 1}])
    assert hook_worker.manager.get(CallKey(ORG, conversation)) is runner
    await second.audio(speechlike(0.5, STEREO, seed=9) + silence(0.3, STEREO))
    await second.close()
    assert mock_provider.opens == 1 and runner.status.end_reason == "close"
