"""ASR_WORKER_TOKEN: every endpoint but /health and /metrics needs it; it never leaks."""

from __future__ import annotations

import base64
import logging

import aiohttp
import pytest

from asr_worker.config import load_settings
from asr_worker.credentials import Secret
from asr_worker.errors import ConfigError
from asr_worker.http.options import SETTINGS as HTTP
from asr_worker.logs import JsonFormatter
from asr_worker.providers.mock import MockProvider
from tests.conftest import running_worker
from tests.support.audio import frames, speechlike
from tests.support.client import CallClient

TOKEN = "tok-3f9a1c77e2b54d0e"


async def test_open_paths_stay_open_and_the_rest_need_the_token(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_worker(MockProvider(), worker_token=Secret(TOKEN)) as worker:
        url = f"http://127.0.0.1:{worker.port}"
        for path in ("/health", "/metrics", "/", "/static/app.js"):
            async with http.get(url + path) as response:
                assert response.status == 200
        for path in ("/ready", "/v1/sessions", "/v1/events", "/v1/calls/x/events"):
            async with http.get(url + path) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "a key is required" in (await response.json())["message"]
        async with http.get(url + "/v1/sessions", headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401 and "not valid" in (await response.json())["message"]
            assert TOKEN not in await response.text()
        async with http.get(url + "/v1/sessions", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 200
        async with http.get(url + "/v1/sessions", headers={"Authorization": f"Token {TOKEN}"}) as response:
            assert response.status == 200  # Deepgram's scheme, which its users' clients send
        async with http.post(url + f"/v1/sessions?token={TOKEN}") as response:
            assert response.status == 401  # ?token= is for GET (browsers' sockets and event streams)

        ws_url = f"ws://127.0.0.1:{worker.port}/v1/audio"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{ws_url}/no-token")
        assert refused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(f"{ws_url}/bad-token?token=nope")
        by_query = CallClient(await http.ws_connect(f"{ws_url}/by-query?token={TOKEN}"))
        basic = "Basic " + base64.b64encode(f"acct:{TOKEN}".encode()).decode()
        by_basic = CallClient(await http.ws_connect(f"{ws_url}/by-basic", headers={"Authorization": basic}))
        by_bearer = CallClient(
            await http.ws_connect(f"{ws_url}/by-bearer", headers={"Authorization": f"Bearer {TOKEN}"})
        )
        by_deepgram_scheme = CallClient(
            await http.ws_connect(f"{ws_url}/by-token", headers={"Authorization": f"Token {TOKEN}"})
        )
        for call in (by_query, by_basic, by_bearer, by_deepgram_scheme):
            await call.send_frames(frames(speechlike(0.4)))
            await call.end()
            await call.collect()
            assert call.of("session_ended")[0]["reason"] == "end"
        async with http.get(url + "/metrics") as response:
            assert TOKEN not in await response.text()
        async with http.get(url + "/health") as response:
            assert TOKEN not in await response.text()
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "unauthorized" in logged
    assert TOKEN not in logged


def test_a_public_address_without_a_token_needs_an_explicit_switch() -> None:
    with pytest.raises(ConfigError, match=r"HOST 0\.0\.0\.0 is not a loopback address"):
        load_settings({"HOST": "0.0.0.0"})
    assert load_settings({"HOST": "0.0.0.0", "ASR_ALLOW_UNAUTHENTICATED": "1"}).of(HTTP).allow_unauthenticated
    assert load_settings({"HOST": "0.0.0.0", "ASR_WORKER_TOKEN": TOKEN}).of(HTTP).worker_token == Secret(
        TOKEN
    )
    for loopback in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert load_settings({"HOST": loopback}).of(HTTP).host == loopback


def test_secrets_do_not_print() -> None:
    settings = load_settings({"ASR_WORKER_TOKEN": TOKEN, "DEEPGRAM_API_KEY": "dg-secret-key-123"})
    assert TOKEN not in repr(settings) and "dg-secret-key-123" not in repr(settings)
    assert TOKEN not in str(settings.of(HTTP).worker_token)
