"""The real engine on real speech, end to end: sentences in a natural voice (Piper) streamed
at real-time pace into a real worker (default `local` provider and engine) over the ingest
WebSocket, several calls at once, at 16 kHz and as 8 kHz telephone audio (mu-law, and two
channels). Each call must come back with word error rate at most 10%, interims, and each
sentence's final while the call is still going (not all at its end). How soon a final comes
(p95 within 1.5 s of the end of speech at 20 two-leg calls) and how often interims come are
speed goals, measured by `python -m bench.local --parts capacity`: interims only fill the
decoders' spare time, so their number falls with load, by design. This test prints the latencies it saw."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from asr_worker.config import Settings, make_provider
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.speech import SENTENCES, Speech, Spoken, interleave, word_error_rate

FRAME_S = 0.02
MAX_WER = 0.10

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def local_worker(http: aiohttp.ClientSession) -> AsyncIterator[Worker]:
    settings = Settings()
    assert settings.provider == "local", "the embedded default"
    async with running_worker(make_provider(settings)) as worker:
        async with asyncio.timeout(120):  # the first run on a machine assembles the model
            while True:
                async with http.get(f"{base_url(worker)}/ready") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
        yield worker


@dataclass
class Received:
    at: float  # loop time the event arrived
    event: dict[str, object]


@dataclass
class Call:
    name: str
    fmt: AudioFormat
    data: bytes
    spoken: dict[int, tuple[Spoken, ...]]  # per channel
    started_at: float = 0.0
    audio_sent_at: float = 0.0  # loop time the last audio went out, before `end`
    received: list[Received] = field(default_factory=list)

    def transcripts(self, channel: int) -> list[Received]:
        return [r for r in self.received if r.event["type"] == "transcript" and r.event["channel"] == channel]


async def run_call(http: aiohttp.ClientSession, worker: Worker, call: Call) -> None:
    query = f"encoding={call.fmt.encoding}&sample_rate={call.fmt.sample_rate}&channels={call.fmt.channels}"
    loop = asyncio.get_running_loop()
    async with http.ws_connect(f"ws://127.0.0.1:{worker.port}/v1/audio/{call.name}?{query}") as ws:

        async def play() -> None:
            step = call.fmt.bytes_for(FRAME_S)
            call.started_at = loop.time()
            for n, i in enumerate(range(0, len(call.data), step)):
                await ws.send_bytes(call.data[i : i + step])
                await asyncio.sleep(max(0.0, call.started_at + (n + 1) * FRAME_S - loop.time()))
            call.audio_sent_at = loop.time()
            await ws.send_str(json.dumps({"type": "end"}))

        async with asyncio.TaskGroup() as tg:
            tg.create_task(play())
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    call.received.append(Received(loop.time(), json.loads(msg.data)))


async def test_real_speech_streamed_at_real_time_is_transcribed_accurately_and_promptly(
    local_worker: Worker, http: aiohttp.ClientSession, natural_speech: Speech
) -> None:
    wide = natural_speech.call(SENTENCES[0:3], 16000)
    phone = natural_speech.call(SENTENCES[3:6], 8000, Encoding.MULAW)
    left = natural_speech.call(SENTENCES[6:8], 8000)
    right = natural_speech.call(SENTENCES[8:10], 8000, lead_s=2.5)
    calls = [
        Call("wideband-16k", wide.fmt, wide.data, {0: wide.spoken}),
        Call("phone-8k-mulaw", phone.fmt, phone.data, {0: phone.spoken}),
        Call(
            "phone-8k-stereo",
            AudioFormat(Encoding.LINEAR16, 8000, 2),
            interleave(left, right),
            {0: left.spoken, 1: right.spoken},
        ),
    ]
    async with asyncio.TaskGroup() as tg:
        for call in calls:
            tg.create_task(run_call(http, local_worker, call))

    report = []
    for call in calls:
        ended = [r.event for r in call.received if r.event["type"] == "session_ended"]
        assert ended and ended[0]["reason"] == "end", call.name
        assert not [r.event for r in call.received if r.event["type"] == "error"], call.name
        for channel, spoken in call.spoken.items():
            transcripts = call.transcripts(channel)
            finals = [r for r in transcripts if r.event["is_final"] and r.event["text"]]
            hypothesis = " ".join(str(r.event["text"]) for r in finals)
            reference = " ".join(s.text for s in spoken)
            wer = word_error_rate(reference, hypothesis)
            latencies = [final_latency(call, finals, s) for s in spoken]
            report.append(f"{call.name} ch{channel}: WER {wer:.2f} latencies {latencies} | {hypothesis}")
            assert wer <= MAX_WER, report[-1]
            # Streaming, not batch: every sentence but the last is final before the call ends.
            for sentence in spoken[:-1]:
                assert covering_final(call, finals, sentence).at < call.audio_sent_at, report[-1]
        interims = [r for r in call.received if r.event["type"] == "transcript" and not r.event["is_final"]]
        assert interims, f"{call.name}: no interim at all"
    print("\n".join(report))


def covering_final(call: Call, finals: list[Received], spoken: Spoken) -> Received:
    """The first final whose end reaches the end of the sentence's speech."""
    covering = next((r for r in finals if float(str(r.event["end"])) >= spoken.end_s - 0.05), None)
    assert covering is not None, f"no final covers {spoken.text!r} in {call.name}"
    return covering


