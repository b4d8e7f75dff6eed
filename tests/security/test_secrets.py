"""The Deepgram key, the worker token and the Redis password never leak: not into logs (every
record at DEBUG, through the JSON formatter), events, SSE, /health, /metrics, /v1/sessions,
error messages, reprs or tracebacks, whatever the provider does (401, 403, 429, 5xx, drops,
closes, garbage, timeouts, an unreachable URL, a server that echoes the key back).

Real workers over real sockets: the Deepgram-protocol test server (dg-server over the mock
engine, in-process), and a real redis-server started with `--requirepass`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from asr_worker.bus.redis import RedisOptions
from asr_worker.config import load_settings
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.credentials import Secret
from asr_worker.dgserver import Faults
from asr_worker.errors import ProviderError
from asr_worker.providers import deepgram
from asr_worker.providers.base import StreamRequest
from asr_worker.providers.deepgram import DeepgramOptions, DeepgramProvider
from asr_worker.providers.mock import MockProvider
from asr_worker.tools.audio_files import AudioFile
from asr_worker.tools.publish import publish_call
from asr_worker.tools.stream import stream_calls
from asr_worker.worker import Worker
from tests.conftest import free_port, running_worker
from tests.support.audio import PCM8K, frames, speechlike
from tests.support.client import CallClient
from tests.support.dg_server import deepgram_provider, running_dg_server
from tests.support.exposure import Exposure, exception_text, json_logs
from tests.support.http_server import serving
from tests.support.redis_server import RedisServer, until, wait_for_calls_to_end
from tests.support.telephony import (
    exotel_media,
    exotel_start,
    exotel_stop,
    twilio_media,
    twilio_start,
    twilio_stop,
)

# Distinctive values nothing else registers with the log formatter.
KEY = "dg-live-7c2f9e41b6a35d08"
SERVER_KEY = "dg-server-3a8e5c17f2b94d60"
TOKEN = "wt-5b91e0c3d7a2468f"
WRONG_TOKEN = "wt-guess-0f1e2d3c4b5a"
REDIS_PASSWORD = "rp-e4c8a1f06b9d2735"


async def read_sse(
    http: aiohttp.ClientSession, url: str, interaction_id: str, timeout_s: float = 20.0
) -> str:
    """An SSE stream's text, until the call's `session_ended` (or the server ends it)."""
    lines: list[str] = []
    async with http.get(url) as response, asyncio.timeout(timeout_s):
        assert response.status == 200, response.status
        async for raw in response.content:
            line = raw.decode()
            lines.append(line)
            if '"session_ended"' in line and f'"interaction_id":"{interaction_id}"' in line:
                break
    return "".join(lines)


async def run_call(
    http: aiohttp.ClientSession,
    worker: Worker,
    interaction_id: str,
    exposure: Exposure,
    token: str | None = None,
) -> CallClient:
    """One ingest call (1 s of speech, then end) watched over both SSE streams; every event,
    stream and operator view goes into `exposure`."""
    base = f"http://127.0.0.1:{worker.port}"
    query = f"?token={token}" if token else ""
    everything = asyncio.create_task(read_sse(http, f"{base}/v1/events{query}", interaction_id))
    await asyncio.sleep(0)  # subscribed before the call starts
    url = f"ws://127.0.0.1:{worker.port}/v1/audio/{interaction_id}?encoding=linear16&sample_rate=8000"
    call = CallClient(await http.ws_connect(url + (f"&token={token}" if token else "")))
    try:
        await call.send_frames(frames(speechlike(1.0)), pace_s=0.002)
        await call.end()
    except ConnectionError:
        pass  # a call the provider failed is closed by the worker
    await call.collect(timeout_s=30)
    exposure.add("ingest events", call.events)
    exposure.add("SSE /v1/events", await everything)
    exposure.add(
        "SSE /v1/calls/{id}/events",
        await read_sse(http, f"{base}/v1/calls/{interaction_id}/events{query}", interaction_id),
    )
    await exposure.read_worker(http, worker, token)
    return call


# --- the Deepgram key ---------------------------------------------------------------------------------

SCENARIOS: dict[str, dict[str, Any]] = {
    "bad key (401)": {"server_key": SERVER_KEY},
    "forbidden (403)": {"faults": {"reject_status": 403}},
    "rate limited (429, Retry-After)": {
        "faults": {"reject_status": 429, "reject_count": 2, "retry_after_s": 1}
    },
    "unavailable (503)": {"faults": {"reject_status": 503, "reject_count": 1}},
    "dropped (no close frame)": {"faults": {"drop_after_ms": 400}},
    "closed 1011": {"faults": {"close_1011_after_ms": 400}},
    "closed 1008": {"faults": {"close_1008_after_ms": 400}},
    "garbage replies": {"faults": {"garbage_every": 2}},
    "handshake timeout": {"faults": {"handshake_delay_ms": 600}, "open_timeout_s": 0.2},
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_the_deepgram_key_never_leaks_whatever_deepgram_does(
    http: aiohttp.ClientSession, scenario: str
) -> None:
    spec = SCENARIOS[scenario]
    exposure = Exposure()
    options = {k: v for k, v in spec.items() if k not in ("server_key", "faults")}
    with json_logs() as logs:
        async with running_dg_server(
            api_key=spec.get("server_key"), faults=Faults(**spec.get("faults", {}))
        ) as server:
            provider = deepgram_provider(server, KEY, **options)
            async with running_worker(provider, finalize_timeout_s=1.0) as worker:
                call = await run_call(http, worker, "dg-secret", exposure)
            exposure.add("provider repr", [repr(provider), repr(provider.options)])
            exposure.add("health detail", provider.health().detail)
    exposure.add("logs", logs.getvalue())
    assert call.of("session_ended"), "the call ended"
    assert '"logger":"asr_worker' in logs.getvalue(), "the logs were captured"
    exposure.assert_hidden(KEY, SERVER_KEY)


async def test_the_key_never_leaks_when_deepgram_is_unreachable(http: aiohttp.ClientSession) -> None:
    exposure = Exposure()
    provider = DeepgramProvider(
        DeepgramOptions(url=f"ws://127.0.0.1:{free_port()}/v1/listen", api_key=Secret(KEY))
    )
    with json_logs() as logs:
        async with running_worker(provider, finalize_timeout_s=1.0) as worker:
            call = await run_call(http, worker, "unreachable", exposure)
    exposure.add("logs", logs.getvalue())
    assert call.of("session_ended")
    exposure.assert_hidden(KEY)


@asynccontextmanager
async def echoing_server(accept: bool) -> AsyncIterator[str]:
    """A server that echoes the request's Authorization header back everywhere it can: in a
    401's body and `dg-error` and request id; or, accepting the connection, in an Error
    message, a message that is not protocol, and the close reason. (A proxy's error page, or
    DEEPGRAM_URL pointed at the wrong service, can do this.)"""

    async def listen(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not accept:
            body = {"err_code": auth, "err_msg": f"Invalid credentials: {auth}", "request_id": auth}
            return web.json_response(
                body, status=401, headers={"dg-error": f"bad {auth}", "dg-request-id": auth}
            )
        ws = web.WebSocketResponse()
        ws.headers["dg-request-id"] = auth
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "Error", "variant": auth, "description": f"you sent {auth}"}))
        await ws.send_str(f"not protocol: {auth}")
        await ws.send_str(json.dumps({"type": "Metadata", "request_id": auth, "duration": 0.0}))
        await ws.receive()  # the first audio
        await ws.close(code=1011, message=auth.encode()[:120])
        return ws

    async with serving("/v1/listen", listen) as port:
        yield f"ws://127.0.0.1:{port}/v1/listen"


@pytest.mark.parametrize("accept", [False, True], ids=["refusal", "connection"])
async def test_a_server_that_echoes_the_key_back_does_not_make_the_worker_repeat_it(
    http: aiohttp.ClientSession, accept: bool
) -> None:
    exposure = Exposure()
    with json_logs() as logs:
        async with echoing_server(accept) as url:
            provider = DeepgramProvider(DeepgramOptions(url=url, api_key=Secret(KEY), breaker_threshold=100))
            async with running_worker(provider, finalize_timeout_s=1.0) as worker:
                call = await run_call(http, worker, "echo", exposure)
            exposure.add("health detail", provider.health().detail)
    exposure.add("logs", logs.getvalue())
    errors = call.of("error")
    assert errors, "the call saw the provider's failure"
    if not accept:
        assert errors[0]["code"] == "unauthorized" and "<DEEPGRAM_API_KEY>" in str(errors[0]["message"])
    exposure.assert_hidden(KEY)


async def test_provider_errors_and_their_tracebacks_never_hold_the_key() -> None:
    """Every way a connection attempt fails, as the exception a caller could print."""
    request = StreamRequest("call-1", None, PCM8K)
    failures: list[ProviderError] = []
    for faults, api_key, options in [
        (Faults(), SERVER_KEY, {}),
        (Faults(reject_status=403), None, {}),
        (Faults(reject_status=429, retry_after_s=1), None, {}),
        (Faults(reject_status=500), None, {}),
        (Faults(reject_status=503), None, {}),
        (Faults(handshake_delay_ms=500), None, {"open_timeout_s": 0.1}),
    ]:
        async with running_dg_server(api_key=api_key, faults=faults) as server:
            provider = deepgram_provider(server, KEY, max_retry_after_s=0.0, **options)
            with pytest.raises(ProviderError) as caught:
                await provider.open(request)
            failures.append(caught.value)
    nobody = DeepgramProvider(
        DeepgramOptions(url=f"ws://127.0.0.1:{free_port()}/v1/listen", api_key=Secret(KEY))
    )
    with pytest.raises(ProviderError) as refused:
        await nobody.open(request)
    failures.append(refused.value)
    async with echoing_server(accept=False) as url:
        with pytest.raises(ProviderError) as echoed:
            await DeepgramProvider(DeepgramOptions(url=url, api_key=Secret(KEY))).open(request)
    failures.append(echoed.value)
    codes = [f.code for f in failures]
    assert codes == [
        "unauthorized",
        "forbidden",
        "rate_limited",
        "http_500",
        "http_503",
        "connect_timeout",
        "connect_failed",
        "unauthorized",
    ]
    exposure = Exposure()
    for failure in failures:
        exposure.add(failure.code, exception_text(failure))
    exposure.assert_hidden(KEY)


async def test_a_live_stream_and_the_settings_never_show_the_key() -> None:
    settings = load_settings(
        {"ASR_PROVIDER": "deepgram", "DEEPGRAM_API_KEY": KEY, "DEEPGRAM_URL": "ws://h/v1/listen"}
    )
    options = settings.of(deepgram.SETTINGS)
    assert options.api_key == Secret(KEY)  # it is there, for the Authorization header
    exposure = Exposure()
    exposure.add("settings", [repr(settings), str(settings), repr(options.api_key)])
    exposure.add("options", [repr(options), str(options)])
    async with running_dg_server() as server:
        provider = deepgram_provider(server, KEY)
        stream = await provider.open(StreamRequest("call-1", None, PCM8K))
        try:
            exposure.add("stream", [repr(stream), str(stream), repr(provider), stream.request_id])
        finally:
            await stream.abort()
    exposure.assert_hidden(KEY)


# --- the worker token ---------------------------------------------------------------------------------


async def test_the_worker_token_never_leaks_on_any_path(http: aiohttp.ClientSession) -> None:
    """Ingest, both SSE streams, the page, Twilio (?token=) and Exotel (HTTP Basic, as its
    `wss://KEY:TOKEN@host` dials), /health, /metrics and /v1/sessions; and refusals of a
    wrong token, which echo neither token."""
    exposure = Exposure()
    with json_logs() as logs:
        async with running_worker(MockProvider(), worker_token=Secret(TOKEN)) as worker:
            base = f"http://127.0.0.1:{worker.port}"
            ws_base = f"ws://127.0.0.1:{worker.port}"
            call = await run_call(http, worker, "token-call", exposure, token=TOKEN)
            assert call.of("session_ended") and call.final_words()
            for path in ("/", "/static/app.js", "/static/style.css"):
                async with http.get(f"{base}{path}?token={TOKEN}") as response:
                    assert response.status == 200
                    exposure.add(f"page {path}", f"{dict(response.headers)} {await response.text()}")
            # Twilio with ?token=, Exotel with Basic credentials
            twilio = await http.ws_connect(f"{ws_base}/v1/twilio?token={TOKEN}")
            await twilio.send_str(twilio_start(tracks=("inbound",), interaction_id="tw-token"))
            for i, chunk in enumerate(frames(speechlike(0.4, AudioFormat(Encoding.MULAW, 8000, 1)), PCM8K)):
                await twilio.send_str(twilio_media("inbound", i + 1, 20 * i, chunk[:160]))
            await twilio.send_str(twilio_stop())
            await twilio.receive()
            basic = "Basic " + base64.b64encode(f"exotel-key:{TOKEN}".encode()).decode()
            exotel = await http.ws_connect(f"{ws_base}/v1/exotel", headers={"Authorization": basic})
            await exotel.send_str(exotel_start(interaction_id="exo-token"))
            await exotel.send_str(exotel_media(1, 0, speechlike(0.1)))
            await exotel.send_str(exotel_stop())
            await exotel.receive()
            for interaction_id in ("tw-token", "exo-token"):
                exposure.add(
                    f"SSE {interaction_id}",
                    await read_sse(
                        http, f"{base}/v1/calls/{interaction_id}/events?token={TOKEN}", interaction_id
                    ),
                )
            # Wrong tokens, in every form: refused, and neither token echoed.
            wrong_basic = "Basic " + base64.b64encode(f"k:{WRONG_TOKEN}".encode()).decode()
            for path, headers in [
                (f"/v1/sessions?token={WRONG_TOKEN}", {}),
                ("/v1/sessions", {"Authorization": f"Bearer {WRONG_TOKEN}"}),
                ("/v1/events", {"Authorization": wrong_basic}),
                (f"/v1/calls/token-call/events?token={WRONG_TOKEN}", {}),
                (f"/v1/audio/x?token={WRONG_TOKEN}", {}),
                (f"/v1/twilio?token={WRONG_TOKEN}", {}),
                ("/v1/exotel", {"Authorization": wrong_basic}),
            ]:
                async with http.get(base + path, headers=headers) as response:
                    assert response.status == 401, path
                    exposure.add(f"401 {path}", f"{dict(response.headers)} {await response.text()}")
            await exposure.read_worker(http, worker, TOKEN)
    exposure.add("logs", logs.getvalue())
    assert '"msg":"access denied"' in logs.getvalue()
    exposure.assert_hidden(TOKEN, WRONG_TOKEN)


# --- the Redis password -------------------------------------------------------------------------------


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", password=REDIS_PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_the_redis_password_never_leaks(
    http: aiohttp.ClientSession, redis_with_password: RedisServer
) -> None:
    """A worker on a Redis that requires a password: /health shows where the bus is and how
    it is, never the password, with it right (calls go through) or wrong (the bus is down)."""
    url = redis_with_password.url
    assert REDIS_PASSWORD in url
    wrong = url.replace(REDIS_PASSWORD, "rp-wrong-9d7c5b3a1e")
    exposure = Exposure()
    with json_logs() as logs:
        bus = {"pubsub_adapter": "redis_streams", "claim_idle_s": 1.0}
        async with running_worker(MockProvider(), redis_url=url, **bus) as worker:

            async def up() -> bool:
                return worker.bus.healthy()

            await until(up)
            audio = AudioFile(Path("call.wav"), PCM8K, speechlike(0.6))
            await publish_call(audio, url, "redis-secret", speed=0)
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(url)
            try:
                events = (await wait_for_calls_to_end(client, ["redis-secret"]))["redis-secret"]
            finally:
                await client.aclose()
            exposure.add("transcript stream", events)
            await exposure.read_worker(http, worker)
            async with http.get(f"http://127.0.0.1:{worker.port}/health") as response:
                health = await response.json()
        assert health["checks"]["bus"]["ok"] is True
        assert health["checks"]["bus"]["redis"] == f"127.0.0.1:{redis_with_password.port}/0"
        async with running_worker(MockProvider(), redis_url=wrong, **bus) as worker:

            async def failed() -> bool:
                return (
                    "lastError" in worker.bus.status()
                    and worker.bus.status()["lastError"] != "not connected yet"
                )

            await until(failed)
            await exposure.read_worker(http, worker)
            async with http.get(f"http://127.0.0.1:{worker.port}/health") as response:
                down = await response.json()
    exposure.add("logs", logs.getvalue())
    assert down["status"] == "degraded" and down["checks"]["bus"]["ok"] is False
    assert "password" in str(down["checks"]["bus"]["lastError"]).lower()  # it says why, not what
    assert events[-1]["type"] == "session_ended"
    exposure.add("settings", [repr(RedisOptions(url=url)), repr(load_settings({"REDIS_URL": url}))])
    # The bus registers the password with the log formatter, so a leak would show as the marker.
    exposure.assert_hidden(REDIS_PASSWORD, "rp-wrong-9d7c5b3a1e")


async def test_the_stream_tool_does_not_print_a_token_it_was_refused_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`asr-worker stream --url ws://.../v1/audio/ID?token=T`: a refused handshake's message
    quoted the whole URL, token included."""
    audio = AudioFile(Path("call.wav"), PCM8K, speechlike(0.2))
    async with running_worker(MockProvider(), worker_token=Secret(TOKEN)) as worker:
        url = f"ws://127.0.0.1:{worker.port}/v1/audio/refused?token={WRONG_TOKEN}"
        (result,) = await stream_calls(audio, url, speed=0)
    captured = capsys.readouterr()
    assert result.errors == [
        "connection: HTTP 401 Unauthorized: "
        "the route needs a key with stream scope (--api-key, or ASR_WORKER_TOKEN)"
    ]
    exposure = Exposure()
    exposure.add("stream tool output", [captured.out, captured.err, result.errors])
    exposure.assert_hidden(WRONG_TOKEN)
