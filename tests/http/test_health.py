"""`/health` from facts: a provider no call has tried yet is `unknown` (not `ok`), and after a
call it says what the call found: it connected, it was refused, nothing answered, or it failed
for every call and where new calls go meanwhile (the fallback, if there is one). The same for
the Redis bus before and after its first connection attempt."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import pytest

from asr_worker.bus.redis.bus import RedisStreamsBus
from asr_worker.bus.redis.options import RedisOptions
from asr_worker.dgserver import Faults
from asr_worker.providers.deepgram import DeepgramOptions, DeepgramProvider
from asr_worker.providers.mock import MockProvider
from asr_worker.tools.audio_files import AudioFile
from asr_worker.tools.stream import CallResult, stream_calls
from asr_worker.worker import Worker
from tests.conftest import base_url, free_port, running_worker
from tests.support.audio import PCM8K, speechlike
from tests.support.dg_server import deepgram_provider, deepgram_worker, running_dg_server
from tests.support.wait import until

CALL = AudioFile(Path("call.wav"), PCM8K, speechlike(0.6))


async def health(http: aiohttp.ClientSession, worker: Worker) -> dict[str, object]:
    async with http.get(f"{base_url(worker)}/health") as response:
        assert response.status == 200
        answer: dict[str, object] = await response.json()
        return answer


def check(answer: dict[str, object], name: str) -> dict[str, object]:
    checks = answer["checks"]
    assert isinstance(checks, dict)
    entry: dict[str, object] = checks[name]
    return entry


async def one_call(worker: Worker) -> CallResult:
    (result,) = await stream_calls(CALL, f"ws://127.0.0.1:{worker.port}", speed=0, out=io.StringIO())
    return result


async def test_a_provider_no_call_has_tried_is_unknown_and_ok_once_a_call_connected(
    http: aiohttp.ClientSession,
) -> None:
    async with running_dg_server() as dg, deepgram_worker(dg) as worker:
        before = await health(http, worker)
        assert (await one_call(worker)).ended is not None
        after = await health(http, worker)
    assert check(before, "provider") == {
        "state": "unknown",
        "ok": None,
        "detail": "no connection yet: the first call will show whether it works",
    }
    assert before["status"] == "ok"  # nothing is known to fail
    assert check(after, "provider") == {"state": "ok", "ok": True, "detail": "ok"}
    assert after["status"] == "ok" and after["activeCalls"] == 0


@pytest.mark.parametrize(
    ("refusal", "says"),
    [
        (401, "INVALID_AUTH"),  # a refusal retrying cannot fix
        (503, "never connected: 1 connection attempt failed (last: HTTP 503"),
        (0, "never connected: 1 connection attempt failed (last: Connect call failed"),  # nothing listens
    ],
)
async def test_a_refused_provider_is_unknown_until_a_call_tries_it_then_failing(
    http: aiohttp.ClientSession, refusal: int, says: str
) -> None:
    async with running_dg_server(faults=Faults(reject_status=refusal)) as dg:
        url = dg.url if refusal else f"ws://127.0.0.1:{free_port()}/v1/listen"
        provider = DeepgramProvider(DeepgramOptions(url=url, api_key=deepgram_provider(dg).options.api_key))
        async with running_worker(provider, finalize_timeout_s=0.2) as worker:
            before = await health(http, worker)
            async with aiohttp.ClientSession() as client:
                ws = await client.ws_connect(f"ws://127.0.0.1:{worker.port}/v1/audio/tried?encoding=linear16")
                await ws.send_bytes(CALL.data)
                await until(lambda: provider.breaker.failures > 0 or provider.health().state == "failing")
                after = await health(http, worker)
                await ws.close()
    assert check(before, "provider")["state"] == "unknown" and before["status"] == "ok"
    assert check(after, "provider")["state"] == "failing" and check(after, "provider")["ok"] is False
    assert says in str(check(after, "provider")["detail"]), check(after, "provider")
    assert after["status"] == "degraded"


async def test_with_a_fallback_the_health_says_where_new_calls_go_while_the_primary_fails(
    http: aiohttp.ClientSession,
) -> None:
    async with running_dg_server(faults=Faults(reject_status=503)) as dg:
        primary = deepgram_provider(dg, breaker_threshold=1, breaker_cooldown_s=60.0)
        async with running_worker(primary, fallback=MockProvider(name="mock")) as worker:
            before = await health(http, worker)
            result = await one_call(worker)
            after = await health(http, worker)
    assert check(before, "provider")["state"] == "unknown"
    assert check(before, "fallback") == {
        "state": "ok",
        "ok": True,
        "detail": "",
        "provider": "mock",
        "calls": 0,
        "maxCalls": 32,
    }
    assert result.ended is not None and result.ended["provider"] == "mock"  # the call moved, whole
    detail = str(check(after, "provider")["detail"])
    assert detail.startswith("circuit open after 1 connection failures in a row (last: HTTP 503")
    assert detail.endswith("s more") and "; new calls start on mock, the fallback, for " in detail
    assert after["status"] == "degraded"


async def test_the_bus_is_unknown_until_its_first_attempt_then_says_what_calls_do_meanwhile(
    http: aiohttp.ClientSession,
) -> None:
    port = free_port()
    closed = f"redis://127.0.0.1:{port}/0"
    idle = RedisStreamsBus(RedisOptions(url=closed))
    assert {k: idle.status()[k] for k in ("state", "ok")} == {"state": "unknown", "ok": None}
    async with running_worker(MockProvider(), pubsub_adapter="redis_streams", redis_url=closed) as worker:
        await until(lambda: worker.bus.status()["state"] == "failing")
        answer = await health(http, worker)
    bus = check(answer, "bus")
    assert bus["ok"] is False and answer["status"] == "degraded"
    assert str(bus["detail"]).startswith(f"127.0.0.1:{port}/0 unreachable (")
    assert "calls in progress go on and their events wait here (0 of at most 10000" in str(bus["detail"])
    assert str(bus["detail"]).endswith("/ready says bus_down, so new calls go to other workers")
