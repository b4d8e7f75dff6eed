"""AudioHook credentials never leak: neither the API keys nor their client secrets, nor a wrong
key a client tried, reach a log record (every record at DEBUG, through the JSON formatter),
an answer, /health, /metrics, /v1/sessions, the settings' repr or a configuration error."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from asr_worker.audiohook.signature import ApiKeys
from asr_worker.config import load_settings
from asr_worker.errors import ConfigError
from asr_worker.providers.mock import MockProvider
from asr_worker.transports import audiohook as transport
from asr_worker.transports.audiohook import SETTINGS as AUDIOHOOK
from tests.conftest import running_worker
from tests.support.audiohook import connect, upgrade_headers, url
from tests.support.exposure import Exposure, json_logs

KEY = "ah-key-4d1c9b7e2a6f0385"
OTHER_KEY = "ah-key-rotated-8e2b5f1a"
SECRET = b"ah-secret-61f0c8d2b7a4e935"
SECRET_B64 = base64.b64encode(SECRET).decode()
WRONG_KEY = "ah-guess-0a9b8c7d6e5f"


async def test_audiohook_keys_and_secrets_never_leak(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "FAILURE_DELAY_S", 0.0)
    settings = load_settings({"ASR_AUDIOHOOK_API_KEYS": f"{KEY}:{SECRET_B64},{OTHER_KEY}"})
    exposure = Exposure()
    keys = settings.of(AUDIOHOOK).api_keys
    exposure.add("settings", [repr(settings), str(settings), repr(keys)])
    with pytest.raises(ConfigError) as bad:
        load_settings({"ASR_AUDIOHOOK_API_KEYS": f"{KEY}:not base64!"})
    exposure.add("config error", str(bad.value))
    with json_logs() as logs:
        async with running_worker(MockProvider(), audiohook_api_keys=keys) as worker:
            hook = await connect(http, worker, KEY, SECRET)
            await hook.open()
            await hook.close()
            await hook.ws.close()
            for key, secret in ((WRONG_KEY, None), (KEY, None), (KEY, b"wrong"), (WRONG_KEY, SECRET)):
                headers = upgrade_headers(key, session_id=hook.id, secret=secret, authority="x")
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(url(worker), headers=headers)
                assert refused.value.status == 401
                exposure.add(f"refusal {key}", f"{refused.value} {dict(refused.value.headers or {})}")
            await exposure.read_worker(http, worker, None)
    exposure.add("logs", logs.getvalue())
    assert '"msg":"audiohook refused"' in logs.getvalue()
    assert isinstance(keys, ApiKeys)
    exposure.assert_hidden(KEY, OTHER_KEY, SECRET_B64, SECRET.decode(), WRONG_KEY)
