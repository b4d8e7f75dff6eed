"""People's speech through every media-fork route, into the real engine: the same recording
(`phrases` of tests/support/human_speech.py, a person saying two short things) played over each
route in its platform's messages comes back with the word error rate the ingest socket gets for
the same audio bytes, within 2 points; where the platform sends the call's two legs apart, each
leg's words come back on its own channel (the first phrase on the caller's leg, the second on
the callee's). The audio goes as fast as the sockets take it: the engine cuts and decodes the
same utterances whatever the pace (finals latency is `bench.local`'s to measure)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from asr_worker.config import Settings, make_provider
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.core.codecs import encode_g711
from asr_worker.transports.forks import (
    asterisk_messages,
    audiosocket_messages,
    plivo_messages,
    signalwire_messages,
    telnyx_messages,
    vonage_messages,
)
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.human_speech import (
    PHRASES,
    POCKETSPHINX,
    POCKETSPHINX_SDIST,
    Recording,
    cache_root,
    fetch_sdist,
    join,
    word_errors,
)
from tests.support.telephony import open_sse, ws_url

pytestmark = [pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

MAX_DIFFERENCE = 0.02  # WER points between a route and the ingest socket on the same audio
FRAME_S = 0.02


@dataclass(frozen=True)
class Variant:
    """The audio a route carries: its format per leg, and whether the legs come apart."""

    encoding: Encoding
    rate: int
    legs: int  # 1: the whole recording on one channel; 2: one phrase on each leg

    @property
    def leg_fmt(self) -> AudioFormat:
        return AudioFormat(self.encoding, self.rate, 1)


@dataclass(frozen=True)
class Played:
    variant: Variant
    legs: tuple[bytes, ...]  # each leg's audio, encoded
    references: tuple[str, ...]  # what each leg says

    def interleaved(self) -> bytes:
        """The legs as one stream, channel 0 first (a two-channel ingest socket's, a stereo fork's)."""
        if len(self.legs) == 1:
            return self.legs[0]
        width = self.variant.leg_fmt.bytes_per_sample
        left = np.frombuffer(self.legs[0], dtype=f"<i{width}" if width == 2 else "u1")
        right = np.frombuffer(self.legs[1], dtype=left.dtype)
        return np.stack([left, right], axis=1).tobytes()


Finals = dict[int, list[str]]  # channel -> final texts


@pytest.fixture(scope="module")
def recording() -> Recording:
    root = cache_root()
    fetch_sdist(root, POCKETSPHINX, POCKETSPHINX_SDIST, PHRASES)
    return join("phrases", "pocketsphinx sdist", root, PHRASES, gap_s=1.0)


def played(recording: Recording, variant: Variant) -> Played:
    samples = recording.at(variant.rate)
    references: tuple[str, ...]
    if variant.legs == 1:
        legs = [samples]
        references = (recording.text,)
    else:  # the first phrase on the caller's leg, the second on the callee's
        first, second = recording.spoken
        cut = round((first.end_s + second.start_s) / 2 * variant.rate)
        caller, callee = samples.copy(), samples.copy()
        caller[cut:] = 0
        callee[:cut] = 0
        legs = [caller, callee]
        references = (first.text, second.text)
    encoded = []
    for leg in legs:
        pcm = np.clip(leg * 32767, -32768, 32767).astype(np.int16)
        encoded.append(
            pcm.astype("<i2").tobytes()
            if variant.encoding is Encoding.LINEAR16
            else encode_g711(pcm, variant.encoding)
        )
    return Played(variant, tuple(encoded), references)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local_worker() -> AsyncIterator[Worker]:
    settings = Settings()
    async with (
        running_worker(
            make_provider(settings), audiosocket_port=0, max_frames_per_s=0, session_grace_s=60
        ) as worker,
        aiohttp.ClientSession() as http,
    ):
        async with asyncio.timeout(120):  # the first run on a machine assembles the model
            while True:
                async with http.get(f"{base_url(worker)}/ready") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
        yield worker


def frames_of(data: bytes, fmt: AudioFormat) -> list[bytes]:
    step = fmt.bytes_for(FRAME_S)
    return [data[i : i + step] for i in range(0, len(data), step)]


def two_tracks(call: Played, fmt: AudioFormat) -> list[tuple[bytes, bytes]]:
    """The two legs' frames side by side, as the two-track platforms send them."""
    return list(zip(frames_of(call.legs[0], fmt), frames_of(call.legs[1], fmt), strict=True))


