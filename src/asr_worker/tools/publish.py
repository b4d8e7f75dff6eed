"""`asr-worker publish FILE --interaction-id ID`: put a file on the Redis bus as a live call.

It announces the call on `asr:calls` (with its keyterms, `--keyterm`, if any), writes 20 ms
frames (the seed system's audio frame JSON) to `asr:audio:{ID}` at real time (`--speed`), then
the end entry; with `--follow` it prints the call's events from `transcript.{ID}` until
`session_ended`, one line each as `stream` prints them (`tools/printer.py`).

Like a telephony producer, it rides out a Redis restart: frames due while Redis is away are
kept and written, in order, when it answers again. Frames carry explicit stream ids
(`{start ms}-{n}`), so a write retried after an ambiguous failure is recognised and never
duplicated.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TextIO, TypeVar

from redis.exceptions import ResponseError

from ..bus.redis.wire import (
    CALLS_KEY,
    REDIS_ERRORS,
    RedisClient,
    audio_key,
    call_tag,
    drop_connections,
    honour_cancel,
    redis_client,
    transcript_key,
)
from ..core.audio import Encoding
from . import printer
from .audio_files import AudioFile

T = TypeVar("T")

# The seed system names linear16 "pcm16" on the bus.
_BUS_ENCODING = {Encoding.LINEAR16: "pcm16", Encoding.MULAW: "mulaw", Encoding.ALAW: "alaw"}


class PublishError(Exception):
    """The call could not be put on the bus; the message says why."""


@dataclass
class PublishResult:
    interaction_id: str
    call_entry: str
    frames: int
    audio_bytes: int
    seconds: float
    outage_retries: int


class _Retrier:
    """Retries an operation while Redis is unreachable, with backoff, up to `give_up_s`."""

    def __init__(self, client: RedisClient, give_up_s: float) -> None:
        self.client = client
        self.give_up_s = give_up_s
        self.retries = 0

    async def __call__(self, op: Callable[[bool], Awaitable[T]]) -> T:
        """`op(retrying)`: retrying is True when an earlier attempt may have been applied."""
        delay = 0.05
        started = time.monotonic()
        retrying = False
        while True:
            try:
                return await op(retrying)
            except REDIS_ERRORS as exc:
                if time.monotonic() - started > self.give_up_s:
                    raise PublishError(f"redis unreachable for {self.give_up_s:g} s: {exc}") from None
                self.retries += 1
                retrying = True
                await drop_connections(self.client)
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)


async def publish_call(
    audio: AudioFile,
    redis_url: str,
    interaction_id: str,
    *,
    tenant_id: str | None = None,
    keyterms: tuple[str, ...] = (),
    chunk_ms: int = 20,
    speed: float = 1.0,
    give_up_s: float = 60.0,
    client: RedisClient | None = None,
    cluster: bool = False,
) -> PublishResult:
    if chunk_ms < 1 or speed < 0:
        raise ValueError("--chunk-ms must be at least 1 and --speed not negative")
    own_client = client is None
    redis = client or redis_client(redis_url, cluster=cluster)
    retrier = _Retrier(redis, give_up_s)
    fmt = audio.fmt
    encoding = _BUS_ENCODING[fmt.encoding]
    step = max(fmt.frame_bytes, fmt.bytes_for(chunk_ms / 1000))
    chunks = [audio.data[i : i + step] for i in range(0, len(audio.data), step)]
    key = audio_key(call_tag(tenant_id, interaction_id), cluster=cluster)
    started = time.monotonic()
    try:
        announcement: dict[str, object] = {
            "interaction_id": interaction_id,
            "tenant_id": tenant_id,
            "encoding": encoding,
            "sample_rate": fmt.sample_rate,
            "channels": fmt.channels,
        }
        if keyterms:
            announcement["keyterms"] = list(keyterms)
        call_entry = await retrier(
            lambda _retrying: redis.xadd(CALLS_KEY, {"data": json.dumps(announcement)}),
        )
        t0_ms = time.time_ns() // 1_000_000
        offset_ms = 0.0
        for n, chunk in enumerate(chunks):
            honour_cancel()  # redis-py can lose a cancel on Python 3.11 (see the bus)
            if speed > 0:
                due = started + offset_ms / 1000 / speed
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            frame = {
                "interaction_id": interaction_id,
                "tenant_id": tenant_id,
                "seq": n,
                "timestamp_ms": t0_ms + round(offset_ms),
                "sample_rate": fmt.sample_rate,
                "encoding": encoding,
                "audio": base64.b64encode(chunk).decode("ascii"),
            }
            await retrier(_writer(redis, key, f"{t0_ms}-{n + 1}", frame))
            offset_ms += fmt.seconds(len(chunk)) * 1000
        end = {"interaction_id": interaction_id, "seq": len(chunks), "end": True}
        await retrier(_writer(redis, key, f"{t0_ms}-{len(chunks) + 1}", end))
    finally:
        if own_client:
            await redis.aclose()
    return PublishResult(
        interaction_id,
        _text(call_entry),
        len(chunks),
        len(audio.data),
        round(time.monotonic() - started, 3),
        retrier.retries,
    )


def _writer(
    redis: RedisClient, key: str, entry_id: str, body: Mapping[str, object]
) -> Callable[[bool], Awaitable[None]]:
    data = json.dumps(body, separators=(",", ":"))

    async def write(retrying: bool) -> None:
        try:
            await redis.xadd(key, {"data": data}, id=entry_id)
        except REDIS_ERRORS:
            raise  # unreachable for now (a cluster's slot mid-failover among them): retried
        except ResponseError as exc:
            if retrying and "equal or smaller" in str(exc):
                return  # the earlier attempt was applied after all
            if "equal or smaller" in str(exc):
                raise PublishError(
                    f"{key} already holds newer entries; is another call using this interaction id?"
                ) from None
            raise PublishError(f"redis refused a frame: {exc}") from None

    return write


async def transcript_end(redis_url: str, call: str, *, cluster: bool = False) -> str:
    """The id of the newest entry of the call's transcript ("0-0" if none): follow from there.
    `call` is its tag (`wire.call_tag`: the tenant and the id)."""
    redis = redis_client(redis_url, cluster=cluster)
    try:
        key = transcript_key(call, cluster=cluster)
        tail: object = await redis.xrevrange(key, "+", "-", count=1)
    finally:
        await redis.aclose()
    return _text(tail[0][0]) if isinstance(tail, list) and tail else "0-0"


async def follow_transcript(
    redis_url: str,
    call: str,
    out: TextIO,
    *,
    after: str,
    timeout_s: float = 3600.0,
    cluster: bool = False,
) -> dict[str, object] | None:
    """Print the events of the call (its tag) written after `after`; return `session_ended`
    (None on timeout)."""
    redis = redis_client(redis_url, cluster=cluster)
    key = transcript_key(call, cluster=cluster)
    cursor = after
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    reply: object = await redis.xread({key: cursor}, count=100, block=500)
                except REDIS_ERRORS:
                    await drop_connections(redis)
                    await asyncio.sleep(0.5)
                    continue
                for entry_id, data in _stream_entries(reply):
                    cursor = entry_id
                    event = json.loads(data)
                    if not isinstance(event, dict):
                        continue
                    line = printer.describe(event)
                    if line is not None:
                        print(line, file=out, flush=True)
                    if event.get("type") == "session_ended":
                        return event
    except TimeoutError:
        return None
    finally:
        await redis.aclose()


def _stream_entries(raw: object) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for stream in raw if isinstance(raw, list) else []:
        if not isinstance(stream, list | tuple) or len(stream) != 2:
            continue
        for entry in stream[1]:
            entry_id, fields = entry
            data = fields.get(b"data") if isinstance(fields, dict) else None
            if isinstance(data, bytes):
                out.append((_text(entry_id), data))
    return out


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
