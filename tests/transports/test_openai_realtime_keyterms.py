"""The transcription `prompt` in effect at the first append of `/v1/realtime` names the call's
keyterms (its comma-separated terms): the official `openai` SDK's realtime client and a raw
socket against a real worker, the mock provider keeping each stream's request."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from asr_worker.credentials import Secret
from asr_worker.providers.mock import MockProvider
from asr_worker.worker import Worker
from tests.conftest import running_worker

from .test_openai_realtime import FORMATS, TOKEN, client, mock_speech, next_of, raw, session_update

EXPECTED = ("Acme Cloud", "Zorblax", "order ZX-1234")


@pytest.fixture
async def rt_worker(mock_provider: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(mock_provider, worker_token=Secret(TOKEN)) as worker:
        yield worker


def with_prompt(schema: str, prompt: str) -> dict[str, object]:
    update = session_update(schema, "g711_ulaw", vad=False)
    session = update["session"]
    assert isinstance(session, dict)
    if schema == "ga":
        session["audio"]["input"]["transcription"]["prompt"] = prompt
    else:
        session["input_audio_transcription"]["prompt"] = prompt
    return update


def append(audio: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()})


@pytest.mark.parametrize("schema", ["ga", "beta"])
async def test_the_prompt_at_the_first_append_names_the_calls_keyterms(
    rt_worker: Worker, mock_provider: MockProvider, schema: str
) -> None:
    audio = mock_speech(FORMATS["g711_ulaw"], "ww.")
    async with client(rt_worker).realtime.connect(extra_query={"intent": "transcription"}) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.send(with_prompt(schema, "Acme  Cloud, Zorblax,order ZX-1234,,Acme Cloud"))  # type: ignore[arg-type]
        await conn.recv()  # updated
        await conn.input_audio_buffer.append(audio=base64.b64encode(audio).decode())
        await conn.input_audio_buffer.commit()
        async for event in conn:
            assert event.type != "error", event
            if event.type == "conversation.item.input_audio_transcription.completed":
                break
        # A later prompt is echoed; the call keeps the terms it started with.
        await conn.send(with_prompt(schema, "Other"))  # type: ignore[arg-type]
        updated = (await conn.recv()).to_dict()
        assert "Other" in json.dumps(updated)
    [stream] = mock_provider.streams
    assert stream.request.options.keyterms == EXPECTED


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Zorblax, " + "the caller asks about a parcel that has not come " * 3, ("Zorblax",)),
        (",".join(f"t{n}" for n in range(101)), tuple(f"t{n}" for n in range(100))),
    ],
)
async def test_a_prompt_is_never_refused_and_only_its_terms_are_keyterms(
    rt_worker: Worker,
    http: aiohttp.ClientSession,
    mock_provider: MockProvider,
    prompt: str,
    expected: tuple[str, ...],
) -> None:
    """OpenAI takes any prompt: a piece longer than a term is prose, left out of the call's
    keyterms, and pieces past the hundredth are too; the prompt itself is echoed whole."""
    async with await raw(rt_worker, http) as ws:
        await next_of(ws, "session.created")
        await ws.send_str(json.dumps(with_prompt("ga", prompt) | {"event_id": "ev7"}))
        updated = await next_of(ws, "session.updated")
        assert prompt in json.dumps(updated)
        await ws.send_str(append(mock_speech(FORMATS["g711_ulaw"], "w.")))
        await ws.send_str(json.dumps({"type": "input_audio_buffer.commit"}))
        await next_of(ws, "conversation.item.input_audio_transcription.completed")
    [stream] = mock_provider.streams
    assert stream.request.options.keyterms == expected
