"""Tenants, over real sockets: a call belongs to the tenant whose key opened it, and a key of
another tenant reaches none of it on any route, whatever interaction id it names."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from asr_worker.audiohook.signature import ApiKeys as AudioHookKeys
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.tenancy import ApiKeys
from asr_worker.transports.twilio import AuthTokens
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.audiohook import ORG
from tests.support.audiohook import connect as hook_connect
from tests.support.client import CallClient
from tests.support.telephony import open_sse, twilio_media, twilio_start, twilio_stop, ws_url

VICTIM_KEY = "victim-key-5b1e0c"
ATTACKER_KEY = "attacker-key-9d2f41"
WATCH_ONLY_KEY = "watcher-key-77aa01"
HOOK_KEY = "hook-key-c0ffee"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
KEYS = ApiKeys.parse(
    f"{VICTIM_KEY}:victim:stream+watch+operate,{ATTACKER_KEY}:attacker:stream+watch+operate,"
    f"{WATCH_ONLY_KEY}:victim:watch"
)
CALL = "call-1"
STEREO = AudioFormat(Encoding.MULAW, 8000, 2)


@asynccontextmanager
async def tenant_worker(provider: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(
        provider,
        api_keys=KEYS,
        audiohook_api_keys=AudioHookKeys.parse(HOOK_KEY),
        twilio_auth_tokens=AuthTokens.parse(f"{TWILIO_TOKEN}:attacker"),
    ) as worker:
        yield worker


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def victim_call(http: aiohttp.ClientSession, worker: Worker) -> CallClient:
    url = f"ws://127.0.0.1:{worker.port}/v1/audio/{CALL}?encoding=linear16&sample_rate=8000"
    call = CallClient(await http.ws_connect(url, headers=auth(VICTIM_KEY)))
    await call.next_event("session_started")
    return call


async def test_no_route_joins_another_tenants_call_by_naming_its_id(http: aiohttp.ClientSession) -> None:
    provider = MockProvider()
    async with tenant_worker(provider) as worker:
        victim = await victim_call(http, worker)
        audio = speechlike(1.0, PCM8K, seed=11)
        await victim.send_frames(frames(audio))
        victim_sse = await open_sse(http, worker, f"/v1/calls/{CALL}/events", auth(VICTIM_KEY))

        # The ingest socket with the attacker's key, naming the victim's call: its own call.
        url = f"ws://127.0.0.1:{worker.port}/v1/audio/{CALL}?encoding=linear16&sample_rate=8000"
        attacker = CallClient(await http.ws_connect(url, headers=auth(ATTACKER_KEY)))
        started = await attacker.next_event("session_started")
        assert started["tenant_id"] == "attacker"
        await attacker.send_frames(frames(speechlike(0.6, PCM8K, seed=12)))
        # ... and claiming the victim's tenant is refused outright.
        claim = await http.ws_connect(url + "&tenant_id=victim", headers=auth(ATTACKER_KEY))
        refusal = json.loads((await claim.receive()).data)
        assert refusal["code"] == "forbidden" and (await claim.receive()).type is aiohttp.WSMsgType.CLOSE

        # Twilio, Exotel and /v1/realtime with the attacker's key, and AudioHook with a key of
        # its own organization, each naming the victim's call id: each its own call.
        twilio = await http.ws_connect(ws_url(worker, "/v1/twilio"), headers=auth(ATTACKER_KEY))
        await twilio.send_str(twilio_start(interaction_id=CALL))
        await twilio.send_str(twilio_media("inbound", 1, 0, b"\x7f" * 160))
        exotel_auth = "Basic " + base64.b64encode(f"k:{ATTACKER_KEY}".encode()).decode()
        exotel = await http.ws_connect(ws_url(worker, "/v1/exotel"), headers={"Authorization": exotel_auth})
        await exotel.send_str(json.dumps({"event": "connected"}))
        realtime = await http.ws_connect(
            ws_url(worker, f"/v1/realtime?intent=transcription&interaction_id={CALL}"),
            headers=auth(ATTACKER_KEY),
        )
        hook = await hook_connect(http, worker, HOOK_KEY)
        await hook.open(str(uuid.uuid4()), customConfig={"interaction_id": CALL})
        await hook.audio(speechlike(0.4, STEREO, seed=13))
        closed = await hook.close()
        assert closed["type"] == "closed"
        await twilio.send_str(twilio_stop())

        # The victim's call carries the victim's audio alone and goes on to its own end.
        await victim.end()
        events = await victim.collect()
        assert victim.final_words() == expected_words(audio, PCM8K)
        assert {e["tenant_id"] for e in events if "tenant_id" in e} == {"victim"}
        ended = victim.of("session_ended")
        assert len(ended) == 1 and ended[0]["reason"] == "end"
        watched = await victim_sse.rest()
        assert [e.data["seq"] for e in watched] == [e["seq"] for e in events]
        keys = {runner.key for runner in worker.manager.sessions}
        assert CallKey("victim", CALL) not in keys  # ended
        assert CallKey("attacker", CALL) in keys or any(k.tenant == ORG for k in keys)
        for socket in (attacker.ws, claim, twilio, exotel, realtime, hook.ws):
            await socket.close()


async def test_listings_and_streams_show_only_the_keys_tenant(http: aiohttp.ClientSession) -> None:
    provider = MockProvider()
    async with tenant_worker(provider) as worker:
        victim = await victim_call(http, worker)
        base = f"http://127.0.0.1:{worker.port}"
        async with http.get(f"{base}/v1/sessions", headers=auth(ATTACKER_KEY)) as response:
            assert response.status == 200 and (await response.json())["count"] == 0
        async with http.get(f"{base}/v1/sessions", headers=auth(VICTIM_KEY)) as response:
            listing = await response.json()
            assert listing["count"] == 1 and listing["sessions"][0]["tenant_id"] == "victim"
        async with http.get(f"{base}/v1/sessions", headers=auth(WATCH_ONLY_KEY)) as response:
            assert response.status == 403  # listing is operate's
        async with http.get(f"{base}/v1/sessions?tenant_id=victim", headers=auth(ATTACKER_KEY)) as response:
            assert response.status == 403
        # The attacker's event streams, of the call's id and of every call, see nothing of it.
        theirs = await open_sse(http, worker, f"/v1/calls/{CALL}/events", auth(ATTACKER_KEY))
        every = await open_sse(http, worker, "/v1/events", auth(ATTACKER_KEY))
        await victim.send_frames(frames(speechlike(0.6, PCM8K, seed=14)))
        await victim.end()
        await victim.collect()
        assert theirs.events == [] and every.events == []
        async with http.get(f"{base}/v1/events", headers=auth(WATCH_ONLY_KEY)) as response:
            assert response.status == 200
        theirs.response.close()
        every.response.close()


async def test_a_signed_twilio_stream_is_its_accounts_tenants(http: aiohttp.ClientSession) -> None:
    """Twilio's own helper computes the signature the stream's upgrade carries."""
    provider = MockProvider()
    async with tenant_worker(provider) as worker:
        url = ws_url(worker, "/v1/twilio")
        signed = RequestValidator(TWILIO_TOKEN).compute_signature(url.replace("ws://", "wss://"), {})
        good = await http.ws_connect(url, headers={"X-Twilio-Signature": signed})
        await good.send_str(twilio_start(interaction_id="signed-1"))
        await good.send_str(twilio_media("inbound", 1, 0, b"\x7f" * 160))
        runner = None
        for _ in range(200):
            runner = worker.manager.get(CallKey("attacker", "signed-1"))
            if runner is not None:
                break
            await asyncio.sleep(0.01)
        assert runner is not None
        await good.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers={"X-Twilio-Signature": signed[:-4] + "AAA="})
        assert refused.value.status == 401
