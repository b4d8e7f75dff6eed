"""The official `openai` SDK's realtime client transcribing real speech (sentences in Piper's
natural voice) through `/v1/realtime` on a worker running the local engine: the GA schema with server VAD
on 24 kHz pcm16 and the beta schema with manual commits on 8 kHz G.711 u-law, at once. Each
item's deltas must concatenate to its `completed` transcript, and the text must be right
(WER at most 10%)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest
from openai import AsyncOpenAI

from asr_worker.config import Settings, make_provider
from asr_worker.core.audio import Encoding
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.speech import SENTENCES, CallAudio, Speech, word_error_rate
from tests.transports.test_openai_realtime import Items, session_update

MAX_WER = 0.10
FRAME_S = 0.04

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def local_worker(http: aiohttp.ClientSession) -> AsyncIterator[Worker]:
    async with running_worker(make_provider(Settings())) as worker:
        async with asyncio.timeout(120):  # the first run on a machine assembles the model
            while True:
                async with http.get(f"{base_url(worker)}/ready") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
        yield worker


async def run(worker: Worker, schema: str, fmt_name: str, vad: bool, call: CallAudio) -> tuple[Items, str]:
    items = Items()
    client = AsyncOpenAI(api_key="unused", websocket_base_url=f"ws://127.0.0.1:{worker.port}/v1")
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await conn.send(session_update(schema, fmt_name, vad))  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        sent = asyncio.Event()
        announced: list[int] = []  # items committed before the final commit

        async def play() -> None:
            step = call.fmt.bytes_for(FRAME_S)
            started = loop.time()
            for n, i in enumerate(range(0, len(call.data), step)):
                await conn.input_audio_buffer.append(audio=base64.b64encode(call.data[i : i + step]).decode())
                await asyncio.sleep(max(0.0, started + (n + 1) * FRAME_S - loop.time()))
            # The end of the audio: a commit asks for the last item now, with or without VAD.
            announced.append(len(items.order))
            await conn.input_audio_buffer.commit()
            sent.set()

        async with asyncio.timeout(90), asyncio.TaskGroup() as tg:
            tg.create_task(play())
            async for event in conn:
                items.take(event)
                # Done once the final commit's item and every item before it are complete.
                done = all(i in items.completed for i in items.order)
                if sent.is_set() and len(items.order) > announced[0] and done:
                    break
    assert not items.errors, items.errors
    return items, items.check()


async def test_the_sdk_transcribes_real_speech_through_the_local_engine(
    local_worker: Worker, natural_speech: Speech
) -> None:
    wide = natural_speech.call(SENTENCES[0:3], 24000)
    phone = natural_speech.call(SENTENCES[3:6], 8000, Encoding.MULAW)  # as the ingest test plays them
    async with asyncio.TaskGroup() as tg:
        ga = tg.create_task(run(local_worker, "ga", "pcm16", True, wide))
        beta = tg.create_task(run(local_worker, "beta", "g711_ulaw", False, phone))
    (ga_items, ga_text), (beta_items, beta_text) = ga.result(), beta.result()
    report = f"GA: {ga_text!r} | beta: {beta_text!r}"
    assert word_error_rate(wide.text, ga_text) <= MAX_WER, report
    assert word_error_rate(phone.text, beta_text) <= MAX_WER, report
    assert len([t for t in ga_items.completed.values() if t[0]]) >= 2, report  # an item per sentence or so
    assert len(beta_items.order) == 1, report  # one commit, one item
    print(report)
