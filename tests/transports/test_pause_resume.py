"""PCI pause and resume over real sockets: `POST /v1/calls/{id}/pause|resume` on a call fed by
the ingest socket and by Twilio, the ingest socket's own `pause`, and AudioHook's (Genesys told
to pause too). The mock provider records every byte it is sent: none of the paused span
reaches it, the connection is held by keep-alives, and the call goes on after."""

from __future__ import annotations

import json

import aiohttp

from asr_worker.audiohook.signature import ApiKeys as HookKeys
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.ids import CallKey
from asr_worker.providers.mock import MockProvider
from asr_worker.tenancy import ApiKeys
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import frames, speechlike
from tests.support.audiohook import connect as hook_connect
from tests.support.client import CallClient
from tests.support.telephony import open_sse, twilio_media, twilio_start, twilio_stop, wait_until, ws_url

OPERATOR_KEY = "acme-operator-key-41c2"
OTHER_KEY = "other-operator-key-77d0"
WATCH_KEY = "acme-watch-key-0b9e"
KEYS = ApiKeys.parse(
    f"{OPERATOR_KEY}:acme:stream+watch+operate,{OTHER_KEY}:other:stream+watch+operate,{WATCH_KEY}:acme:watch"
)
TRACK = AudioFormat(Encoding.MULAW, 8000, 1)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def control(
    http: aiohttp.ClientSession, worker: Worker, call: str, action: str, key: str | None = None
) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{worker.port}/v1/calls/{call}/{action}"
    async with http.post(url, headers=auth(key) if key else {}) as response:
        body: dict[str, object] = await response.json()
        return response.status, body


async def test_an_ingest_call_paused_by_an_operator_sends_the_provider_nothing_of_the_pause(
    http: aiohttp.ClientSession,
) -> None:
    provider = MockProvider()
    async with running_worker(provider, api_keys=KEYS, keepalive_s=0.2) as worker:
        url = ws_url(worker, "/v1/audio/pci-1?encoding=linear16&sample_rate=8000")
        call = CallClient(await http.ws_connect(url, headers=auth(OPERATOR_KEY)))
        await call.next_event("session_started")
        before, during, after = speechlike(1.0, seed=1), speechlike(1.0, seed=2), speechlike(0.6, seed=3)
        await call.send_frames(frames(before))
        await wait_until(lambda: bool(provider.streams) and len(provider.streams[0].received) == len(before))
        stream = provider.streams[0]

        # Only the call's tenant's operators: another tenant's key finds no such call, a watch key
        # may not act.
        assert (await control(http, worker, "pci-1", "pause", OTHER_KEY))[0] == 404
        assert (await control(http, worker, "pci-1", "pause", WATCH_KEY))[0] == 403
        status, body = await control(http, worker, "pci-1", "pause", OPERATOR_KEY)
        assert status == 200 and body == {
            "interaction_id": "pci-1",
            "paused": True,
            "changed": True,
            "at": 1.0,
        }
        assert (await call.next_event("paused"))["at"] == 1.0
        await call.send_frames(frames(during))
        session = worker.manager.get(CallKey("acme", "pci-1"))
        assert session is not None
        await wait_until(lambda: session.status.audio_s >= 2.0)  # the socket read it all before the resume
        await wait_until(lambda: "KeepAlive" in stream.controls)  # the connection is held
        assert "Finalize" in stream.controls  # what was said before the pause came back final
        assert (await control(http, worker, "pci-1", "pause", OPERATOR_KEY))[1]["changed"] is False
        status, body = await control(http, worker, "pci-1", "resume", OPERATOR_KEY)
        assert status == 200 and body["paused"] is False and body["at"] == 2.0
        assert (await call.next_event("resumed"))["at"] == 2.0
        await call.send_frames(frames(after))
        await call.end()
        events = await call.collect()

        assert bytes(stream.received) == before + after, "not one byte of the paused second"
        assert provider.opens == 1
        later = [e for e in events if e["type"] == "transcript" and float(str(e["start"])) >= 2.0]
        assert later, "the call went on, in call time"
        assert events[-1]["type"] == "session_ended" and events[-1]["audio_s"] == 2.6
        assert (await control(http, worker, "pci-1", "resume", OPERATOR_KEY))[0] == 404  # it ended
        async with http.get(
            f"http://127.0.0.1:{worker.port}/metrics", headers=auth(OPERATOR_KEY)
        ) as response:
            metrics = await response.text()
        assert "asr_audio_paused_seconds_total 1.0" in metrics
        assert 'asr_call_controls_total{action="pause",changed="true"} 1.0' in metrics


