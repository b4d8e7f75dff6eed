"""The benchmark's callers: N concurrent real-time calls of stamped 8 kHz linear16 audio in
20 ms frames, in a process of their own.

* `--mode worker`: each call is an ingest WebSocket into the worker (`/v1/audio/{id}`),
  ended with `{"type": "end"}`; the driver waits for every `session_ended`.
* `--mode sdk`: each call is the official `deepgram-sdk` live client used directly against
  the sink, one client per call as its documentation shows (`listen.v1.connect`, an
  `EventType.MESSAGE` handler, `start_listening`, `send_media`, then Finalize/CloseStream).
* `--mode realtime`: each call is an OpenAI Realtime transcription session on the worker's
  `/v1/realtime?intent=transcription` (GA `session.update`, `audio/pcm` 24 kHz, server VAD),
  its frames sent as base64 `input_audio_buffer.append` events; closing the socket ends it.
  With `--rate 24000` (the Realtime format) a frame is 20 ms of 24 kHz audio, 960 bytes,
  stamped in its first 320; `--mode worker --rate 24000` sends the same bytes over the ingest
  socket, so the two compare the transports alone.
* `--mode redis`: each call is a producer on the Redis Streams bus (`--url redis://...`): it
  announces the call on `asr:calls`, writes every frame to `asr:audio:{ID}` as the seed
  system's frame entry (JSON with base64 audio, one XADD per entry; `--entry-ms 100` puts five
  frames in one entry), and ends it with the end entry; the driver waits for every call's
  `session_ended` on `transcript.{ID}`. The frames a tick sends go in one pipeline, as a
  producer serving many calls would write them.
* `--mode pace`: the same pacing and stamping with no socket at all: the cost every mode pays
  that is not the client's.
* `--mode churn` (the fault drill's callers): `--calls` lanes, each playing calls into the worker
  one after another, each call `--call-seconds LO-HI` long (drawn per call) of speech-like audio
  (`common.call_audio`), ended with `{"type": "end"}`; the lanes start spread over 5 s. On
  SIGUSR1 (or after `--seconds`) no lane starts another call; calls already live go on sending
  until the worker closes them (a worker that drains at SIGTERM) or their audio ends. Saves
  each call's frame send times, final words (and each final's provider, times and text),
  `session_ended` and errors to `--out`. `--speech`: the calls say utterances of people and
  of a synthetic voice instead (`bench/drill_speech.py`), for a real engine to hear.

One ticker sends each call's frame every 20 ms; calls are spread over 10 slots so their
frames do not all leave in the same instant. Send times are saved to `--out` (.npz).

    python -m bench.drive --mode worker --url ws://127.0.0.1:3001 --calls 500 --seconds 30 --out d.npz
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Final

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from asr_worker.bus.redis.wire import call_tag

from . import drill_speech
from .common import FRAME_MS, QUERY, call_frame, frame_pool, proc_sample, speech_plan, stamped

TENANT = "bench"

SLOTS: Final = 10
_APPEND_HEAD: Final = '{"type":"input_audio_buffer.append","audio":"'
SDK_OPTIONS: Final[dict[str, object]] = {
    "model": "nova-3",
    "language": "en-US",
    "encoding": "linear16",
    "sample_rate": 8000,
    "channels": 1,
    "interim_results": "true",
    "punctuate": "true",
    "smart_format": "false",
    "endpointing": 300,
    "utterance_end_ms": 1000,
    "vad_events": "true",
}

Send = Callable[[bytes], Awaitable[None]]


KEY = ""  # --key


class Calls:
    """The calls of one run: how to send a frame to each, and how to end them all."""

    def __init__(self, mode: str, url: str, calls: int, rate: int = 8000) -> None:
        self.mode, self.url, self.count, self.rate = mode, url, calls, rate
        self.bus: RedisProducer | None = None
        self.senders: list[Send] = []
        self.ended = 0
        self.results = 0
        self._done = asyncio.Event()
        self._enders: dict[int, Callable[[], Coroutine[object, object, None]]] = {}
        self._tasks: list[asyncio.Task[object]] = []

    async def open(self, stack: AsyncExitStack, tg: asyncio.TaskGroup) -> None:
        """Connect the calls 25 at a time, in order (a call's index is its place in `senders`)."""
        for first in range(0, self.count, 25):
            batch = range(first, min(first + 25, self.count))
            if self.mode == "worker":
                opened = await asyncio.gather(*(self._open_ingest(i, stack, tg) for i in batch))
            elif self.mode == "realtime":
                opened = await asyncio.gather(*(self._open_realtime(i, stack, tg) for i in batch))
            elif self.mode == "sdk":
                opened = await asyncio.gather(*(self._open_sdk(i, stack, tg) for i in batch))
            elif self.mode == "redis":
                assert self.bus is not None
                opened = [await self.bus.announce(i) for i in batch]
            else:
                opened = [_discard for _ in batch]
            self.senders.extend(opened)
            await asyncio.sleep(0.05)

    async def _open_ingest(self, i: int, stack: AsyncExitStack, tg: asyncio.TaskGroup) -> Send:
        query = QUERY.replace("sample_rate=8000", f"sample_rate={self.rate}")
        # With --key, each call presents a tenant's key, as a real client does.
        headers = {"Authorization": f"Bearer {KEY}"} if KEY else None
        ws = await stack.enter_async_context(
            connect(
                f"{self.url}/v1/audio/bench-{i}?{query}",
                compression=None,
                max_size=1 << 22,
                additional_headers=headers,
            )
        )

        async def end() -> None:
            await ws.send(json.dumps({"type": "end"}))

        self._enders[i] = end
        self._tasks.append(tg.create_task(self._read_events(ws)))
        return ws.send

    async def _open_realtime(self, i: int, stack: AsyncExitStack, tg: asyncio.TaskGroup) -> Send:
        url = f"{self.url}/v1/realtime?intent=transcription&interaction_id=bench-{i}"
        ws = await stack.enter_async_context(connect(url, compression=None, max_size=1 << 22))
        session = {
            "type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}},  # server VAD: the default
        }
        await ws.send(json.dumps({"type": "session.update", "session": session}))

        async def end() -> None:
            await ws.close()
            self._call_ended()

        async def send(frame: bytes) -> None:
            await ws.send(_APPEND_HEAD + base64.b64encode(frame).decode() + '"}')

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _message in ws:
                    self.results += 1

        self._enders[i] = end
        self._tasks.append(tg.create_task(read()))
        return send

    async def _read_events(self, ws: ClientConnection) -> None:
        async for message in ws:
            if isinstance(message, str):
                self.results += 1
                if '"session_ended"' in message:
                    self._call_ended()
                    return

    async def _open_sdk(self, i: int, stack: AsyncExitStack, tg: asyncio.TaskGroup) -> Send:
        from deepgram import AsyncDeepgramClient
        from deepgram.core.events import EventType
        from deepgram.environment import DeepgramClientEnvironment

        base = self.url.replace("ws://", "http://")
        client = AsyncDeepgramClient(
            api_key="bench-key",
            environment=DeepgramClientEnvironment(
                base=base, production=self.url, agent=self.url, agent_rest=base
            ),
        )
        connection = await stack.enter_async_context(client.listen.v1.connect(**SDK_OPTIONS))

        def on_message(message: object) -> None:
            self.results += 1

        connection.on(EventType.MESSAGE, on_message)
        connection.on(EventType.CLOSE, lambda _: self._call_ended())
        self._tasks.append(tg.create_task(connection.start_listening()))

        async def end() -> None:
            await connection.send_finalize()
            await connection.send_close_stream()

        self._enders[i] = end
        send: Send = connection.send_media
        return send

    def _call_ended(self) -> None:
        self.ended += 1
        if self.ended >= self.count:
            self._done.set()

    def end(self, c: int, tg: asyncio.TaskGroup) -> None:
        """A call that has sent all its audio ends at once, as a real one would."""
        if self.bus is not None:
            self.bus.end(c)
        elif self._enders:
            self._tasks.append(tg.create_task(self._enders[c]()))

    async def wait_ended(self, timeout_s: float) -> None:
        if self.bus is not None:
            await self.bus.flush()
            self.ended, self.results = await self.bus.wait_ended(self.count, timeout_s)
            if self.ended < self.count:
                print(
                    f"warning: only {self.ended} of {self.count} calls ended in {timeout_s:g} s", flush=True
                )
            return
        if self._enders:
            try:
                await asyncio.wait_for(self._done.wait(), timeout_s)
            except TimeoutError:
                print(
                    f"warning: only {self.ended} of {self.count} calls ended in {timeout_s:g} s", flush=True
                )
        for task in self._tasks:
            task.cancel()


async def _discard(_frame: bytes) -> None:
    return None


class RedisProducer:
    """The calls' producer on the Redis Streams bus: frames in the seed system's entry shape,
    `entry_frames` frames to an entry, each tick's entries written in one pipeline."""

    def __init__(self, url: str, entry_frames: int, *, cluster: bool = False) -> None:
        self.client: aioredis.Redis | RedisCluster = (
            RedisCluster.from_url(url) if cluster else aioredis.Redis.from_url(url)
        )
        self.cluster = cluster
        self.entry_frames = entry_frames
        self._pending: dict[int, list[bytes]] = {}
        self._seq: dict[int, int] = {}
        self._writes: list[tuple[str, bytes]] = []

    @staticmethod
    def call_id(c: int) -> str:
        return f"bench-{c}"

    def tagged(self, c: int) -> str:
        """The call as its keys carry it: its tenant and id (`wire.call_tag`), in braces (a hash
        tag) on a cluster."""
        tag = call_tag(TENANT, self.call_id(c))
        return f"{{{tag}}}" if self.cluster else tag

    async def announce(self, c: int) -> Send:
        body = {
            "interaction_id": self.call_id(c),
            "tenant_id": TENANT,
            "encoding": "linear16",
            "sample_rate": 8000,
            "channels": 1,
        }
        await self.client.xadd("asr:calls", {"data": json.dumps(body)})

        async def send(frame: bytes) -> None:
            self._pending.setdefault(c, []).append(frame)
            if len(self._pending[c]) >= self.entry_frames:
                self._entry(c)

        return send

    def _entry(self, c: int) -> None:
        frames = self._pending.pop(c, [])
        if not frames:
            return
        seq = self._seq.get(c, 0)
        self._seq[c] = seq + 1
        body = {
            "interaction_id": self.call_id(c),
            "tenant_id": TENANT,
            "seq": seq,
            "timestamp_ms": time.time_ns() // 1_000_000,
            "sample_rate": 8000,
            "encoding": "linear16",
            "audio": base64.b64encode(b"".join(frames)).decode("ascii"),
        }
        self._writes.append((f"asr:audio:{self.tagged(c)}", json.dumps(body).encode()))

    def end(self, c: int) -> None:
        self._entry(c)
        end = {"interaction_id": self.call_id(c), "seq": self._seq.get(c, 0), "end": True}
        self._writes.append((f"asr:audio:{self.tagged(c)}", json.dumps(end).encode()))

    async def flush(self) -> None:
        """Write what this tick produced: one round trip for all of it."""
        if not self._writes:
            return
        writes, self._writes = self._writes, []
        pipe = self.client.pipeline(transaction=False)
        for key, data in writes:
            pipe.xadd(key, {"data": data})
        await pipe.execute()

    async def wait_ended(self, calls: int, timeout_s: float) -> tuple[int, int]:
        """(calls whose transcript holds `session_ended`, events written in all)."""
        deadline = time.monotonic() + timeout_s
        ended: set[int] = set()
        while len(ended) < calls and time.monotonic() < deadline:
            for c in range(calls):
                if c not in ended:
                    last = await self.client.xrevrange(f"transcript.{self.tagged(c)}", count=1)
                    fields = last[0][1] if last else None
                    if fields and b"session_ended" in fields.get(b"data", b""):
                        ended.add(c)
            if len(ended) < calls:
                await asyncio.sleep(0.5)
        results = 0
        for c in range(calls):
            results += int(await self.client.xlen(f"transcript.{self.tagged(c)}"))
        await self.client.aclose()
        return len(ended), results


async def run(
    mode: str,
    url: str,
    calls: int,
    seconds: float,
    out: str,
    rate: int = 8000,
    entry_ms: int = FRAME_MS,
    cluster: bool = False,
) -> None:
    """Each call starts sending the moment it is connected (a phone call does not wait for
    the others), and sends `seconds` of audio; the steady window starts once all are in."""
    pool = frame_pool()
    widen = rate // 8000  # a frame at `rate`: the stamped 8 kHz frame, then more of the pool
    frames = round(seconds * 1000 / FRAME_MS)
    sent_at = np.full((calls, frames), np.nan)
    next_frame = [0] * calls
    if mode == "sdk":
        import deepgram.listen.v1.socket_client  # noqa: F401  (its import is not a per-call cost)
    rss_start = proc_sample(os.getpid(), time.monotonic()).rss_bytes
    cpu_before = time.process_time()
    async with AsyncExitStack() as stack, asyncio.TaskGroup() as tg:
        group = Calls(mode, url, calls, rate)
        if mode == "redis":
            group.bus = RedisProducer(url, max(1, entry_ms // FRAME_MS), cluster=cluster)
        opening = tg.create_task(group.open(stack, tg))
        loop = asyncio.get_running_loop()
        start = loop.time()
        slot_s = FRAME_MS / 1000 / SLOTS
        senders = group.senders
        all_in_mono = 0.0
        tick = 0
        while True:
            slot = tick % SLOTS
            await asyncio.sleep(max(0.0, start + tick * slot_s - loop.time()))
            tick += 1
            if not all_in_mono and len(senders) == calls:
                all_in_mono = time.monotonic()
            busy = False
            for c in range(slot, len(senders), SLOTS):
                n = next_frame[c]
                if n >= frames:
                    continue
                busy = True
                frame = stamped(pool[(n + c) % len(pool)], c, n)
                if widen > 1:
                    frame += b"".join(pool[(n + c + k) % len(pool)] for k in range(1, widen))
                sent_at[c, n] = time.monotonic()
                await senders[c](frame)
                next_frame[c] = n + 1
                if n + 1 == frames:
                    group.end(c, tg)
            if group.bus is not None:
                await group.bus.flush()
            if not busy and opening.done() and slot == SLOTS - 1 and all(n >= frames for n in next_frame):
                break
        ended_mono = time.monotonic()
        cpu_audio = time.process_time()
        await group.wait_ended(timeout_s=30)
        results = group.results
        ended_calls = group.ended
    # The steady window: all calls in, until the first call has sent its last frame.
    last_frames = np.nanmin(sent_at[:, -1]) if calls else ended_mono
    np.savez(
        out,
        sent_at=sent_at,
        window=np.array([all_in_mono, float(last_frames)]),
        cpu=np.array([cpu_before, cpu_audio]),
        counts=np.array([results, ended_calls]),
        rss_start=np.array([rss_start]),
    )
    print(json.dumps({"results": results, "ended": ended_calls}), flush=True)


class ChurnCall:
    """One call of the churn: its audio, when each frame left, and what came back."""

    def __init__(self, index: int, frames: int, speech: bool = False) -> None:
        self.index, self.frames, self.speech = index, frames, speech
        self.sent_at = np.full(frames, np.nan)
        self.sent = 0
        self.words: list[str] = []
        self.finals: list[tuple[float, float]] = []  # (end in call seconds, arrival, monotonic)
        # (provider, start, end, text, [(word's middle in call seconds, word)])
        self.final_texts: list[tuple[str, float, float, str, list[tuple[float, str]]]] = []
        self.ended: dict[str, object] | None = None
        self.ended_at = float("nan")  # when session_ended arrived (monotonic)
        self.errors: dict[str, int] = {}
        self.started_on = ""  # session_started's provider
        self.changed: dict[str, object] | None = None  # provider_changed, if the call moved
        self.changed_at = float("nan")  # when provider_changed arrived (monotonic)
        self.fallback_final_at = float("nan")  # the first final after the move arrived (monotonic)
        self.close_code: int | None = None
        self.refused = ""
        self.started = time.monotonic()

    async def run(self, url: str, pool: list[bytes]) -> None:
        plan = speech_plan(self.index, self.frames)
        address = f"{url}/v1/audio/drill-{self.index}?{QUERY}"
        try:
            async with (
                connect(address, compression=None, open_timeout=10) as ws,
                asyncio.TaskGroup() as tg,
            ):
                reader = tg.create_task(self._read(ws))
                loop = asyncio.get_running_loop()
                start = loop.time()
                for n in range(self.frames):
                    await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - loop.time()))
                    if reader.done():
                        break  # the worker ended the call (it is draining)
                    self.sent_at[n] = time.monotonic()
                    try:
                        if self.speech:
                            await ws.send(drill_speech.frame(self.index, self.frames, n))
                        else:
                            await ws.send(call_frame(pool, plan, self.index, n))
                    except ConnectionClosed:
                        self.sent_at[n] = np.nan
                        break
                    self.sent = n + 1
                else:
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(json.dumps({"type": "end"}))
                try:
                    await asyncio.wait_for(asyncio.shield(reader), 60)
                except TimeoutError:
                    self.refused = "no_close"  # the worker never closed the call: counted, not hidden
                    reader.cancel()
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self.refused = self.refused or type(exc).__name__

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                if not isinstance(message, str):
                    continue
                event = json.loads(message)
                kind = event.get("type")
                if kind == "transcript" and event.get("is_final"):
                    self.words.extend(str(event.get("text", "")).split())
                    self.finals.append((float(event["end"]), time.monotonic()))
                    self.final_texts.append(
                        (
                            str(event.get("provider")),
                            float(event["start"]),
                            float(event["end"]),
                            str(event.get("text", "")),
                            [
                                ((float(w["start"]) + float(w["end"])) / 2, str(w["word"]))
                                for w in event.get("words", ())
                            ],
                        )
                    )
                    if self.changed is not None and np.isnan(self.fallback_final_at):
                        self.fallback_final_at = self.finals[-1][1]
                elif kind == "session_started":
                    self.started_on = str(event.get("provider"))
                elif kind == "provider_changed":
                    self.changed, self.changed_at = event, time.monotonic()
                elif kind == "session_ended":
                    self.ended, self.ended_at = event, time.monotonic()
                elif kind == "error":
                    code = str(event.get("code"))
                    self.errors[code] = self.errors.get(code, 0) + 1
        self.close_code = ws.close_code

    def summary(self) -> dict[str, object]:
        return {
            "index": self.index,
            "frames": self.frames,
            "sent": self.sent,
            "words": self.words,
            "finals": self.finals,
            "final_texts": self.final_texts,
            "ended": self.ended,
            "ended_at": self.ended_at,
            "errors": self.errors,
            "started_on": self.started_on,
            "changed": self.changed,
            "changed_at": self.changed_at,
            "fallback_final_at": self.fallback_final_at,
            "close_code": self.close_code,
            "refused": self.refused,
            "started": self.started,
        }


async def churn(
    url: str, lanes: int, call_s: tuple[float, float], max_s: float, out: str, speech: bool = False
) -> None:
    """`lanes` calls live at a time, each replaced when it ends, until SIGUSR1 or `max_s`;
    `speech`: each call says utterances of people and a voice (`drill_speech`), not noise."""
    pool = frame_pool()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, stop.set)
    loop.call_later(max_s, stop.set)
    numbers = itertools.count()
    calls: list[ChurnCall] = []

    async def lane(i: int) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), i * 5.0 / max(lanes, 1))  # spread the first calls
        while not stop.is_set():
            index = next(numbers)
            seconds = random.Random(index).uniform(*call_s)
            call = ChurnCall(index, round(seconds * 1000 / FRAME_MS), speech)
            if speech:  # made before the call starts, so no frame waits for it
                await asyncio.to_thread(drill_speech.script, index, call.frames)
            calls.append(call)
            await call.run(url, pool)
            if call.refused and not stop.is_set():
                await asyncio.sleep(1.0)  # refused (at capacity?): do not spin

    async with asyncio.TaskGroup() as tg:
        for i in range(lanes):
            tg.create_task(lane(i))
    offsets = np.cumsum([0] + [c.frames for c in calls])
    np.savez(
        out,
        sent_at=np.concatenate([c.sent_at for c in calls]) if calls else np.zeros(0),
        offsets=offsets,
        calls=np.array([json.dumps([c.summary() for c in calls])]),
    )
    print(json.dumps({"calls": len(calls), "ended": sum(1 for c in calls if c.ended)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mode", choices=("worker", "realtime", "sdk", "redis", "pace", "churn"), required=True
    )
    parser.add_argument(
        "--rate", type=int, choices=(8000, 24000), default=8000, help="worker/realtime audio rate"
    )
    parser.add_argument("--url", default="")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--call-seconds", default="20-60", help="churn: each call's length, LO-HI seconds")
    parser.add_argument(
        "--speech", action="store_true", help="churn: calls of speech (drill_speech), not noise"
    )
    parser.add_argument("--entry-ms", type=int, default=FRAME_MS, help="redis: audio per entry (ms)")
    parser.add_argument("--cluster", action="store_true", help="redis: --url names a node of a Redis Cluster")
    parser.add_argument("--out", required=True)
    parser.add_argument("--key", default="", help="worker: the key each ingest call presents")
    args = parser.parse_args()
    global KEY  # noqa: PLW0603 - the process's one setting, read where each call connects
    KEY = args.key
    if args.mode == "churn":
        lo, _, hi = args.call_seconds.partition("-")
        call_s = (float(lo), float(hi or lo))
        main_coro = churn(args.url.rstrip("/"), args.calls, call_s, args.seconds, args.out, args.speech)
    else:
        main_coro = run(
            args.mode,
            args.url.rstrip("/"),
            args.calls,
            args.seconds,
            args.out,
            args.rate,
            args.entry_ms,
            args.cluster,
        )
    if args.mode in ("worker", "realtime", "churn", "redis"):
        # The worker's callers are harness, not under test: keep them cheap so they leave the
        # worker its core. The SDK runs as its documentation shows, on asyncio's own loop, and
        # `pace` measures that loop's pacing cost.
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main_coro)
    else:
        asyncio.run(main_coro)


if __name__ == "__main__":
    main()
