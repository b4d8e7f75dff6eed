"""Webhooks from a running worker (the in-memory bus): a call's `callback` and the process's
ASR_WEBHOOK_URL get the call's document when it ends, signed as Standard Webhooks has it (its
own library verifies every request), retried with the same idempotency key, given up after
the bound without the call ever waiting; and each final as it happens, when asked."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import aiohttp
import pytest
from standardwebhooks import Webhook

from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, speechlike
from tests.support.client import CallClient, connect
from tests.support.wait import until
from tests.support.webhooks import HANG, SECRET, Target, secret, webhook_target

PCM = "encoding=linear16&sample_rate=8000&channels=1"


def metric(worker: Worker, name: str, **labels: str) -> float:
    value = worker.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


async def counted(worker: Worker, name: str, count: float, **labels: str) -> None:
    """Wait until the worker's counter reaches `count`."""
    await until(lambda: metric(worker, name, **labels) >= count)


async def call_with(
    http: aiohttp.ClientSession, worker: Worker, iid: str, query: str = "", seconds: float = 1.2
) -> CallClient:
    call = await connect(http, worker, iid, PCM + query)
    await call.send_frames(frames(speechlike(seconds)))
    await call.end()
    await call.collect()
    assert call.of("session_ended") and not call.of("error")
    return call


def verified(target: Target) -> list[dict[str, object]]:
    """Every request's body, each checked by Standard Webhooks' own verifier."""
    webhook = Webhook(SECRET)
    out = []
    for request in target.received:
        body = webhook.verify(request.body, request.headers)
        assert isinstance(body, dict)
        out.append(body)
    return out


async def test_a_target_that_fails_twice_then_takes_it_gets_one_document_under_one_key(
    http: aiohttp.ClientSession,
) -> None:
    async with webhook_target([500, 503]) as target:
        async with running_worker(webhook_secret=secret(), webhook_backoff_s=0.01) as worker:
            call = await call_with(http, worker, "hook-1", f"&callback={quote(target.url('/calls?t=1'))}")
            await target.wait_for(3)
            await counted(worker, "asr_webhook_delivered_total", 1)
            assert metric(worker, "asr_webhook_retried_total") == 2
        tries = list(target.received)  # the worker has stopped: nothing more can come
    assert tries == target.received
    assert len(tries) == 3 and {r.path for r in tries} == {"/calls?t=1"}
    assert len({r.headers["webhook-id"] for r in tries}) == 1  # the same key on every try
    assert len({r.body for r in tries}) == 1  # the same document
    bodies = verified(target)
    document = bodies[0]["data"]
    assert isinstance(document, dict) and bodies[0]["type"] == "transcript.completed"
    assert (document["interaction_id"], document["status"], document["end_reason"]) == (
        "hook-1",
        "ended",
        "end",
    )
    finals = [e for e in call.of("transcript") if e["is_final"] and e["text"]]
    utterances = document["utterances"]
    assert isinstance(utterances, list)
    assert [(u["seq"], u["text"], u["start"], u["end"]) for u in utterances] == [
        (e["seq"], e["text"], e["start"], e["end"]) for e in finals
    ]


async def test_a_target_that_never_answers_is_dropped_after_the_bound_and_the_call_never_waits(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asr_worker.webhooks")
    async with (
        webhook_target([HANG, HANG]) as target,
        running_worker(
            webhook_secret=secret(), webhook_timeout_s=0.3, webhook_max_attempts=2, webhook_backoff_s=0.0
        ) as worker,
    ):
        call = await call_with(http, worker, "hook-hang", f"&callback={quote(target.url())}")
        # The call is over, its session gone, while the target still holds the first try.
        assert call.of("session_ended") and not worker.manager.sessions
        await target.wait_for(1)
        await target.wait_for(2)  # the first try timed out; the second too, then it is dropped
        await counted(worker, "asr_webhook_dropped_total", 1, reason="attempts")
        assert metric(worker, "asr_webhook_delivered_total") == 0
    [line] = [r for r in caplog.records if r.getMessage() == "webhook dropped"]
    said = line.__dict__
    assert said["reason"] == "attempts" and said["target"] == f"http://127.0.0.1:{target.port}"
    assert "2 tries failed" in said["why"]


async def test_finals_as_they_happen_and_the_process_target_too(http: aiohttp.ClientSession) -> None:
    async with (
        webhook_target() as callback,
        webhook_target() as process,
        running_worker(webhook_secret=secret(), webhook_url=process.url("/all")) as worker,
    ):
        query = f"&callback={quote(callback.url())}&callback_finals=true"
        call = await call_with(http, worker, "hook-finals", query, seconds=2.0)
        finals = [e for e in call.of("transcript") if e["is_final"] and e["text"]]
        await callback.wait_for(len(finals) + 1)
        await process.wait_for(1)
    verified(callback)
    verified(process)
    sent_finals = [json.loads(r.body)["data"] for r in callback.of("transcript.final")]
    assert sorted(sent_finals, key=lambda e: e["seq"]) == finals  # each final, as the socket had it
    assert len({r.headers["webhook-id"] for r in callback.received}) == len(finals) + 1
    [mine] = callback.of("transcript.completed")
    [theirs] = process.of("transcript.completed")  # ASR_WEBHOOK_URL: the document only
    assert len(process.received) == 1
    assert json.loads(mine.body)["data"] == json.loads(theirs.body)["data"]
    assert mine.headers["webhook-id"] != theirs.headers["webhook-id"]  # one key per target


async def test_a_private_callback_is_refused_where_tenants_name_them(http: aiohttp.ClientSession) -> None:
    """ASR_WEBHOOK_PRIVATE_TARGETS=deny: a call's callback at a loopback address (named, or by
    a name that resolves there) is never connected to; the operator's ASR_WEBHOOK_URL is."""
    async with (
        webhook_target() as target,
        running_worker(
            webhook_secret=secret(), webhook_private_targets="deny", webhook_url=target.url("/operator")
        ) as worker,
    ):
        await call_with(http, worker, "priv-1", f"&callback={quote(target.url('/tenant'))}")
        await call_with(
            http, worker, "priv-2", f"&callback={quote(f'http://localhost:{target.port}/tenant')}"
        )
        await target.wait_for(2)
        await counted(worker, "asr_webhook_dropped_total", 2, reason="policy")
    assert sorted(r.path for r in target.received) == ["/operator", "/operator"]
