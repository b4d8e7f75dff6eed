"""What the Redis Streams bus looks like in Redis: key names, the entries producers write
(a call's announcement on `asr:calls`, its audio frames and end entry on `asr:audio:{ID}`,
each entry one `data` field of JSON), how replies are parsed, and a client that never
retries by itself. Shared by the bus and `asr-worker publish`; the Lua scripts that act on a
call only while its worker holds it are in `scripts.py`."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import math
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...core.audio import AudioFormat
from ...core.call_options import NO_OPTIONS, CallOptions
from ...core.ids import DEFAULT_TENANT, check_id, check_optional_id
from ...errors import AudioFormatError, BadRequest, ParamError
from ...jsonwire import loads

CALLS_KEY: Final = "asr:calls"
GROUP: Final = "asr-workers"

# Per-call keys. On a Redis Cluster (REDIS_CLUSTER=true) the call's id is written in braces,
# `asr:audio:{call-1}`: braces mark the part of a key that picks its slot (the hash tag), so
# every key of one call lives on one node and the scripts that act on them stay atomic.
# `asr:calls` is one stream either way; nothing atomic spans it and a call's keys.


# A call's name in its keys is its interaction id for the default tenant (what a single-tenant
# producer writes: `asr:audio:call-1`), and `TENANT/ID` for any other (`asr:audio:acme/call-1`):
# `/` is in no id, so two tenants' calls with one interaction id never share a key.


def call_tag(tenant: str | None, interaction_id: str) -> str:
    """The name a call's Redis keys carry."""
    if tenant is None or tenant == DEFAULT_TENANT:
        return interaction_id
    return f"{tenant}/{interaction_id}"


def _tagged(call: str, cluster: bool) -> str:
    return f"{{{call}}}" if cluster else call


def audio_key(call: str, *, cluster: bool = False) -> str:
    """The call's audio stream; `call` is its tag (`call_tag`)."""
    return f"asr:audio:{_tagged(call, cluster)}"


def progress_key(call: str, *, cluster: bool = False) -> str:
    return f"asr:progress:{_tagged(call, cluster)}"


def transcript_key(call: str, *, cluster: bool = False) -> str:
    return f"transcript.{_tagged(call, cluster)}"


def document_key(call: str, *, cluster: bool = False) -> str:
    """The call's document events (a list of event JSON), for any worker to build its transcript
    document from; kept ASR_TRANSCRIPT_KEEP_S after the last."""
    return f"asr:document:{_tagged(call, cluster)}"


# Webhook deliveries every worker sends from (one stream, like `asr:calls`), and the mark of
# one that was taken (by its idempotency key), so that a copy of it is not sent again.
DELIVERIES_KEY: Final = "asr:webhooks"
DELIVERY_GROUP: Final = "asr-webhooks"


def delivered_key(webhook_id: str) -> str:
    return f"asr:webhook-sent:{webhook_id}"


# A finished call's transcript (and an abandoned call's audio) stays this long for consumers.
TRANSCRIPT_TTL_S: Final = 86_400

# What means "Redis cannot answer now" (the bus waits and retries), as opposed to a refusal. On
# a cluster that includes a slot whose master is down until its replica takes over.
REDIS_ERRORS: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
)

# The one client type the bus talks through: one server, or a cluster (slots routed by redis-py).
RedisClient = aioredis.Redis | RedisCluster


def redis_client(
    url: str, *, name: str | None = None, socket_timeout_s: float = 5.0, cluster: bool = False
) -> RedisClient:
    """A client that fails fast instead of retrying on its own: its callers know which
    commands are safe to repeat (and repeat them after a reconnect). With `cluster`, `url`
    names any node of a Redis Cluster; the client learns the others and follows slot moves
    (MOVED, ASK) and failovers by itself."""
    make = RedisCluster.from_url if cluster else aioredis.Redis.from_url
    return make(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=2.0,
        client_name=name,
    )


async def drop_connections(client: RedisClient) -> None:
    """After a failure: close the connections it may have left half-open, so the next command
    connects afresh. A cluster client does this itself, and learns the slots again."""
    if isinstance(client, aioredis.Redis):
        await client.connection_pool.disconnect()


def honour_cancel() -> None:
    """Raise CancelledError if this task was asked to stop. redis-py sends every command with
    `asyncio.wait_for`, which on Python 3.11 loses a cancel that arrives as the send completes
    (fixed in 3.12); the request still shows in `cancelling()`, so every loop of this bus
    checks it each turn, or a worker could never finish shutting down."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def wake_or_timeout(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for `event`, at most `timeout_s` (cheaper than a timeout context per wait)."""
    honour_cancel()
    handle = asyncio.get_running_loop().call_later(timeout_s, event.set)
    try:
        await event.wait()
    finally:
        handle.cancel()


# --- parsing what Redis and producers send -----------------------------------------------------


def text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


Fields = dict[bytes, bytes]