def finals_of(events: list[dict[str, object]]) -> Finals:
    out: Finals = {}
    for event in events:
        if event.get("type", "transcript") == "transcript" and event.get("is_final") and event.get("text"):
            out.setdefault(int(str(event["channel"])), []).append(str(event["text"]))
    return out


async def watched(
    http: aiohttp.ClientSession, worker: Worker, call: str, play: Callable[[], Awaitable[None]]
) -> Finals:
    """Play a call while watching its events over SSE, as its platform's users watch it."""
    watcher = await open_sse(http, worker, f"/v1/calls/{call}/events")
    await play()
    events = await watcher.rest(timeout_s=120)
    assert [e.data["reason"] for e in events if e.event == "session_ended"] == ["end"], call
    return finals_of([e.data for e in events if e.event == "transcript"])


# --- the baseline: the ingest socket -----------------------------------------------------------


@pytest.fixture(scope="module")
def baselines() -> dict[Variant, Finals]:
    """What the ingest socket heard of each variant, played once a module."""
    return {}


async def ingest(
    http: aiohttp.ClientSession, worker: Worker, call: Played, baselines: dict[Variant, Finals]
) -> Finals:
    variant = call.variant
    if variant in baselines:
        return baselines[variant]
    query = f"encoding={variant.encoding}&sample_rate={variant.rate}&channels={variant.legs}"
    fmt = AudioFormat(variant.encoding, variant.rate, variant.legs)
    events: list[dict[str, object]] = []
    async with http.ws_connect(ws_url(worker, f"/v1/audio/baseline-{uuid.uuid4().hex[:8]}?{query}")) as ws:
        for frame in frames_of(call.interleaved(), fmt):
            await ws.send_bytes(frame)
        await ws.send_str(json.dumps({"type": "end"}))
        async with asyncio.timeout(120):
            async for msg in ws:
                events.append(json.loads(msg.data))
    baselines[variant] = finals_of(events)
    return baselines[variant]


# --- each route, in its platform's messages ---------------------------------------------------

Route = Callable[[aiohttp.ClientSession, Worker, Played], Awaitable[Finals]]


async def freeswitch(http: aiohttp.ClientSession, worker: Worker, call: Played) -> Finals:
    name = f"fs-{uuid.uuid4().hex[:8]}"
    fmt = AudioFormat(Encoding.LINEAR16, call.variant.rate, 2)
    url = ws_url(worker, f"/v1/freeswitch?sample_rate={call.variant.rate}&mix=stereo")

    async def play() -> None:
        async with http.ws_connect(url, protocols=["audio.drachtio.org"]) as ws:
            await ws.send_str(json.dumps({"uuid": name}))
            for frame in frames_of(call.interleaved(), fmt):
                await ws.send_bytes(frame)

    return await watched(http, worker, name, play)


async def jambonz(http: aiohttp.ClientSession, worker: Worker, call: Played) -> Finals:
    name = str(uuid.uuid4())
    fmt = AudioFormat(Encoding.LINEAR16, call.variant.rate, 2)
    metadata = {"callSid": name, "sampleRate": call.variant.rate, "mixType": "stereo", "direction": "inbound"}

    async def play() -> None:
        async with http.ws_connect(ws_url(worker, "/v1/jambonz"), protocols=["audio.jambonz.org"]) as ws:
            await ws.send_str(json.dumps(metadata))
            for frame in frames_of(call.interleaved(), fmt):
                await ws.send_bytes(frame)

    return await watched(http, worker, name, play)


