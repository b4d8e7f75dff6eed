"""A call's `redact` reaches it by every route that carries options, read by the one reader
(`core.call_options`): the ingest query, Twilio's and Exotel's custom parameters, AudioHook's
`customConfig`, `/v1/realtime`'s query (the official `openai` SDK's `extra_query`), the Redis
bus announcement; a value the worker cannot honour is refused, never ignored. The mock
provider speaks digit words here: what every route's watchers read is redacted."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from asr_worker.audiohook.signature import ApiKeys as HookKeys
from asr_worker.bus.redis.wire import parse_announcement
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.call_options import CallOptions
from asr_worker.core.events import SessionEnded, Transcript
from asr_worker.core.ids import CallKey
from asr_worker.credentials import Secret
from asr_worker.errors import ParamError
from asr_worker.providers.mock import MockOptions, MockProvider
from asr_worker.runtime.hub import Subscription
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, silence, speechlike
from tests.support.audiohook import ORG
from tests.support.audiohook import connect as hook_connect
from tests.support.client import connect
from tests.support.telephony import (
    exotel_media,
    exotel_start,
    exotel_stop,
    twilio_media,
    twilio_start,
    twilio_stop,
    wait_until,
    ws_url,
)

from .test_openai_realtime import TOKEN
from .test_openai_realtime import client as realtime_client

TRACK = AudioFormat(Encoding.MULAW, 8000, 1)
PCM = AudioFormat(Encoding.LINEAR16, 8000, 1)
_DIGIT_WORD = re.compile(r"\b(?:zero|one|two|three|four|five|six|seven|eight|nine)\b")


@pytest.fixture
async def digits_worker() -> AsyncIterator[tuple[Worker, MockProvider]]:
    provider = MockProvider(MockOptions(digits=True))
    async with running_worker(
        provider, worker_token=Secret(TOKEN), audiohook_api_keys=HookKeys.parse("hook-key")
    ) as worker:
        yield worker, provider


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def watched(subscription: Subscription) -> list[Transcript]:
    out: list[Transcript] = []
    async with asyncio.timeout(10):
        async for event in subscription:
            if isinstance(event, Transcript):
                out.append(event)
            elif isinstance(event, SessionEnded):
                return out
    return out


def assert_redacted(transcripts: list[Transcript]) -> None:
    texts = [t.text for t in transcripts] + [w.word for t in transcripts for w in t.words]
    assert transcripts and not [t for t in texts if _DIGIT_WORD.search(t)], texts
    assert any("[REDACTED]" in t or "_1]" in t for t in texts)


def test_the_one_reader_takes_deepgrams_values_in_every_shape_and_refuses_what_it_cannot_honour() -> None:
    assert CallOptions.from_query({"redact": "PCI, ssn"}).redact == {"pci", "ssn"}
    assert CallOptions.from_parameters({"redact": "numbers"}).redact == {"numbers"}
    assert CallOptions.from_fields({"redact": ["pci", "true"]}, "customConfig").redact == {"pci", "true"}
    assert CallOptions.from_fields({"redact": True}, "").redact == {"true"}
    assert CallOptions.from_query({"redact": "false"}).redact == frozenset()
    for bad in ({"redact": "pii"}, {"redact": "pci,phi"}, {"redact": "credit_card"}):
        with pytest.raises(ParamError, match="is not redacted here; one of pci, ssn, numbers"):
            CallOptions.from_query(bad)
    with pytest.raises(ParamError, match=r"customConfig\.redact must be a list of strings"):
        CallOptions.from_fields({"redact": 3}, "customConfig")
    announced, _, problem = parse_announcement(
        json.dumps(
            {"interaction_id": "bus-1", "encoding": "pcm16", "sample_rate": 8000, "redact": "pci"}
        ).encode()
    )
    assert announced is not None and not problem and announced.options.redact == {"pci"}
    _, _, problem = parse_announcement(
        json.dumps(
            {"interaction_id": "bus-2", "encoding": "pcm16", "sample_rate": 8000, "redact": "pii"}
        ).encode()
    )
    assert "redact 'pii' is not redacted here" in problem


async def test_the_ingest_query_redacts_and_a_value_it_cannot_honour_is_refused(
    digits_worker: tuple[Worker, MockProvider], http: aiohttp.ClientSession
) -> None:
    worker, provider = digits_worker
    call = await connect(
        http, worker, "in-red", f"encoding=linear16&sample_rate=8000&redact=pci&redact=ssn&token={TOKEN}"
    )
    await call.send_frames(frames(speechlike(1.2) + silence(0.4)))
    await call.end()
    events = await call.collect()
    assert provider.streams_for("in-red")[0].request.options.redact == {"pci", "ssn"}
    texts = [str(e["text"]) for e in events if e["type"] == "transcript"]
    assert texts and not [t for t in texts if _DIGIT_WORD.search(t)], texts
    refused = await connect(
        http, worker, "in-bad", f"encoding=linear16&sample_rate=8000&redact=pii&token={TOKEN}"
    )
    (error,) = await refused.collect()
    assert error["code"] == "bad_request" and "redact 'pii' is not redacted here" in str(error["message"])
    assert refused.close_code == 1008


async def test_twilio_and_exotel_custom_parameters_redact(
    digits_worker: tuple[Worker, MockProvider], http: aiohttp.ClientSession
) -> None:
    worker, provider = digits_worker
    twilio_events = asyncio.create_task(watched(worker.hub.subscribe(CallKey("default", "tw-red"))))
    ws = await http.ws_connect(ws_url(worker, "/v1/twilio"), headers=auth())
    await ws.send_str(twilio_start(interaction_id="tw-red", tracks=("inbound",), params={"redact": "pci"}))
    for i, chunk in enumerate(frames(speechlike(1.2, TRACK) + silence(0.4, TRACK), TRACK)):
        await ws.send_str(twilio_media("inbound", i + 1, 20 * i, chunk))
    await ws.send_str(twilio_stop())
    assert_redacted(await twilio_events)
    exotel_events = asyncio.create_task(watched(worker.hub.subscribe(CallKey("default", "exo-red"))))
    ws = await http.ws_connect(ws_url(worker, "/v1/exotel"), headers=auth())
    await ws.send_str(exotel_start(interaction_id="exo-red", params={"redact": "numbers"}))
    for i, chunk in enumerate(frames(speechlike(1.2, PCM) + silence(0.4, PCM), PCM, ms=100)):
        await ws.send_str(exotel_media(i + 1, 100 * i, chunk))
    await ws.send_str(exotel_stop())
    assert_redacted(await exotel_events)
    assert provider.streams_for("tw-red")[0].request.options.redact == {"pci"}
    assert provider.streams_for("exo-red")[0].request.options.redact == {"numbers"}


async def test_audiohook_custom_config_redacts(
    digits_worker: tuple[Worker, MockProvider], http: aiohttp.ClientSession
) -> None:
    worker, provider = digits_worker
    events = asyncio.create_task(watched(worker.hub.subscribe(CallKey(ORG, "hook-red"))))
    hook = await hook_connect(http, worker, "hook-key")
    await hook.open(customConfig={"interaction_id": "hook-red", "redact": ["pci"]})
    stereo = AudioFormat(Encoding.MULAW, 8000, 2)
    await hook.audio(speechlike(1.2, stereo) + silence(0.4, stereo))
    await hook.close()
    assert_redacted(await events)
    entities = [
        str(i["transcript"]) for e in hook.events() for i in e["data"]["alternatives"][0]["interpretations"]
    ]
    assert entities and not [t for t in entities if _DIGIT_WORD.search(t)], entities
    assert provider.streams_for("hook-red")[0].request.options.redact == {"pci"}


async def test_the_realtime_query_redacts_what_the_openai_sdk_reads(
    digits_worker: tuple[Worker, MockProvider],
) -> None:
    worker, provider = digits_worker
    audio = speechlike(1.2, TRACK) + silence(0.6, TRACK)
    said: list[str] = []
    query = {"intent": "transcription", "interaction_id": "rt-red", "redact": "pci"}
    async with realtime_client(worker).realtime.connect(extra_query=query) as conn:
        await conn.session.update(
            session={
                "type": "transcription",
                "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None}},
            }
        )
        await conn.input_audio_buffer.append(audio=base64.b64encode(audio).decode())
        await conn.input_audio_buffer.commit()
        async for event in conn:
            assert event.type != "error", event
            if event.type == "conversation.item.input_audio_transcription.delta":
                said.append(event.delta or "")
            if event.type == "conversation.item.input_audio_transcription.completed":
                said.append(event.transcript)
                break
    assert said and not [t for t in said if _DIGIT_WORD.search(t)], said
    await wait_until(lambda: bool(provider.streams_for("rt-red")))
    assert provider.streams_for("rt-red")[0].request.options.redact == {"pci"}
