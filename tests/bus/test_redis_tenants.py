"""Tenants on the Redis bus: two tenants' calls with the same interaction ids on one worker and
one Redis stay apart end to end, and a signed AudioHook upgrade replayed to another worker
sharing the Redis is refused there."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import pytest
import redis.asyncio as aioredis

from asr_worker.audiohook.signature import ApiKeys as AudioHookKeys
from asr_worker.bus.redis.wire import call_tag, transcript_key
from asr_worker.providers.mock import MockProvider, expected_words
from asr_worker.tenancy import ApiKeys
from asr_worker.tools.publish import publish_call
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.audiohook import upgrade_headers
from tests.support.client import CallClient
from tests.support.redis_server import RedisServer, final_words, wait_for_calls_to_end
from tests.support.telephony import open_sse

from .conftest import call_audio
from .test_redis_streams import bus_worker

KEY_A, KEY_B = "tenant-a-key-41e0", "tenant-b-key-9c7d"
KEYS = ApiKeys.parse(f"{KEY_A}:tenant-a:stream+watch,{KEY_B}:tenant-b:stream+watch")


async def test_two_tenants_calls_with_the_same_ids_stay_apart(
    redis_server: RedisServer, r: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    provider = MockProvider()
    async with bus_worker(provider, redis_server, api_keys=KEYS) as worker:
        base = f"ws://127.0.0.1:{worker.port}/v1/audio/same-1?encoding=linear16&sample_rate=8000"
        sockets = {
            key: CallClient(await http.ws_connect(base, headers={"Authorization": f"Bearer {key}"}))
            for key in (KEY_A, KEY_B)
        }
        watch = {
            key: await open_sse(http, worker, "/v1/events?replay=0", {"Authorization": f"Bearer {key}"})
            for key in (KEY_A, KEY_B)
        }
        spoken = {KEY_A: speechlike(1.0, PCM8K, seed=21), KEY_B: speechlike(1.6, PCM8K, seed=22)}
        await asyncio.gather(*(sockets[k].send_frames(frames(spoken[k])) for k in sockets))
        bus_audio = {"tenant-a": call_audio(1.4, seed=23), "tenant-b": call_audio(2.2, seed=24)}
        await asyncio.gather(
            *(
                publish_call(audio, redis_server.url, "same-2", tenant_id=tenant, speed=0)
                for tenant, audio in bus_audio.items()
            )
        )
        for call in sockets.values():
            await call.end()
            await call.collect()
        tags = [call_tag(t, i) for t in ("tenant-a", "tenant-b") for i in ("same-1", "same-2")]
        on_redis = await wait_for_calls_to_end(r, tags)
    for key, tenant in ((KEY_A, "tenant-a"), (KEY_B, "tenant-b")):
        call = sockets[key]
        assert call.final_words() == expected_words(spoken[key], PCM8K)
        assert {e["tenant_id"] for e in call.events if "tenant_id" in e} == {tenant}
        assert final_words(on_redis[call_tag(tenant, "same-1")]) == expected_words(spoken[key], PCM8K)
        assert final_words(on_redis[call_tag(tenant, "same-2")]) == expected_words(
            bus_audio[tenant].data, PCM8K
        )
        seen = watch[key]
        watch[key].response.close()
        assert all(e.data.get("tenant_id") == tenant for e in seen.events)
    assert await r.exists(transcript_key("same-1")) == 0  # the default tenant has no such call


@pytest.mark.parametrize("fresh_nonce", [False, True], ids=["replayed", "fresh"])
async def test_a_signed_audiohook_upgrade_replayed_to_another_worker_is_refused(
    redis_server: RedisServer, http: aiohttp.ClientSession, fresh_nonce: bool
) -> None:
    secret = b"shared-client-secret-0123456789"
    keys = AudioHookKeys.parse(f"hook-key:{base64.b64encode(secret).decode()}")
    authority = "audiohook.example"  # both workers behind one load balancer's name
    async with (
        bus_worker(MockProvider(), redis_server, audiohook_api_keys=keys) as first,
        bus_worker(MockProvider(), redis_server, audiohook_api_keys=keys) as second,
    ):
        headers = upgrade_headers(
            "hook-key", session_id="6f0a1a7e-3c0e-4a8e-9c56-8b1b7b1e1a01", secret=secret, authority=authority
        )
        ws = await http.ws_connect(
            f"ws://127.0.0.1:{first.port}/v1/audiohook", headers={**headers, "Host": authority}
        )
        await ws.close()
        if fresh_nonce:
            headers = upgrade_headers(
                "hook-key",
                session_id="6f0a1a7e-3c0e-4a8e-9c56-8b1b7b1e1a02",
                secret=secret,
                authority=authority,
            )
        url = f"ws://127.0.0.1:{second.port}/v1/audiohook"
        if fresh_nonce:
            again = await http.ws_connect(url, headers={**headers, "Host": authority})
            await again.close()
            return
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers={**headers, "Host": authority})
        assert refused.value.status == 401