async def jambonz_stt(http: aiohttp.ClientSession, worker: Worker, call: Played) -> Finals:
    start = {
        "type": "start",
        "language": "en-US",
        "format": "raw",
        "encoding": "LINEAR16",
        "interimResults": True,
        "sampleRateHz": call.variant.rate,
        "options": {"callSid": str(uuid.uuid4())},
    }
    out: Finals = {}
    async with http.ws_connect(ws_url(worker, "/v1/jambonz/transcribe")) as ws:
        await ws.send_str(json.dumps(start))
        for frame in frames_of(call.legs[0], call.variant.leg_fmt):
            await ws.send_bytes(frame)
        await ws.send_str(json.dumps({"type": "stop"}))
        async with asyncio.timeout(120):
            async for msg in ws:
                result = json.loads(msg.data)
                assert result["type"] == "transcription", result
                if result["is_final"]:
                    out.setdefault(result["channel"] - 1, []).append(result["alternatives"][0]["transcript"])
    return out


async def vonage(http: aiohttp.ClientSession, worker: Worker, call: Played) -> Finals:
    name = f"vonage-{uuid.uuid4().hex[:8]}"

    async def play() -> None:
        async with http.ws_connect(ws_url(worker, f"/v1/vonage?interaction_id={name}")) as ws:
            await ws.send_str(vonage_messages.connected(call.variant.rate))
            for frame in frames_of(call.legs[0], call.variant.leg_fmt):
                await ws.send_bytes(frame)

    return await watched(http, worker, name, play)


async def telnyx(http: aiohttp.ClientSession, worker: Worker, call: Played) -> Finals:
    name = f"v3:telnyx-{uuid.uuid4().hex[:8]}"
    fmt = call.variant.leg_fmt

    async def play() -> None:
        async with http.ws_connect(ws_url(worker, "/v1/telnyx?track=both_tracks")) as ws:
            await ws.send_str(telnyx_messages.start(call_control_id=name, encoding="PCMU"))
            for i, (a, b) in enumerate(
                zip(frames_of(call.legs[0], fmt), frames_of(call.legs[1], fmt), strict=True)
            ):
                await ws.send_str(telnyx_messages.media("inbound", i + 1, 20 * i, a))
                await ws.send_str(telnyx_messages.media("outbound", i + 1, 20 * i, b))
            await ws.send_str(json.dumps({"event": "stop", "stream_id": "s"}))

    return await watched(http, worker, name, play)


async def plivo(http: aiohttp.ClientSession, worker: Worker, call: Played) -> Finals:
    name = str(uuid.uuid4())
    fmt = call.variant.leg_fmt
    epoch_ms = 1_705_312_200_000

    async def play() -> None:
        async with http.ws_connect(ws_url(worker, "/v1/plivo")) as ws:
            await ws.send_str(plivo_messages.start(call_id=name))
            for i, (a, b) in enumerate(
                zip(frames_of(call.legs[0], fmt), frames_of(call.legs[1], fmt), strict=True)
            ):
                await ws.send_str(plivo_messages.media("inbound", i + 1, epoch_ms + 20 * i, a))
                await ws.send_str(plivo_messages.media("outbound", i + 1, epoch_ms + 20 * i, b))

    return await watched(http, worker, name, play)


async def signalwire(http: aiohttp.ClientSession, worker: Worker, call: Played) -> Finals:
    name = f"sw-{uuid.uuid4().hex[:8]}"
    fmt = call.variant.leg_fmt

    async def play() -> None:
        async with http.ws_connect(ws_url(worker, "/v1/signalwire")) as ws:
            await ws.send_str(
                signalwire_messages.start(
                    encoding="audio/x-L16", sample_rate=call.variant.rate, params={"interaction_id": name}
                )
            )
            for i, (a, b) in enumerate(
                zip(frames_of(call.legs[0], fmt), frames_of(call.legs[1], fmt), strict=True)
            ):
                await ws.send_str(signalwire_messages.media("inbound", i + 1, 20 * i, a))
                await ws.send_str(signalwire_messages.media("outbound", i + 1, 20 * i, b))
            await ws.send_str(json.dumps({"event": "stop", "sequenceNumber": "9999"}))

    return await watched(http, worker, name, play)


