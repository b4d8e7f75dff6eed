"""The official deepgram-sdk against a real `asr-worker dg-server` on the embedded engine, with a
stream's `language` and `callback`: Spanish audio asked for in Spanish comes back in Spanish
words, every result naming its language (`languages`, each word's `language`) and the model
that heard it; every response is also POSTed to the callback, in order, then the stream's
transcript document, each signed (Standard Webhooks' own verifier checks each), and a language
the engine does not know is refused with Deepgram's 400."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from standardwebhooks import Webhook

from asr_worker.core.audio import AudioFormat
from tests.dgserver.test_dgserver import dg_server_process
from tests.support.audio import frames
from tests.support.languages import CALLS, call, word_error_rate
from tests.support.webhooks import SECRET, webhook_target

pytestmark = pytest.mark.timeout(180)


async def sdk_stream(port: int, fmt: AudioFormat, data: bytes, **options: str) -> list[object]:
    """The audio through dg-server with the official SDK, with these query options; every
    message it received, in order."""
    from deepgram import AsyncDeepgramClient
    from deepgram.core.events import EventType
    from deepgram.environment import DeepgramClientEnvironment

    url = f"ws://127.0.0.1:{port}"
    client = AsyncDeepgramClient(
        api_key="sdk-key",
        environment=DeepgramClientEnvironment(
            base=url.replace("ws", "http"), production=url, agent=url, agent_rest=url.replace("ws", "http")
        ),
    )
    received: list[object] = []
    async with client.listen.v1.connect(
        model="nova-3", encoding=str(fmt.encoding), sample_rate=fmt.sample_rate, **options
    ) as connection:
        connection.on(EventType.MESSAGE, received.append)
        async with asyncio.TaskGroup() as tg:
            listening = tg.create_task(connection.start_listening())
            for chunk in frames(data, fmt, ms=100):
                await connection.send_media(chunk)
                await asyncio.sleep(0.02)
            await connection.send_close_stream()
            await asyncio.wait_for(listening, 60)
    return received


# deepgram-sdk 7.x uses websockets' legacy client, which warns that it is deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_spanish_with_a_callback_comes_back_in_spanish_on_the_socket_and_signed_at_the_callback(
    tmp_path: Path,
) -> None:
    spanish = call(tmp_path, "es", CALLS["es"].sentences)
    async with (
        webhook_target() as target,
        dg_server_process("--api-key", "sdk-key", "--webhook-secret", SECRET, provider="local") as port,
    ):
        received = await sdk_stream(
            port, spanish.fmt, spanish.data, language="es", callback=target.url("/deepgram?call=1")
        )
        names = [type(m).__name__ for m in received]
        await target.wait_for(len(received) + 1, timeout_s=30)  # every response, then the document
    assert names[-1] == "ListenV1Metadata"
    from deepgram.listen.v1.types import ListenV1Results

    finals = [m for m in received if isinstance(m, ListenV1Results) and m.is_final]
    said = [m for m in finals if m.channel.alternatives[0].words]
    heard = " ".join(m.channel.alternatives[0].transcript for m in said)
    assert word_error_rate(spanish.text, heard) <= 0.3, heard
    for result in said:
        alternative = result.channel.alternatives[0]
        assert alternative.languages == ["es"]
        assert {w.language for w in alternative.words} == {"es"}
        assert result.metadata.model_info.name == "nova-3"

    webhook = Webhook(SECRET)
    *posted, document = [webhook.verify(r.body, r.headers) for r in target.received]  # raises if unsigned
    assert [r.path for r in target.received] == ["/deepgram?call=1"] * (len(received) + 1)
    assert [p["type"] for p in posted] == [n.removeprefix("ListenV1") for n in names]
    request_id = posted[-1]["request_id"]
    assert [r.headers["webhook-id"] for r in target.received] == [
        *(f"{request_id}.{n}" for n in range(1, len(posted) + 1)),
        f"{request_id}.transcript",
    ]
    assert document["type"] == "transcript" and document["status"] == "ended"
    assert document["interaction_id"] == f"dg-{request_id}" and document["languages"] == ["es"]
    assert document["end_reason"] == "close_stream" and document["providers"] == ["local"]
    assert " ".join(u["text"] for u in document["utterances"]) == heard
    assert {w["word"] for u in document["utterances"] for w in u["words"]} == {
        w.word for m in said for w in m.channel.alternatives[0].words
    }
    posted_finals = [
        p
        for p in posted
        if p["type"] == "Results" and p["is_final"] and p["channel"]["alternatives"][0]["words"]
    ]
    assert " ".join(p["channel"]["alternatives"][0]["transcript"] for p in posted_finals) == heard


async def test_a_language_the_engine_does_not_know_is_refused_with_deepgrams_400() -> None:
    async with (
        dg_server_process("--api-key", "sdk-key", provider="local") as port,
        aiohttp.ClientSession() as http,
    ):
        query = "encoding=mulaw&sample_rate=8000&language=tlh"
        headers = {"Authorization": "Token sdk-key"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"ws://127.0.0.1:{port}/v1/listen?{query}", headers=headers)
        assert refused.value.status == 400
        async with http.get(
            f"http://127.0.0.1:{port}/v1/listen?{query}",
            headers={
                **headers,
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        ) as response:
            body = json.loads(await response.text())
            assert response.status == 400 and response.headers["dg-error"] == body["err_msg"]
        assert body["err_code"] == "Bad Request"
        assert (
            body["err_msg"].startswith("No such model/language/tier combination found.")
            and "tlh" in body["err_msg"]
        )
        callback_without_secret = "encoding=mulaw&sample_rate=8000&callback=http://127.0.0.1:9/hook"
        with pytest.raises(aiohttp.WSServerHandshakeError) as unsigned:
            await http.ws_connect(
                f"ws://127.0.0.1:{port}/v1/listen?{callback_without_secret}", headers=headers
            )
        assert unsigned.value.status == 400