def final_latency(call: Call, finals: list[Received], spoken: Spoken) -> float:
    """From the moment the client sent the end of the sentence's speech to the final that covers it."""
    return round(covering_final(call, finals, spoken).at - (call.started_at + spoken.end_s), 2)


async def test_finalize_mid_call_returns_the_open_utterance_at_once_and_the_call_goes_on(
    local_worker: Worker, http: aiohttp.ClientSession, natural_speech: Speech
) -> None:
    """A voice bot's turn end: the caller stopped, too briefly for the endpointer (0.1 s of
    silence, it waits 0.45 s), and `finalize` asks for the final now; then the call goes on."""
    turn = natural_speech.call(SENTENCES[0:1], 8000, tail_s=0.1)
    rest = natural_speech.call(SENTENCES[1:2], 8000, lead_s=0.3)
    step = turn.fmt.bytes_for(FRAME_S)
    query = "encoding=linear16&sample_rate=8000&channels=1"
    async with http.ws_connect(f"ws://127.0.0.1:{local_worker.port}/v1/audio/turns?{query}") as ws:
        for i in range(0, len(turn.data), step):
            await ws.send_bytes(turn.data[i : i + step])
        await ws.send_str(json.dumps({"type": "finalize"}))
        events: list[dict[str, object]] = []
        async with asyncio.timeout(30):
            while not (events and events[-1].get("from_finalize")):
                events.append(json.loads((await ws.receive()).data))
        flushed = events[-1]
        assert flushed["is_final"] and word_error_rate(turn.spoken[0].text, str(flushed["text"])) <= MAX_WER
        assert not [e for e in events if e["type"] == "transcript" and e["is_final"] and e is not flushed]
        for i in range(0, len(rest.data), step):
            await ws.send_bytes(rest.data[i : i + step])
        await ws.send_str(json.dumps({"type": "end"}))
        async with asyncio.timeout(30):
            async for msg in ws:
                events.append(json.loads(msg.data))
    finals = [e for e in events if e["type"] == "transcript" and e["is_final"] and e["text"]]
    hypothesis = " ".join(str(e["text"]) for e in finals)
    assert word_error_rate(f"{turn.spoken[0].text} {rest.spoken[0].text}", hypothesis) <= MAX_WER, hypothesis
    assert events[-1]["type"] == "session_ended" and events[-1]["reason"] == "end"
