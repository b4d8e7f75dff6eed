"""`/v1/realtime?intent=transcription` driven by the official `openai` SDK's realtime client,
against a real worker with the mock provider: both session schemas, all three formats,
server VAD and manual commits. The mock's words are a function of the audio, so each test
knows the exact text; every item's deltas must concatenate to its `completed` transcript,
with exactly one `completed` per item."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import pytest
from openai import AsyncOpenAI

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.codecs import encode_g711
from asr_worker.credentials import Secret
from asr_worker.providers.mock import MockOptions, MockProvider, expected_words
from asr_worker.worker import Worker
from tests.conftest import running_worker

TOKEN = "rt-test-token-123456"
FORMATS = {
    "pcm16": AudioFormat(Encoding.LINEAR16, 24000, 1),
    "g711_ulaw": AudioFormat(Encoding.MULAW, 8000, 1),
    "g711_alaw": AudioFormat(Encoding.ALAW, 8000, 1),
}
GA_FORMATS = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}


def mock_speech(fmt: AudioFormat, pattern: str, seed: int = 7) -> bytes:
    """Audio the mock hears as `pattern`: `w` a 200 ms word window (noise), `.` a silent one."""
    rng = np.random.default_rng(seed)
    n = fmt.sample_rate // 5
    parts = [(rng.integers(-8000, 8000, n) if c == "w" else np.zeros(n)).astype(np.int16) for c in pattern]
    pcm = np.concatenate(parts)
    return (
        pcm.astype("<i2").tobytes() if fmt.encoding is Encoding.LINEAR16 else encode_g711(pcm, fmt.encoding)
    )


@dataclass
class Items:
    deltas: dict[str, list[str]] = field(default_factory=dict)
    completed: dict[str, list[str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # items as committed
    types: list[str] = field(default_factory=list)
    errors: list[dict[str, object]] = field(default_factory=list)

    def take(self, event: object) -> None:
        kind = str(getattr(event, "type", ""))
        self.types.append(kind)
        if kind == "conversation.item.input_audio_transcription.delta":
            assert event.item_id not in self.completed, "a delta after its item completed"  # type: ignore[attr-defined]
            self.deltas.setdefault(event.item_id, []).append(event.delta or "")  # type: ignore[attr-defined]
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.completed.setdefault(event.item_id, []).append(event.transcript)  # type: ignore[attr-defined]
        elif kind == "input_audio_buffer.committed":
            self.order.append(event.item_id)  # type: ignore[attr-defined]
        elif kind == "error":
            self.errors.append(event.error.to_dict())  # type: ignore[attr-defined]

    def check(self) -> str:
        """Every committed item completed exactly once, its deltas concatenating to it; the
        whole text."""
        for item_id in self.order:
            assert len(self.completed.get(item_id, [])) == 1, f"{item_id}: {self.completed.get(item_id)}"
            assert "".join(self.deltas.get(item_id, [])) == self.completed[item_id][0]
        assert set(self.completed) == set(self.order)
        return " ".join(t for i in self.order if (t := self.completed[i][0]))


@pytest.fixture
async def rt_worker() -> AsyncIterator[Worker]:
    async with running_worker(MockProvider(MockOptions()), worker_token=Secret(TOKEN)) as worker:
        yield worker


def client(worker: Worker, token: str = TOKEN) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=token, websocket_base_url=f"ws://127.0.0.1:{worker.port}/v1")


def session_update(schema: str, fmt_name: str, vad: bool) -> dict[str, object]:
    turn = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
    if schema == "ga":
        return {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": GA_FORMATS[fmt_name],
                        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                        "turn_detection": turn if vad else None,
                        "noise_reduction": {"type": "near_field"},
                    }
                },
            },
        }
    return {
        "type": "transcription_session.update",
        "session": {
            "input_audio_format": fmt_name,
            "input_audio_transcription": {"model": "whisper-1", "prompt": "call centre"},
            "turn_detection": turn if vad else None,
        },
    }


async def transcribe(
    worker: Worker, schema: str, fmt_name: str, vad: bool, audio: bytes, commit_every: int = 0
) -> Items:
    fmt = FORMATS[fmt_name]
    items = Items()
    want = " ".join(expected_words(audio, fmt))
    async with client(worker).realtime.connect(extra_query={"intent": "transcription"}) as conn:
        first = await conn.recv()
        assert first.type == "session.created"
        await conn.send(session_update(schema, fmt_name, vad))  # type: ignore[arg-type]
        updated = await conn.recv()
        assert updated.type == ("session.updated" if schema == "ga" else "transcription_session.updated")
        effective = updated.to_dict()["session"]
        assert isinstance(effective, dict)
        if schema == "ga":  # the whole effective configuration, any model name echoed
            audio_in = effective["audio"]["input"]
            assert audio_in["format"] == GA_FORMATS[fmt_name]
            assert audio_in["transcription"] == {"model": "gpt-4o-transcribe", "language": "en"}
            assert (audio_in["turn_detection"] is not None) == vad
            assert audio_in["noise_reduction"] == {"type": "near_field"}
        else:
            assert effective["input_audio_format"] == fmt_name
            assert effective["input_audio_transcription"] == {"model": "whisper-1", "prompt": "call centre"}
            assert (effective["turn_detection"] is not None) == vad

        async def play() -> None:
            step = fmt.bytes_for(0.1)
            for n, i in enumerate(range(0, len(audio), step)):
                await conn.input_audio_buffer.append(audio=base64.b64encode(audio[i : i + step]).decode())
                if commit_every and (n + 1) % commit_every == 0:
                    await conn.input_audio_buffer.commit()
                await asyncio.sleep(0)
            if not vad:
                await conn.input_audio_buffer.commit()

        async with asyncio.timeout(30), asyncio.TaskGroup() as tg:
            tg.create_task(play())
            async for event in conn:
                items.take(event)
                done = [t for i in items.order for t in items.completed.get(i, [])]
                if " ".join(t for t in done if t) == want and all(i in items.completed for i in items.order):
                    break
    assert not items.errors, items.errors
    assert items.check() == want
    return items


@pytest.mark.parametrize(
    ("schema", "fmt_name", "vad"),
    [
        ("ga", "pcm16", True),
        ("ga", "g711_ulaw", False),
        ("ga", "g711_alaw", True),
        ("beta", "pcm16", False),
        ("beta", "g711_ulaw", True),
        ("beta", "g711_alaw", False),
    ],
)
async def test_sdk_streams_and_gets_items(rt_worker: Worker, schema: str, fmt_name: str, vad: bool) -> None:
    audio = mock_speech(FORMATS[fmt_name], "..www..wwwwwww...ww.w...")
    items = await transcribe(rt_worker, schema, fmt_name, vad, audio)
    if vad:
        assert len(items.order) >= 3  # one item per utterance final
        assert "input_audio_buffer.speech_started" in items.types
        assert "input_audio_buffer.speech_stopped" in items.types
        # Words two interims agreed on went out before their item's final.
        assert any(len(d) > 1 for d in items.deltas.values())
    else:
        assert len(items.order) == 1  # one commit, one item
        assert "input_audio_buffer.speech_started" not in items.types
    added = "conversation.item.added" if schema == "ga" else "conversation.item.created"
    assert items.types.count(added) == len(items.order)


async def test_manual_commits_cut_items(rt_worker: Worker) -> None:
    audio = mock_speech(FORMATS["pcm16"], "wwwwwwwwwwwwwwwwww")
    items = await transcribe(rt_worker, "ga", "pcm16", False, audio, commit_every=6)
    assert len(items.order) >= 3


async def raw(worker: Worker, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(
        f"ws://127.0.0.1:{worker.port}/v1/realtime?intent=transcription",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


def error_of(event: dict[str, object]) -> dict[str, object]:
    error = event["error"]
    assert isinstance(error, dict)
    return error


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, object]:
    async with asyncio.timeout(10):
        while True:
            event = json.loads(await ws.receive_str())
            if event["type"] == kind:
                return event  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{not json", "invalid_json"),
        ('{"type": "response.create"}', "unknown_event"),
        (
            '{"type": "session.update", "session": {"type": "transcription", "audio": {"input": '
            '{"format": {"type": "audio/pcm", "rate": 16000}}}}}',
            "unsupported_format",
        ),
        (
            '{"type": "transcription_session.update", "session": {"input_audio_format": "opus"}}',
            "unsupported_format",
        ),
        ('{"type": "input_audio_buffer.append", "audio": "%%%"}', "invalid_value"),
        ('{"type": "input_audio_buffer.append", "audio": "' + "A" * 1_500_000 + '"}', "audio_too_large"),
        ('{"type": "input_audio_buffer.commit", "event_id": "ev1"}', "input_audio_buffer_commit_empty"),
        ("[1, 2]", "invalid_event"),
    ],
)
async def test_bad_input_gets_an_error_and_the_session_goes_on(
    rt_worker: Worker, http: aiohttp.ClientSession, message: str, code: str
) -> None:
    async with await raw(rt_worker, http) as ws:
        await next_of(ws, "session.created")
        await ws.send_str(message)
        error = await next_of(ws, "error")
        assert error_of(error)["code"] == code
        assert set(error_of(error)) == {"type", "code", "message", "param", "event_id"}
        if "ev1" in message:
            assert error_of(error)["event_id"] == "ev1"
        await ws.send_str(json.dumps(session_update("ga", "g711_ulaw", True)))
        updated = await next_of(ws, "session.updated")
        assert updated["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}  # type: ignore[index]


async def test_format_is_locked_once_audio_flows(rt_worker: Worker, http: aiohttp.ClientSession) -> None:
    async with await raw(rt_worker, http) as ws:
        await next_of(ws, "session.created")
        audio = mock_speech(FORMATS["pcm16"], "..")
        await ws.send_str(
            json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()})
        )
        await ws.send_str(json.dumps(session_update("ga", "g711_ulaw", True)))
        error = await next_of(ws, "error")
        assert error_of(error)["code"] == "format_locked"
        await ws.send_str(json.dumps({"type": "input_audio_buffer.clear"}))
        await next_of(ws, "input_audio_buffer.cleared")


async def test_auth(rt_worker: Worker, http: aiohttp.ClientSession) -> None:
    url = f"ws://127.0.0.1:{rt_worker.port}/v1/realtime?intent=transcription"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url)
    assert refused.value.status == 401
    with pytest.raises(Exception, match="401"):
        async with client(rt_worker, "wrong-token").realtime.connect(
            extra_query={"intent": "transcription"}
        ) as conn:
            await conn.recv()
    # Browsers: the key as a subprotocol, `realtime` selected.
    async with http.ws_connect(
        url, protocols=("realtime", f"openai-insecure-api-key.{TOKEN}", "openai-beta.realtime-v1")
    ) as ws:
        assert ws.protocol == "realtime"
        created = json.loads(await ws.receive_str())
        assert created["type"] == "transcription_session.created"


async def test_watchers_see_the_call(rt_worker: Worker, http: aiohttp.ClientSession) -> None:
    """The call is a call like any other: in /v1/sessions while it runs, and its events on SSE."""
    base = f"127.0.0.1:{rt_worker.port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def watch() -> str:
        lines: list[str] = []
        async with http.get(f"http://{base}/v1/calls/rt-watched/events", headers=auth) as response:
            async for raw_line in response.content:
                lines.append(raw_line.decode())
                if '"session_ended"' in lines[-1]:
                    return "".join(lines)
        return "".join(lines)

    async with asyncio.timeout(20), asyncio.TaskGroup() as tg:
        sse = tg.create_task(watch())
        url = f"ws://{base}/v1/realtime?intent=transcription&interaction_id=rt-watched&tenant_id=acme"
        async with http.ws_connect(url, headers=auth) as ws:
            await next_of(ws, "session.created")
            audio = mock_speech(FORMATS["pcm16"], ".ww.")
            append = {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()}
            await ws.send_str(json.dumps(append))
            completed = await next_of(ws, "conversation.item.input_audio_transcription.completed")
            async with http.get(f"http://{base}/v1/sessions", headers=auth) as response:
                sessions = json.dumps(await response.json())
        watched = await sse
    assert "rt-watched" in sessions and "acme" in sessions
    assert f'"text":"{completed["transcript"]}"' in watched and '"reason":"client_closed"' in watched


async def test_a_call_the_provider_fails_gets_an_error_and_a_1011(http: aiohttp.ClientSession) -> None:
    async with running_worker(MockProvider(MockOptions(fail_opens=5, fail_fatal=True))) as worker:
        url = f"ws://127.0.0.1:{worker.port}/v1/realtime?intent=transcription"
        async with http.ws_connect(url) as ws:
            await next_of(ws, "session.created")
            audio = mock_speech(FORMATS["pcm16"], "ww")
            append = {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()}
            await ws.send_str(json.dumps(append))
            error = await next_of(ws, "error")
            assert error_of(error)["type"] == "server_error"
            async with asyncio.timeout(10):
                while (await ws.receive()).type is aiohttp.WSMsgType.TEXT:
                    pass
            assert ws.close_code == 1011


async def test_the_sdks_beta_client_gets_the_beta_names(rt_worker: Worker) -> None:
    """The SDK's beta realtime client (`client.beta.realtime`, `OpenAI-Beta: realtime=v1`) with
    `transcription_session.update`: the session is announced and answered by the beta names,
    and items are `conversation.item.created`."""
    fmt = FORMATS["g711_alaw"]
    audio = mock_speech(fmt, "..www...ww...")
    items = Items()
    beta = client(rt_worker).beta.realtime
    async with beta.connect(model="gpt-4o-transcribe", extra_query={"intent": "transcription"}) as conn:
        first = await conn.recv()
        assert str(first.type) == "transcription_session.created"  # a name the beta types lack
        await conn.transcription_session.update(
            session={"input_audio_format": "g711_alaw", "turn_detection": {"type": "server_vad"}}
        )
        updated = await conn.recv()
        assert updated.type == "transcription_session.updated"
        for i in range(0, len(audio), fmt.bytes_for(0.1)):
            await conn.input_audio_buffer.append(
                audio=base64.b64encode(audio[i : i + fmt.bytes_for(0.1)]).decode()
            )
        want = " ".join(expected_words(audio, fmt))
        async with asyncio.timeout(20):
            async for event in conn:
                items.take(event)
                complete = items.order and all(i in items.completed for i in items.order)
                if complete and " ".join(t for i in items.order if (t := items.completed[i][0])) == want:
                    break
    assert items.check() == want
    assert "conversation.item.created" in items.types and "conversation.item.added" not in items.types
