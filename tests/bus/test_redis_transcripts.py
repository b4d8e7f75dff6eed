"""Transcript documents and webhooks on the Redis bus: any worker serves a call's document
(the events its owner wrote to `asr:document:{ID}`, with a TTL), a document survives a kill
-9 of the worker that began the call (the next owner's part and the dead one's read as one
call), and its webhook is sent by whichever worker holds the delivery, another claiming it if
that one dies mid-try. Real redis-server; worker processes where one is killed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from standardwebhooks import Webhook

from asr_worker.bus.redis.wire import (
    CALLS_KEY,
    DELIVERIES_KEY,
    DELIVERY_GROUP,
    GROUP,
    document_key,
    progress_key,
)
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.events import CallEvent, SessionEnded, SessionStarted, Transcript
from asr_worker.jsonwire import dumps_event
from asr_worker.providers.mock import MockOptions, MockProvider, expected_words
from asr_worker.tools.publish import publish_call
from tests.conftest import base_url
from tests.support.audio import PCM8K, frames, silence, speechlike
from tests.support.client import connect
from tests.support.redis_server import RedisServer, transcript, until, wait_for_calls_to_end
from tests.support.telephony import open_sse
from tests.support.webhooks import HANG, SECRET, secret, webhook_target
from tests.support.workers import WorkerProcess, worker_processes

from .conftest import call_audio
from .test_redis_streams import bus_worker

STEREO = AudioFormat(Encoding.LINEAR16, 8000, 2)
FORMATS = ("json", "vtt", "srt", "txt")


async def documents(http: aiohttp.ClientSession, url: str, iid: str) -> dict[str, str]:
    out = {}
    for fmt in FORMATS:
        async with http.get(f"{url}/v1/calls/{iid}/transcript?format={fmt}") as response:
            assert response.status == 200, await response.text()
            out[fmt] = await response.text()
    return out


async def test_any_worker_serves_a_finished_two_channel_calls_document(
    redis_server: RedisServer, r: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    keep_s = 600.0
    multichannel = MockProvider(MockOptions(multichannel=True))
    async with (
        bus_worker(multichannel, redis_server, transcript_keep_s=keep_s) as first,
        bus_worker(MockProvider(), redis_server, transcript_keep_s=keep_s) as second,
    ):
        watcher = await open_sse(http, first, "/v1/calls/two-sides/events")
        call = await connect(http, first, "two-sides", "encoding=linear16&sample_rate=8000&channels=2")
        audio = speechlike(1.2, STEREO, seed=5) + silence(0.6, STEREO) + speechlike(1.0, STEREO, seed=6)
        await call.send_frames(frames(audio, STEREO))
        await call.end()
        await call.collect()
        streamed = [e.data for e in await watcher.rest()]

        async def written() -> bool:
            return any(e["type"] == "session_ended" for e in await transcript(r, "two-sides"))

        await until(written)
        here = await documents(http, base_url(first), "two-sides")
        there = await documents(http, base_url(second), "two-sides")  # it never saw the call
    assert here == there
    finals = sorted(
        (e for e in streamed if e["type"] == "transcript" and e["is_final"] and e["text"]),
        key=lambda e: (float(str(e["start"])), int(str(e["channel"])), int(str(e["seq"]))),
    )
    document = json.loads(there["json"])
    assert document["status"] == "ended" and {u["channel"] for u in document["utterances"]} == {0, 1}
    assert [(u["seq"], u["channel"], u["text"], u["start"], u["end"]) for u in document["utterances"]] == [
        (e["seq"], e["channel"], e["text"], e["start"], e["end"]) for e in finals
    ]
    assert len(there["vtt"].rstrip("\n").split("\n\n")) == len(finals) + 1
    ttl = await r.ttl(document_key("two-sides"))
    assert 0 < ttl <= keep_s


def holder(workers: list[WorkerProcess], consumer: str) -> WorkerProcess:
    """The worker whose bus consumer is named `consumer` (its log says so when it connects)."""
    for worker in workers:
        if any(line.get("consumer") == consumer for line in worker.logs()):
            return worker
    raise AssertionError(f"no worker is consumer {consumer}")


async def test_kill_9_mid_call_and_mid_delivery_still_delivers_the_whole_document(
    redis_server: RedisServer, r: aioredis.Redis, tmp_path: Path
) -> None:
    """The worker holding the call is killed mid-call: the next owner ends it and queues its
    document. The target then holds the first try without answering and the worker holding
    the delivery is killed too: a third takes the delivery over and sends it again, with the
    same key. The document is the whole call, both owners' parts."""
    audio = call_audio(5.0, seed=700)
    async with webhook_target([HANG]) as target:
        env = {
            "ASR_CLAIM_IDLE_S": "2",
            "ASR_WEBHOOK_URL": target.url("/done"),
            "ASR_WEBHOOK_SECRET": SECRET,
            "ASR_WEBHOOK_TIMEOUT_S": "60",
        }
        async with worker_processes(3, redis_server.url, tmp_path, **env) as workers:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(publish_call(audio, redis_server.url, "kept", speed=1))

                async def has_finals() -> bool:
                    return any(e.get("is_final") for e in await transcript(r, "kept"))

                await until(has_finals)
                owner = next(w for w in workers if "kept" in w.calls())
                owner.kill()
            await wait_for_calls_to_end(r, ["kept"], timeout_s=30)
            await target.wait_for(1, timeout_s=30)  # held, unanswered
            pending: object = await r.xpending_range(DELIVERIES_KEY, DELIVERY_GROUP, "-", "+", 10)
            assert isinstance(pending, list) and len(pending) == 1
            sender = holder(workers, str(pending[0]["consumer"].decode()))
            assert sender is not owner
            sender.kill()
            await target.wait_for(2, timeout_s=30)  # another worker claimed it and sent it again
            survivor = next(w for w in workers if w not in (owner, sender))

            async def sent() -> bool:
                return not await r.xlen(DELIVERIES_KEY)  # acknowledged and deleted

            await until(sent, timeout_s=10)
            async with aiohttp.ClientSession() as http:
                served = await documents(http, survivor.url, "kept")
    first, second = target.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    body = Webhook(SECRET).verify(second.body, second.headers)
    document = body["data"]
    assert body["type"] == "transcript.completed" and document["status"] == "ended"
    words = [w for u in document["utterances"] for w in u["text"].split()]
    assert words == expected_words(audio.data, PCM8K)  # every word once: both owners' parts
    assert len(document["resumes"]) == 1
    assert json.loads(served["json"]) == document