async def asterisk(http: aiohttp.ClientSession, worker: Worker, call: Played) -> Finals:
    name = f"ast-{uuid.uuid4().hex[:8]}"

    async def play() -> None:
        url = ws_url(worker, f"/v1/asterisk?interaction_id={name}")
        async with http.ws_connect(url, protocols=["media"]) as ws:
            await ws.send_str(asterisk_messages.media_start("1712345678.1", "slin16"))
            for frame in frames_of(call.legs[0], call.variant.leg_fmt):
                await ws.send_bytes(frame)

    return await watched(http, worker, name, play)


async def audiosocket(http: aiohttp.ClientSession, worker: Worker, call: Played) -> Finals:
    name = str(uuid.uuid4())
    assert worker.audiosocket.port is not None

    async def play() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", worker.audiosocket.port)
        writer.write(audiosocket_messages.call_id(name))
        for frame in frames_of(call.legs[0], call.variant.leg_fmt):
            writer.write(audiosocket_messages.audio(frame))
        writer.write(audiosocket_messages.hangup())
        await writer.drain()
        await asyncio.wait_for(reader.read(), 120)
        writer.close()
        await writer.wait_closed()

    return await watched(http, worker, name, play)


ROUTES: dict[str, tuple[Route, Variant]] = {
    "freeswitch": (freeswitch, Variant(Encoding.LINEAR16, 16000, 2)),
    "jambonz": (jambonz, Variant(Encoding.LINEAR16, 8000, 2)),
    "jambonz_stt": (jambonz_stt, Variant(Encoding.LINEAR16, 8000, 1)),
    "vonage": (vonage, Variant(Encoding.LINEAR16, 16000, 1)),
    "telnyx": (telnyx, Variant(Encoding.MULAW, 8000, 2)),
    "plivo": (plivo, Variant(Encoding.MULAW, 8000, 2)),
    "signalwire": (signalwire, Variant(Encoding.LINEAR16, 16000, 2)),
    "asterisk": (asterisk, Variant(Encoding.LINEAR16, 16000, 1)),
    "audiosocket": (audiosocket, Variant(Encoding.LINEAR16, 8000, 1)),
}


def wer(call: Played, finals: Finals) -> tuple[float, list[str]]:
    errors = words = 0
    lines = []
    for channel, reference in enumerate(call.references):
        heard = " ".join(finals.get(channel, []))
        e, n = word_errors(reference, heard)
        errors, words = errors + e, words + n
        lines.append(f"ch{channel}: {e}/{n} wrong: {heard!r}")
    return errors / words, lines


@pytest.mark.parametrize("route", list(ROUTES))
async def test_peoples_speech_through_the_route_is_heard_as_well_as_over_the_ingest_socket(
    local_worker: Worker, recording: Recording, baselines: dict[Variant, Finals], route: str
) -> None:
    play, variant = ROUTES[route]
    call = played(recording, variant)
    async with aiohttp.ClientSession() as http:
        baseline = await ingest(http, local_worker, call, baselines)
        heard = await play(http, local_worker, call)
    route_wer, route_lines = wer(call, heard)
    base_wer, base_lines = wer(call, baseline)
    report = (
        f"{route}: WER {route_wer:.1%} ({'; '.join(route_lines)}) | "
        f"ingest {base_wer:.1%} ({'; '.join(base_lines)})"
    )
    print(report)
    assert abs(route_wer - base_wer) <= MAX_DIFFERENCE, report
    assert set(heard) <= set(range(variant.legs)), report  # nothing on a channel the call lacks
    if variant.legs == 2:  # the legs apart: each channel hears its own leg's phrase, not the other's
        for channel, reference in enumerate(call.references):
            e, n = word_errors(reference, " ".join(heard.get(channel, [])))
            assert e / n <= 0.5, report
