"""dg-server sends SpeechStarted and UtteranceEnd only to a client that asked for them, once
per utterance, in time order, whatever the engine reports: strict Deepgram clients (and their
utterance logic) rely on it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect

from asr_worker.core.provider_events import (
    ProviderEvent,
    SpeechStarted,
    TranscriptResult,
    UtteranceEnd,
    Word,
)
from asr_worker.deepgram import protocol
from asr_worker.dgserver import DeepgramServer
from asr_worker.providers.base import ProviderHealth, StreamRequest

HELLO = (Word("hello", 0.30, 0.60, 0.9), Word("there", 0.62, 0.90, 0.9))
AGAIN = (Word("again", 2.10, 2.40, 0.9),)

# What the local engine reports for two utterances: its VAD's SpeechStarted (a little after the
# first word's start), interims, the final, its own UtteranceEnd; then a second utterance.
SCRIPT: tuple[ProviderEvent, ...] = (
    SpeechStarted(0, 0.35),
    TranscriptResult(0, False, False, "hello", 0.9, 0.0, 0.6, HELLO[:1]),
    TranscriptResult(0, True, True, "hello there", 0.9, 0.0, 1.0, HELLO),
    UtteranceEnd(0, 0.90),
    TranscriptResult(0, True, False, "", 0.0, 1.0, 1.0),
    SpeechStarted(0, 2.15),
    TranscriptResult(0, True, True, "again", 0.9, 2.0, 0.5, AGAIN),
    UtteranceEnd(0, 2.40),
)


class _ScriptedStream:
    def __init__(self) -> None:
        self._closed = asyncio.Event()

    async def send_audio(self, data: bytes) -> None:
        pass

    async def keepalive(self) -> None:
        pass

    async def finalize(self) -> None:
        pass

    async def close_stream(self) -> None:
        self._closed.set()

    async def abort(self) -> None:
        self._closed.set()

    async def events(self) -> AsyncIterator[ProviderEvent]:
        for event in SCRIPT:
            yield event
        await self._closed.wait()


class ScriptedEngine:
    """A provider that reports `SCRIPT` on every stream, then ends at CloseStream."""

    name = "scripted"

    async def open(self, request: StreamRequest) -> _ScriptedStream:
        return _ScriptedStream()

    def health(self) -> ProviderHealth:
        return ProviderHealth(ok=True)

    async def aclose(self) -> None:
        pass


async def received_types(query: str) -> list[dict[str, object]]:
    server = DeepgramServer(ScriptedEngine())
    async with server.running() as running:
        url = f"ws://127.0.0.1:{running.port}/v1/listen?encoding=linear16&sample_rate=8000{query}"
        async with connect(url) as ws:
            await ws.send(b"\x00\x00" * 800)
            await asyncio.sleep(0)  # the script is reported at once; CloseStream ends it
            messages = []
            async with asyncio.timeout(10):
                while True:
                    message = json.loads(await ws.recv())
                    messages.append(message)
                    if message["type"] == "Results" and message["channel"]["alternatives"][0][
                        "transcript"
                    ] == ("again"):
                        break
            await ws.send(protocol.CLOSE_STREAM)
            async for raw in ws:
                messages.append(json.loads(raw))
    return [m for m in messages if m["type"] in ("SpeechStarted", "UtteranceEnd")]


async def test_nothing_unasked_reaches_the_client() -> None:
    assert await received_types("&interim_results=true") == []


async def test_speech_started_alone_when_only_vad_events_is_asked() -> None:
    got = await received_types("&interim_results=true&vad_events=true")
    assert [m["type"] for m in got] == ["SpeechStarted", "SpeechStarted"]


@pytest.mark.parametrize("interim", ["true", "false"])
async def test_utterance_end_only_with_utterance_end_ms_and_interims(interim: str) -> None:
    got = await received_types(f"&interim_results={interim}&utterance_end_ms=1000")
    expected = ["UtteranceEnd", "UtteranceEnd"] if interim == "true" else []
    assert [m["type"] for m in got] == expected


async def test_one_speech_started_per_utterance_in_time_order() -> None:
    got = await received_types("&interim_results=true&vad_events=true&utterance_end_ms=1000")
    assert [m["type"] for m in got] == ["SpeechStarted", "UtteranceEnd", "SpeechStarted", "UtteranceEnd"]
    started = [float(str(m["timestamp"])) for m in got if m["type"] == "SpeechStarted"]
    assert started == sorted(started) and started[0] == pytest.approx(0.35)
