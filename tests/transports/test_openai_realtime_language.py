"""The session's `transcription.language` at the first append of `/v1/realtime` is the call's
`language`, as every route's options give it: the official `openai` SDK's realtime client
against a real worker, the mock provider keeping each stream's request."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from asr_worker.credentials import Secret
from asr_worker.providers.mock import MockProvider
from asr_worker.worker import Worker
from tests.conftest import running_worker

from .test_openai_realtime import FORMATS, TOKEN, client, mock_speech, session_update


@pytest.fixture
async def rt_worker(mock_provider: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(mock_provider, worker_token=Secret(TOKEN)) as worker:
        yield worker


@pytest.mark.parametrize(("language", "expected"), [("es", "es"), ("not a code", None)])
async def test_the_sessions_language_is_the_calls(
    rt_worker: Worker, mock_provider: MockProvider, language: str, expected: str | None
) -> None:
    update = session_update("ga", "g711_ulaw", vad=False)
    session = update["session"]
    assert isinstance(session, dict)
    session["audio"]["input"]["transcription"]["language"] = language
    audio = mock_speech(FORMATS["g711_ulaw"], "w.")
    async with client(rt_worker).realtime.connect(extra_query={"intent": "transcription"}) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.send(update)  # type: ignore[arg-type]
        assert (await conn.recv()).type == "session.updated"
        await conn.input_audio_buffer.append(audio=base64.b64encode(audio).decode())
        await conn.input_audio_buffer.commit()
        async for event in conn:
            assert event.type != "error", event
            if event.type == "conversation.item.input_audio_transcription.completed":
                break
    [stream] = mock_provider.streams
    assert stream.request.options.language == expected