def entries(raw: object) -> list[tuple[str, Fields]]:
    """[(id, {field: value})] from an XRANGE/XREAD/XAUTOCLAIM list of entries."""
    out: list[tuple[str, Fields]] = []
    if not isinstance(raw, list | tuple):
        return out
    for item in raw:
        if not isinstance(item, list | tuple) or len(item) != 2:
            continue
        entry_id, fields = item
        parsed: Fields = {}
        if isinstance(fields, dict):
            parsed = {k: v for k, v in fields.items() if isinstance(k, bytes) and isinstance(v, bytes)}
        out.append((text(entry_id), parsed))
    return out


def streams(raw: object) -> list[tuple[str, list[tuple[str, Fields]]]]:
    """[(stream, entries)] from an XREAD/XREADGROUP reply (RESP2 list or RESP3 map)."""
    if isinstance(raw, dict):
        return [(text(k), entries(v)) for k, v in raw.items()]
    if isinstance(raw, list | tuple):
        return [
            (text(item[0]), entries(item[1]))
            for item in raw
            if isinstance(item, list | tuple) and len(item) == 2
        ]
    return []


def json_object(raw: bytes | None) -> dict[str, object] | None:
    if raw is None:
        return None
    try:
        value = loads(raw)
    except ValueError:  # not JSON, or nested deeper than the parser goes
        return None
    return value if isinstance(value, dict) else None


# The write script compares seqs as Lua numbers (doubles): exact only up to 2**53.
MAX_SEQ: Final = 2**53 - 1


def event_seq(event: dict[str, object]) -> int | None:
    """The `seq` of an event read back from `transcript.{ID}`, if it is one this worker can
    continue from (a whole number the write script compares exactly)."""
    seq = event.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= MAX_SEQ:
        return seq
    return None


def final_end(event: dict[str, object], channels: int) -> tuple[int, float] | None:
    """(channel, end in call seconds) of a final transcript event read back from
    `transcript.{ID}`; None for anything else, or for times no session can start from."""
    channel, end = event.get("channel"), event.get("end")
    if (
        event.get("type") != "transcript"
        or event.get("is_final") is not True
        or not isinstance(channel, int)
        or isinstance(channel, bool)
        or not 0 <= channel < channels
        or isinstance(end, bool)
        or not isinstance(end, int | float)
    ):
        return None
    try:
        seconds = float(end)
    except OverflowError:  # an int too large for a float
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return channel, seconds


def next_id(entry_id: str) -> str:
    """The smallest stream id after `entry_id`."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


@dataclass(frozen=True, slots=True)
class Announcement:
    interaction_id: str
    tenant_id: str
    fmt: AudioFormat
    options: CallOptions = NO_OPTIONS

    @property
    def tag(self) -> str:
        return call_tag(self.tenant_id, self.interaction_id)


def parse_announcement(raw: bytes | None) -> tuple[Announcement | None, str | None, str]:
    """(announcement, the call's tag if its id is readable, problem). A call without a
    `tenant_id` is the default tenant's."""
    body = json_object(raw)
    if body is None:
        return None, None, "the `data` field is not a JSON object"
    iid = body.get("interaction_id")
    tenant = body.get("tenant_id")
    readable_tenant = tenant if isinstance(tenant, str) and _valid_id(tenant) else None
    readable = call_tag(readable_tenant, iid) if isinstance(iid, str) and _valid_id(iid) else None
    try:
        interaction_id = check_id(iid if isinstance(iid, str) else None, "interaction_id")
        tenant_id = (
            check_optional_id(tenant if isinstance(tenant, str) else None, "tenant_id") or DEFAULT_TENANT
        )
        fmt = AudioFormat.parse(
            body.get("encoding", "linear16"), body.get("sample_rate", 8000), body.get("channels", 1)
        )
        options = CallOptions.from_fields(body, "")
    except (BadRequest, AudioFormatError, ParamError) as exc:
        return None, readable, str(exc)
    announcement = Announcement(interaction_id, tenant_id, fmt, options)
    return announcement, announcement.tag, ""


def _valid_id(value: str) -> bool:
    try:
        check_id(value, "interaction_id")
    except BadRequest:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Frame:
    audio: bytes = b""
    end: bool = False


def parse_frame(raw: bytes | None, fmt: AudioFormat) -> Frame | str:
    """An audio entry of the seed system's shape, or what is wrong with it."""
    body = json_object(raw)
    if body is None:
        return "the `data` field is not a JSON object"
    if body.get("end") is True:
        return Frame(end=True)
    audio = body.get("audio")
    if not isinstance(audio, str):
        return "no base64 `audio`"
    if "encoding" in body or "sample_rate" in body:
        try:
            declared = AudioFormat.parse(
                body.get("encoding", fmt.encoding), body.get("sample_rate", fmt.sample_rate), fmt.channels
            )
        except AudioFormatError as exc:
            return str(exc)
        if declared != fmt:
            return (
                f"its audio is {declared.encoding} {declared.sample_rate} Hz; "
                f"the call is {fmt.encoding} {fmt.sample_rate} Hz"
            )
    try:
        return Frame(audio=binascii.a2b_base64(audio, strict_mode=True))
    except (binascii.Error, ValueError):
        return "`audio` is not valid base64"


# --- small conversions --------------------------------------------------------------------


def to_int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def int_or(value: object, default: int = 0) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | str):
        with contextlib.suppress(ValueError):
            return int(value)
    return default
