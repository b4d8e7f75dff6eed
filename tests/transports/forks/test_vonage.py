"""`/v1/vonage`: Vonage Voice API WebSockets, their messages as Vonage's documentation shows
them (tests/transports/fixtures/vonage/), their upgrade signed as Vonage signs it (a JWT that
Vonage's own SDK, `vonage-jwt`, verifies), into a real worker on the mock provider."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest
from vonage_jwt import verify_signature

from asr_worker.config import secrets, settings_with
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.credentials import Secret
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.transports.forks import vonage
from asr_worker.transports.forks.vonage import SignatureSecrets
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, speechlike
from tests.support.telephony import fixture_text, open_sse, ws_url

MONO16 = AudioFormat(Encoding.LINEAR16, 16000, 1)
SECRET = "s1gnatur3-s3cret-for-acme-0123456789ab"
KEY = "k-vonage-8b21d0e4"


def vonage_jwt(secret: str = SECRET, *, issued_s: float | None = None, jti: str | None = None) -> str:
    """The JWT Vonage puts on a signed request: HS256 with the account's signature secret."""
    claims = {
        "iat": int(issued_s if issued_s is not None else time.time()),
        "jti": jti or str(uuid.uuid4()),
        "iss": "Vonage",
        "api_key": "a1b2c3d4",
        "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    }
    token = jwt.encode(claims, secret, algorithm="HS256")
    assert verify_signature(token, secret)  # Vonage's SDK takes it for one of Vonage's
    return token


@pytest.fixture
async def signed_worker(mock_provider: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(
        mock_provider,
        worker_token=Secret(KEY),
        vonage_signature_secrets=SignatureSecrets.parse(f"{SECRET}:acme"),
        session_grace_s=120,
    ) as worker:
        yield worker


async def play(
    ws: aiohttp.ClientWebSocketResponse, audio: bytes, fmt: AudioFormat = MONO16, texts: tuple[str, ...] = ()
) -> None:
    """Vonage's side after its first frame: 20 ms binary frames, events, then the hangup's close."""
    for frame in frames(audio, fmt):
        await ws.send_bytes(frame)
    for text in texts:
        await ws.send_str(text)
    await ws.close()


async def test_a_signed_socket_is_its_accounts_tenants_call_and_ends_when_vonage_closes_it(
    signed_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    worker = signed_worker
    watcher = await open_sse(
        http, worker, "/v1/calls/CALL-UUID-1/events?tenant_id=acme", {"Authorization": f"Bearer {KEY}"}
    )
    ws = await http.ws_connect(
        ws_url(worker, "/v1/vonage?interaction_id=CALL-UUID-1"),
        headers={"Authorization": f"Bearer {vonage_jwt()}"},
    )
    await ws.send_str(fixture_text("vonage", "connected"))  # audio/l16;rate=16000
    audio = speechlike(1.5, MONO16, seed=8)
    await play(ws, audio, texts=(fixture_text("vonage", "dtmf"),))
    await watcher.rest()
    assert watcher.of("session_ended")[0]["reason"] == "end" and not watcher.of("error")
    assert [d["digit"] for d in watcher.of("dtmf")] == ["5"]
    (stream,) = mock_provider.streams
    assert (stream.request.tenant_id, stream.request.interaction_id) == ("acme", "CALL-UUID-1")
    assert stream.request.fmt == MONO16 and bytes(stream.received) == audio
    finals = [w for e in watcher.of("transcript") if e["is_final"] for w in str(e["text"]).split()]
    assert finals == expected_words(audio, MONO16)


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (lambda: vonage_jwt("another-accounts-signature-secret-xyz"), "signed by another secret"),
        (lambda: vonage_jwt(issued_s=time.time() - 3600), "an hour old"),
        (lambda: "not.a.jwt", "not a JWT"),
    ],
)
async def test_an_upgrade_vonage_did_not_sign_now_is_refused(
    signed_worker: Worker, http: aiohttp.ClientSession, token: object, why: str
) -> None:
    assert callable(token)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(
            ws_url(signed_worker, "/v1/vonage?interaction_id=x"),
            headers={"Authorization": f"Bearer {token()}"},
        )
    assert refused.value.status == 401, why


async def test_a_replayed_signed_upgrade_is_refused_and_a_key_admits_a_socket_too(
    signed_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    token = vonage_jwt(jti="once-only")
    url = ws_url(signed_worker, "/v1/vonage?interaction_id=replayed")
    first = await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
    assert refused.value.status == 401
    await first.close()
    # "authorization": {"type": "custom", "value": "Bearer KEY"}: the worker's own key
    custom = await http.ws_connect(
        url.replace("replayed", "by-key"), headers={"Authorization": f"Bearer {KEY}"}
    )
    await custom.send_str(fixture_text("vonage", "connected"))
    await play(custom, speechlike(0.2, MONO16))
    assert mock_provider.streams[-1].request.interaction_id == "by-key"


@pytest.mark.parametrize(
    ("path", "first", "reason"),
    [
        ("/v1/vonage?interaction_id=v", b"\x00\x00" * 320, "the first message must be websocket:connected"),
        ("/v1/vonage?interaction_id=v", json.dumps({"event": "websocket:dtmf"}), "not 'websocket:dtmf'"),
        (
            "/v1/vonage?interaction_id=v",
            json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=44100"}),
            "sample rate 44100",
        ),
        (
            "/v1/vonage?interaction_id=v",
            json.dumps({"event": "websocket:connected", "content-type": "audio/pcmu"}),
            "is not audio/l16;rate=N",
        ),
        ("/v1/vonage", fixture_text("vonage", "connected"), "name the call"),
    ],
)
async def test_bad_input_before_the_call_is_closed_with_the_reason_and_a_log_line(
    worker: Worker,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    path: str,
    first: str | bytes,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.forks")
    ws = await http.ws_connect(ws_url(worker, path))
    await (ws.send_bytes(first) if isinstance(first, bytes) else ws.send_str(first))
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008 and reason in str(msg.extra), msg
    assert [r for r in caplog.records if r.getMessage() == "fork refused"]


async def test_an_unknown_event_is_an_error_event_and_the_call_goes_on(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    watcher = await open_sse(http, worker, "/v1/calls/v-unknown/events")
    ws = await http.ws_connect(ws_url(worker, "/v1/vonage?interaction_id=v-unknown"))
    await ws.send_str(fixture_text("vonage", "connected"))
    await play(
        ws,
        speechlike(0.4, MONO16),
        texts=(json.dumps({"event": "websocket:media:update"}), json.dumps({"event": "websocket:notify"})),
    )
    await watcher.rest()
    assert [e["code"] for e in watcher.of("error")] == ["unknown_message"]
    assert watcher.of("session_ended")[0]["reason"] == "end"


def test_signature_secrets_are_hidden_and_handed_to_the_log_formatter() -> None:
    parsed = SignatureSecrets.parse(f"{SECRET}:acme, {SECRET}-other:beta")
    assert parsed is not None and SECRET not in repr(parsed) and SECRET not in str(parsed)
    settings = settings_with(vonage_signature_secrets=parsed)
    assert SECRET in secrets(settings, vonage.SETTINGS)  # the log formatter hides them wherever they appear
    with pytest.raises(ValueError, match="at least 32 characters"):
        SignatureSecrets.parse("short-secret:acme")