async def test_the_ingest_socket_pauses_its_own_call(worker: Worker, http: aiohttp.ClientSession) -> None:
    provider = worker.provider
    assert isinstance(provider, MockProvider)
    url = ws_url(worker, "/v1/audio/pci-2?encoding=linear16&sample_rate=8000")
    call = CallClient(await http.ws_connect(url))
    await call.next_event("session_started")
    before, during, after = speechlike(0.4, seed=4), speechlike(0.4, seed=5), speechlike(0.4, seed=6)
    await call.send_frames(frames(before))
    await call.ws.send_str(json.dumps({"type": "pause"}))
    await call.next_event("paused")
    await call.send_frames(frames(during))
    await call.ws.send_str(json.dumps({"type": "resume"}))
    await call.next_event("resumed")
    await call.send_frames(frames(after))
    await call.end()
    await call.collect()
    assert bytes(provider.streams_for("pci-2")[0].received) == before + after


async def test_a_twilio_call_paused_by_an_operator_sends_the_provider_nothing_of_the_pause(
    worker: Worker, http: aiohttp.ClientSession, mock_provider: MockProvider
) -> None:
    watcher = await open_sse(http, worker, "/v1/calls/twilio-pci/events")
    ws = await http.ws_connect(ws_url(worker, "/v1/twilio"))
    await ws.send_str(twilio_start(interaction_id="twilio-pci", tracks=("inbound",)))
    parts = [speechlike(0.6, TRACK, seed=s) for s in (7, 8, 9)]
    chunk = 0

    async def play(audio: bytes) -> None:
        nonlocal chunk
        for piece in frames(audio, TRACK):
            chunk += 1
            await ws.send_str(twilio_media("inbound", chunk, 20 * (chunk - 1), piece))

    await play(parts[0])
    await wait_until(lambda: bool(mock_provider.streams_for("twilio-pci")))
    stream = mock_provider.streams_for("twilio-pci")[0]
    await wait_until(lambda: len(stream.received) == len(parts[0]))
    assert (await control(http, worker, "twilio-pci", "pause"))[0] == 200
    await watcher.until("paused")
    await play(parts[1])  # Twilio keeps streaming: the worker holds it back
    session = worker.manager.get(CallKey("default", "twilio-pci"))
    assert session is not None
    await wait_until(lambda: session.status.audio_s >= 1.2)  # the socket read it all before the resume
    assert (await control(http, worker, "twilio-pci", "resume"))[0] == 200
    await watcher.until("resumed")
    await play(parts[2])
    await ws.send_str(twilio_stop())
    await watcher.rest()
    assert bytes(stream.received) == parts[0] + parts[2]
    (paused,), (resumed,) = watcher.of("paused"), watcher.of("resumed")
    assert paused["at"] == 0.6 and resumed["at"] == 1.2
    assert watcher.of("session_ended")[0]["audio_s"] == 1.8


async def test_an_operator_pause_asks_genesys_to_pause_and_its_paused_is_the_same_pause(
    http: aiohttp.ClientSession,
) -> None:
    provider = MockProvider()
    async with running_worker(provider, audiohook_api_keys=HookKeys.parse("hook-key")) as worker:
        hook = await hook_connect(http, worker, "hook-key")
        await hook.open(customConfig={"interaction_id": "hook-pci"})
        watcher = await open_sse(http, worker, "/v1/calls/hook-pci/events")
        stereo = AudioFormat(Encoding.MULAW, 8000, 2)
        await hook.audio(speechlike(0.5, stereo, seed=10))
        assert (await control(http, worker, "hook-pci", "pause"))[0] == 200
        await hook.expect("pause")  # Genesys is asked to stop sending the audio
        await hook.send("paused", {})
        await hook.audio(speechlike(0.3, stereo, seed=11))  # in flight before it stopped: dropped
        assert (await control(http, worker, "hook-pci", "resume"))[0] == 200
        await hook.expect("resume")
        await hook.send("resumed", {"start": "PT0.8S", "discarded": "PT0S"})
        await hook.audio(speechlike(0.5, stereo, seed=12))
        await hook.close()
        await watcher.rest()
        assert len(watcher.of("paused")) == 1 and len(watcher.of("resumed")) == 1
        assert [m["type"] for m in hook.received].count("pause") == 1
        stream = provider.streams_for("hook-pci")[0]
        assert bytes(stream.received) == speechlike(0.5, stereo, seed=10) + speechlike(0.5, stereo, seed=12)