async def test_a_call_found_done_but_not_acknowledged_still_has_its_document_sent(
    redis_server: RedisServer, r: aioredis.Redis
) -> None:
    """As a worker leaves a call when killed after writing its end and before acknowledging its
    entry (and so, maybe, before queueing its document): the entry pending for a consumer that
    is gone, the call's hash ended, its document events in Redis. The worker that is handed the
    entry finds the call done and queues the document for the announcement's callback."""
    async with webhook_target() as target:
        await r.xgroup_create(CALLS_KEY, GROUP, id="0", mkstream=True)
        announced = {"interaction_id": "done-1", "sample_rate": 8000, "callback": target.url("/cb")}
        entry = await r.xadd(CALLS_KEY, {"data": json.dumps(announced)})
        await r.xreadgroup(GROUP, "gone-worker", {CALLS_KEY: ">"}, count=1)
        await r.hset(progress_key("done-1"), mapping={"call": entry, "ended": "1"})
        events: list[CallEvent] = [
            SessionStarted("done-1", "default", 1, "mock", "linear16", 8000, 1, 1_764_300_000_000),
            Transcript(
                "done-1", "default", 2, 0, True, True, False, "hello", 0.9, 0.0, 0.4, (), "mock", 5, 0
            ),
            SessionEnded("done-1", "default", 3, "end", 0.4, 0, 1, "mock", 1_764_300_000_400),
        ]
        await r.rpush(document_key("done-1"), *(dumps_event(e) for e in events))
        async with bus_worker(MockProvider(), redis_server, webhook_secret=secret()):
            [delivery] = await target.wait_for(1)
    body = Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert delivery.path == "/cb" and body["data"]["status"] == "ended"
    assert [u["text"] for u in body["data"]["utterances"]] == ["hello"]
    assert (await r.xpending(CALLS_KEY, GROUP))["pending"] == 0
