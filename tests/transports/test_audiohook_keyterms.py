"""A call's keyterms named in AudioHook's `open` (`customConfig.keyterms`: a list of strings or
one comma-separated string) reach the provider: a raw AudioHook client on a real socket, a
real worker, the mock provider, whose streams keep the request they were opened with."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from asr_worker.audiohook.signature import ApiKeys
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.providers.mock import MockProvider
from asr_worker.transports import audiohook as transport
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import speechlike
from tests.support.audiohook import ORG, STEREO_PCMU, Hook, connect

KEYS = ApiKeys.parse("key-1")
STEREO = AudioFormat(Encoding.MULAW, 8000, 2)
EXPECTED = ("Acme Cloud", "Zorblax", "order ZX-1234")


@pytest.fixture(autouse=True)
def no_failure_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "FAILURE_DELAY_S", 0.0)


@pytest.fixture
async def hook_worker(mock_provider: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(mock_provider, audiohook_api_keys=KEYS, session_grace_s=5.0) as w:
        yield w


async def call(hook: Hook, conversation: str, keyterms: object, *, reason: str = "end") -> None:
    await hook.open(conversation, customConfig={"keyterms": keyterms})
    await hook.audio(speechlike(0.4, STEREO, seed=8))
    await hook.close(reason)


@pytest.mark.parametrize(
    "keyterms",
    [
        ["Acme  Cloud", "Zorblax", " order ZX-1234", "Acme Cloud", ""],  # a list, as JSON carries it
        "Acme Cloud, Zorblax,order  ZX-1234,,Acme Cloud",  # one comma-separated string
    ],
)
async def test_custom_config_keyterms_reach_the_provider(
    hook_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider, keyterms: object
) -> None:
    conversation = str(uuid.uuid4())
    await call(await connect(http, hook_worker), conversation, keyterms)
    [stream] = mock_provider.streams_for(conversation)
    assert stream.request.options.keyterms == EXPECTED


async def test_a_continued_session_leaves_the_calls_keyterms(
    hook_worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    conversation = str(uuid.uuid4())
    first = await connect(http, hook_worker)
    await call(first, conversation, ["Zorblax"], reason="reconnect")
    await first.ws.close()
    second = await connect(http, hook_worker)
    continued = [{"id": first.id, "serverseq": first.serverseq, "clientseq": first.seq}]
    await second.open(conversation, continuedSessions=continued, customConfig={"keyterms": ["Other"]})
    await second.close()
    assert [s.request.options.keyterms for s in mock_provider.streams_for(conversation)] == [("Zorblax",)]


@pytest.mark.parametrize(
    ("keyterms", "info"),
    [
        (7, "customConfig.keyterms must be a list of strings or a comma-separated string"),
        (["ok", None], "customConfig.keyterms must be a list of strings or a comma-separated string"),
        (["ok", "x" * 101], "customConfig.keyterms[1] must be at most 100 characters"),
        ("ok," + "y" * 101, "customConfig.keyterms[1] must be at most 100 characters"),
        ([f"t{n}" for n in range(101)], "customConfig.keyterms: at most 100 terms"),
    ],
)
async def test_bad_keyterms_get_disconnect_with_reason_error_and_one_log_line(
    hook_worker: Worker,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    keyterms: object,
    info: str,
) -> None:
    caplog.set_level(logging.INFO, logger="asr_worker.audiohook")
    hook = await connect(http, hook_worker)
    await hook.send(
        "open",
        {
            "organizationId": ORG,
            "conversationId": str(uuid.uuid4()),
            "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
            "media": [STEREO_PCMU],
            "customConfig": {"keyterms": keyterms},
        },
    )
    disconnect = await hook.expect("disconnect")
    assert disconnect["parameters"] == {"reason": "error", "info": info}
    await hook.close("disconnect")
    assert not hook_worker.manager.sessions
    refusals = [r for r in caplog.records if r.getMessage() == "audiohook refused"]
    assert len(refusals) == 1 and refusals[0].__dict__["reason"] == "bad_request"
