"""OPENAI_API_KEY never leaks: not into logs (every record at DEBUG, through the JSON
formatter), events, SSE, /health, /metrics, /v1/sessions, error messages, reprs or
tracebacks, whatever the endpoint does (401, 503, drops, a server that echoes the key
back). And the worker token a browser offers as `openai-insecure-api-key.TOKEN` on
/v1/realtime never shows either."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from asr_worker.config import load_settings
from asr_worker.credentials import Secret
from asr_worker.errors import ProviderError
from asr_worker.providers import openai as openai_provider
from asr_worker.providers.base import StreamRequest
from asr_worker.providers.openai import OpenAIOptions, OpenAIProvider
from tests.conftest import free_port, running_worker
from tests.security.test_secrets import run_call
from tests.support.audio import PCM8K
from tests.support.exposure import Exposure, exception_text, json_logs
from tests.support.http_server import serving
from tests.support.rt_server import Faults, running_rt_server

KEY = "sk-live-4e7a1c9b2d8f6053"
TOKEN = "wt-rt-8c2e5a0f7b1d3964"

SCENARIOS: dict[str, Faults] = {
    "bad key (401)": Faults(refuse_status=401),
    "unavailable (503)": Faults(refuse_status=503, refuse_connections=1),
    "dropped": Faults(drop_after_bytes=3200),
    "never completes": Faults(stall_after_bytes=1600),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_the_openai_key_never_leaks_whatever_the_endpoint_does(
    http: aiohttp.ClientSession, scenario: str
) -> None:
    exposure = Exposure()
    with json_logs() as logs:
        async with running_rt_server(SCENARIOS[scenario]) as server:
            provider = OpenAIProvider(
                OpenAIOptions(base_url=server.base_url, api_key=Secret(KEY), finalize_timeout_s=0.5)
            )
            async with running_worker(provider, finalize_timeout_s=1.0) as worker:
                call = await run_call(http, worker, "oa-secret", exposure)
            exposure.add("provider repr", [repr(provider), repr(provider.options)])
            exposure.add("health detail", provider.health().detail)
    exposure.add("logs", logs.getvalue())
    assert call.of("session_ended"), "the call ended"
    assert (
        any(c.headers.get("Authorization") == f"Bearer {KEY}" for c in server.connections) or server.refused
    )
    exposure.assert_hidden(KEY)


@asynccontextmanager
async def echoing_server(accept: bool) -> AsyncIterator[str]:
    """A server that echoes the request's Authorization header back: in a 401's body, or,
    accepting, in an error event, a message that is not protocol, and the close reason."""

    async def realtime(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not accept:
            return web.json_response(
                {"error": {"message": f"Incorrect API key provided: {auth}"}}, status=401
            )
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(
            json.dumps({"type": "error", "error": {"type": auth, "code": auth, "message": auth}})
        )
        await ws.send_str(f"not protocol: {auth}")
        await ws.receive()
        await ws.close(code=1011, message=auth.encode()[:120])
        return ws

    async with serving("/v1/realtime", realtime) as port:
        yield f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("accept", [False, True], ids=["refusal", "connection"])
async def test_a_server_that_echoes_the_key_back_does_not_make_the_worker_repeat_it(
    http: aiohttp.ClientSession, accept: bool
) -> None:
    exposure = Exposure()
    with json_logs() as logs:
        async with echoing_server(accept) as url:
            provider = OpenAIProvider(OpenAIOptions(base_url=url, api_key=Secret(KEY), breaker_threshold=100))
            async with running_worker(provider, finalize_timeout_s=1.0) as worker:
                call = await run_call(http, worker, "oa-echo", exposure)
            exposure.add("health detail", provider.health().detail)
    exposure.add("logs", logs.getvalue())
    assert call.of("error"), "the call saw the provider's failure"
    exposure.assert_hidden(KEY)


async def test_provider_errors_settings_and_streams_never_hold_the_key() -> None:
    request = StreamRequest("call-1", None, PCM8K)
    exposure = Exposure()
    async with echoing_server(accept=False) as url:
        with pytest.raises(ProviderError) as refused:
            await OpenAIProvider(OpenAIOptions(base_url=url, api_key=Secret(KEY))).open(request)
    nobody = OpenAIProvider(OpenAIOptions(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key=Secret(KEY)))
    with pytest.raises(ProviderError) as unreachable:
        await nobody.open(request)
    assert refused.value.code == "unauthorized" and not refused.value.retryable
    assert unreachable.value.retryable
    exposure.add("errors", [exception_text(refused.value), exception_text(unreachable.value)])
    settings = load_settings({"ASR_PROVIDER": "openai", "OPENAI_API_KEY": KEY})
    options = settings.of(openai_provider.SETTINGS)
    assert options.api_key == Secret(KEY)  # it is there, for the Authorization header
    exposure.add("settings", [repr(settings), str(settings), repr(options), str(options)])
    async with running_rt_server() as server:
        provider = OpenAIProvider(OpenAIOptions(base_url=server.base_url, api_key=Secret(KEY)))
        stream = await provider.open(request)
        try:
            exposure.add("stream", [repr(stream), str(stream), repr(provider)])
        finally:
            await stream.abort()
    exposure.assert_hidden(KEY)


async def test_a_worker_token_offered_as_a_subprotocol_never_shows(http: aiohttp.ClientSession) -> None:
    exposure = Exposure()
    with json_logs() as logs:
        async with running_worker(worker_token=Secret(TOKEN)) as worker:
            url = f"ws://127.0.0.1:{worker.port}/v1/realtime?intent=transcription"
            for token in (TOKEN, "wt-guess-0f1e2d3c4b5a"):
                try:
                    async with http.ws_connect(
                        url, protocols=("realtime", f"openai-insecure-api-key.{token}")
                    ) as ws:
                        exposure.add("handshake", str(ws.protocol))
                        exposure.add("events", await ws.receive_str())
                except aiohttp.WSServerHandshakeError as exc:
                    exposure.add("refusal", [str(exc), repr(exc.headers)])
            await exposure.read_worker(http, worker, TOKEN)
    exposure.add("logs", logs.getvalue())
    exposure.assert_hidden(TOKEN, "wt-guess-0f1e2d3c4b5a")
