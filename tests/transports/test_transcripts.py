"""`GET /v1/calls/{id}/transcript`: a finished two-channel call's document, in JSON, WebVTT,
SRT and text, holds exactly the finals its SSE stream carried, in call-time order, each with
its channel's role; while the call runs it holds those so far. Tenant-scoped, like the call's
events. Real worker, real sockets; the mock provider hears each channel on its own."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.providers.mock import MockOptions, MockProvider
from asr_worker.tenancy import ApiKeys
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.audio import frames, silence, speechlike
from tests.support.client import connect
from tests.support.telephony import open_sse

STEREO = AudioFormat(Encoding.LINEAR16, 8000, 2)
QUERY = "encoding=linear16&sample_rate=8000&channels=2"
Event = dict[str, object]


async def get(
    http: aiohttp.ClientSession, worker: Worker, path: str, key: str | None = None
) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.get(f"{base_url(worker)}{path}", headers=headers) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def by_call_time(finals: list[Event]) -> list[Event]:
    return sorted(finals, key=lambda e: (float(str(e["start"])), int(str(e["channel"])), int(str(e["seq"]))))


def role(event: Event) -> str:
    return ("customer", "agent")[int(str(event["channel"]))]


def clock(seconds: object, mark: str) -> str:
    ms = round(float(str(seconds)) * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{mark}{ms % 1000:03d}"


async def test_a_finished_two_channel_calls_document_in_every_format_is_what_sse_streamed(
    http: aiohttp.ClientSession,
) -> None:
    async with running_worker(MockProvider(MockOptions(multichannel=True))) as worker:
        watcher = await open_sse(http, worker, "/v1/calls/doc-2ch/events")
        call = await connect(http, worker, "doc-2ch", QUERY)
        first = speechlike(1.4, STEREO, seed=3) + silence(0.6, STEREO)
        await call.send_frames(frames(first, STEREO))
        await call.next_event("transcript")
        await asyncio.sleep(0)  # nothing to wait for: a GET mid-call sees what is published
        status, _, text = await get(http, worker, "/v1/calls/doc-2ch/transcript")
        running = json.loads(text)
        assert status == 200 and running["status"] == "active" and running["ended_at"] is None
        await call.send_frames(frames(speechlike(1.6, STEREO, seed=4), STEREO))
        await call.end()
        await call.collect()
        streamed = [e.data for e in await watcher.rest()]
        answers = {
            fmt: await get(http, worker, f"/v1/calls/doc-2ch/transcript?format={fmt}")
            for fmt in ("json", "vtt", "srt", "txt")
        }
    finals = by_call_time([e for e in streamed if e["type"] == "transcript" and e["is_final"] and e["text"]])
    assert {e["channel"] for e in finals} == {0, 1}, "both sides spoke"
    roles = {0: "customer", 1: "agent"}

    status, content_type, text = answers["json"]
    document = json.loads(text)
    assert status == 200 and content_type.startswith("application/json")
    assert (document["interaction_id"], document["tenant_id"], document["status"]) == (
        "doc-2ch",
        "default",
        "ended",
    )
    assert document["format"] == {"encoding": "linear16", "sample_rate": 8000, "channels": 2}
    assert document["channels"] == [{"channel": 0, "role": "customer"}, {"channel": 1, "role": "agent"}]
    assert document["providers"] == ["mock"] and document["end_reason"] == "end"
    started = next(e for e in streamed if e["type"] == "session_started")
    assert document["started_at"].startswith("20") and document["last_seq"] == streamed[-1]["seq"]
    assert isinstance(started["timestamp_ms"], int)
    assert [
        (u["seq"], u["channel"], u["role"], u["start"], u["end"], u["text"], u["confidence"], u["words"])
        for u in document["utterances"]
    ] == [
        (
            e["seq"],
            e["channel"],
            roles[int(str(e["channel"]))],
            e["start"],
            e["end"],
            e["text"],
            e["confidence"],
            e["words"],
        )
        for e in finals
    ]

    status, content_type, vtt = answers["vtt"]
    assert status == 200 and content_type.startswith("text/vtt")
    cues = vtt.rstrip("\n").split("\n\n")
    assert cues[0] == "WEBVTT"
    assert cues[1:] == [
        f"{n}\n{clock(e['start'], '.')} --> {clock(e['end'], '.')}\n<v {role(e)}>{e['text']}"
        for n, e in enumerate(finals, 1)
    ]

    status, _, srt = answers["srt"]
    assert status == 200
    assert srt.rstrip("\n").split("\n\n") == [
        f"{n}\n{clock(e['start'], ',')} --> {clock(e['end'], ',')}\n{role(e)}: {e['text']}"
        for n, e in enumerate(finals, 1)
    ]

    status, content_type, txt = answers["txt"]
    assert status == 200 and content_type.startswith("text/plain")
    assert txt.splitlines() == [
        f"[{clock(e['start'], '.')[:8]}] {roles[int(str(e['channel']))]}: {e['text']}" for e in finals
    ]


async def test_unknown_calls_bad_formats_and_other_tenants_calls(http: aiohttp.ClientSession) -> None:
    keys = ApiKeys.parse("key-a-0001:tenant-a:stream+watch,key-b-0002:tenant-b:watch")
    async with running_worker(api_keys=keys) as worker:
        ws = await http.ws_connect(
            f"ws://127.0.0.1:{worker.port}/v1/audio/mine?encoding=linear16&sample_rate=8000",
            headers={"Authorization": "Bearer key-a-0001"},
        )
        await ws.send_bytes(speechlike(1.2))
        await ws.send_str('{"type": "end"}')
        async for _ in ws:
            pass
        mine = await get(http, worker, "/v1/calls/mine/transcript?format=txt", "key-a-0001")
        assert mine[0] == 200 and mine[2].count("mixed:") >= 1  # a one-channel call's role
        assert (await get(http, worker, "/v1/calls/mine/transcript", "key-b-0002"))[0] == 404
        assert (await get(http, worker, "/v1/calls/nobody/transcript", "key-a-0001"))[0] == 404
        status, _, text = await get(http, worker, "/v1/calls/mine/transcript?format=pdf", "key-a-0001")
        assert status == 400 and "format must be one of json, vtt, srt, txt" in text
        assert (await get(http, worker, "/v1/calls/mine/transcript"))[0] == 401
