"""The Redis Streams bus (contract section 5): calls are jobs shared by many workers.

Keys (every entry carries one field, `data`, holding JSON):

* `asr:calls`: call announcements. The consumer group `asr-workers` hands each entry to one
  worker; the entry stays pending (owned) until the call's `session_ended` is written, then it
  is acknowledged.
* `asr:audio:{ID}`: the call's audio frames in order, then an end entry. The owner reads it
  with plain XREAD from its own cursor (one blocking XREAD covers every call it owns).
* `transcript.{ID}`: every event of the call, in order.
* `asr:progress:{ID}`: a small hash the owner keeps: up to which audio entry (and byte within
  it) final results have covered the call, and at which call offset. It is what lets another
  worker resume the call without losing or repeating words.

Ownership and failover: the owner refreshes its pending call entries every quarter of
`ASR_CLAIM_IDLE_S` (XCLAIM JUSTID, only for entries it still holds, in a script); other workers
take entries idle for three quarters of it with XAUTOCLAIM, so a dead worker's calls are taken
over within `ASR_CLAIM_IDLE_S`. The new owner reads the progress hash and the tail of the
transcript, opens a session resumed at the covered offset (numbering after the last published
seq, not repeating words already final), and re-reads the audio from the covered entry on.
Every write of call data (events, progress, trims, the final acknowledgement) checks in the
same script that no other worker holds the call, so a worker that lost a call (a pause longer
than the claim time) cannot interleave with its new owner; it notices and ends its session.

Redis away: the worker keeps its sessions; events wait in a bounded queue and are written in
order once Redis answers; reading resumes after the last entry consumed; `/ready` says 503.
Writes are idempotent by seq, so a batch retried after an ambiguous failure is not duplicated.

Bounded streams: a call's audio stream is trimmed (XTRIM MINID) only behind the entry its
progress points at, i.e. behind audio both consumed and covered by finals; it is deleted when
the call ends. `asr:calls` is trimmed behind the oldest entry any group still needs. The
transcript stream is the consumers': it is never trimmed, and expires a day after the call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import random
import secrets
import socket
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .. import logs
from ..core.audio import AudioFormat, AudioFormatError
from ..core.session import Link, Phase, Resume
from ..runtime.manager import SessionRefused
from ..transports.common import BadRequest, check_id, check_optional_id
from .base import Event

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..config import Settings
    from ..runtime.manager import SessionManager
    from ..runtime.runner import SessionRunner

log = logging.getLogger("asr_worker.bus")

CALLS_KEY: Final = "asr:calls"
GROUP: Final = "asr-workers"


def audio_key(interaction_id: str) -> str:
    return f"asr:audio:{interaction_id}"


def progress_key(interaction_id: str) -> str:
    return f"asr:progress:{interaction_id}"


def transcript_key(interaction_id: str) -> str:
    return f"transcript.{interaction_id}"


MAX_QUEUED_EVENTS: Final = 10_000  # events waiting for Redis, all calls together
WRITE_BATCH: Final = 256
AUDIO_BLOCK_MS: Final = 100
AUDIO_ENTRIES_PER_READ: Final = 50  # per call and read: 1 s of 20 ms frames
INTAKE_BLOCK_MS: Final = 500
CLAIM_BATCH: Final = 10
PROGRESS_INTERVAL_S: Final = 0.5
PRODUCER_SILENT_S: Final = 2.0  # no audio entry this long: the producer counts as gone (grace applies)
TRANSCRIPT_TTL_S: Final = 86_400
TAIL_SCAN_LIMIT: Final = 2_000
HOUSEKEEPING_INTERVAL_S: Final = 30.0
FINAL_FLUSH_S: Final = 3.0
SOCKET_TIMEOUT_S: Final = 5.0
BACKOFF_INITIAL_S: Final = 0.1
BACKOFF_MAX_S: Final = 2.0

# A session ended by these reasons did not end the call: the call goes to another worker.
_HANDOVER_REASONS: Final = frozenset({"shutdown", "shutdown_timeout"})
_LOST_REASON: Final = "ownership_lost"

REDIS_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, OSError)

# --- scripts: each checks ownership and acts in one step -------------------------------------

_HOLDER = """
local function holder(calls, group, id)
  local p = redis.call('XPENDING', calls, group, id, id, 1)
  if #p == 0 then return false end
  return p[1][2]
end
"""

# KEYS: asr:calls, asr:progress:{ID}, transcript.{ID}; ARGV: group, consumer, call entry id.
_START = (
    _HOLDER
    + """
if holder(KEYS[1], ARGV[1], ARGV[3]) ~= ARGV[2] then return {'lost'} end
local h = {}
local flat = redis.call('HGETALL', KEYS[2])
for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
if h['call'] and h['call'] ~= ARGV[3] then
  if holder(KEYS[1], ARGV[1], h['call']) then return {'duplicate', h['call']} end
  redis.call('DEL', KEYS[2])
  h = {}
end
if h['call'] == ARGV[3] then
  return {'resume', h['mark'] or '0-0', h['after'] or '0-0', h['next'] or '', h['skip'] or '0',
          h['offset'] or '0'}
end
local mark = '0-0'
local tail = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if #tail > 0 then mark = tail[1][1] end
redis.call('HSET', KEYS[2], 'call', ARGV[3], 'mark', mark, 'after', '0-0', 'next', '', 'skip', '0',
           'offset', '0')
return {'new', mark}
"""
)

# KEYS: transcript.{ID}, asr:calls, asr:progress:{ID}, asr:audio:{ID}
# ARGV: group, consumer, call entry id or '', finish ('ack', 'expire' or ''), ttl, then
# (seq, fresh, json) per event. Returns the last seq in the transcript, or -1 if another worker
# holds the call. Events whose seq is not above the last written one were written already (a
# retried batch); a fresh session_started restarts the numbering (a new call with an old id).
_WRITE = (
    _HOLDER
    + """
if ARGV[3] ~= '' then
  local who = holder(KEYS[2], ARGV[1], ARGV[3])
  if who and who ~= ARGV[2] then return -1 end
end
local last = 0
local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #tail > 0 then
  local ok, ev = pcall(cjson.decode, tail[1][2][2])
  if ok and type(ev) == 'table' and type(ev['seq']) == 'number' then last = ev['seq'] end
end
for i = 6, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if ARGV[i + 1] == '1' then last = seq - 1 end
  if seq > last then
    redis.call('XADD', KEYS[1], '*', 'data', ARGV[i + 2])
    last = seq
  end
end
if ARGV[4] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  if ARGV[4] == 'ack' then
    redis.call('XACK', KEYS[2], ARGV[1], ARGV[3])
    redis.call('DEL', KEYS[3], KEYS[4])
  end
end
return last
"""
)

# KEYS: asr:calls, asr:progress:{ID}, asr:audio:{ID}
# ARGV: group, consumer, call entry id, mark, after, next, skip, offset, trim min id or ''.
# Returns 1 when saved, 0 when nobody holds the entry, -1 when another worker does.
_SAVE = (
    _HOLDER
    + """
local who = holder(KEYS[1], ARGV[1], ARGV[3])
if not who then return 0 end
if who ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[2], 'call', ARGV[3], 'mark', ARGV[4], 'after', ARGV[5], 'next', ARGV[6],
           'skip', ARGV[7], 'offset', ARGV[8])
if ARGV[9] ~= '' then redis.call('XTRIM', KEYS[3], 'MINID', ARGV[9]) end
return 1
"""
)

# KEYS: asr:calls; ARGV: group, consumer, idle ms, call entry ids. Resets the idle time of the
# entries this consumer still holds (0: keep them; large: hand them to the next XAUTOCLAIM).
# Returns the entries it does not hold, each followed by 'taken' or 'gone'.
_CLAIM_OWN = (
    _HOLDER
    + """
local out = {}
for i = 4, #ARGV do
  local who = holder(KEYS[1], ARGV[1], ARGV[i])
  if not who then
    table.insert(out, ARGV[i]); table.insert(out, 'gone')
  elseif who ~= ARGV[2] then
    table.insert(out, ARGV[i]); table.insert(out, 'taken')
  else
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
  end
end
return out
"""
)


# --- parsing what Redis and producers send -----------------------------------------------------


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


Fields = dict[bytes, bytes]


def _entries(raw: object) -> list[tuple[str, Fields]]:
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
        out.append((_text(entry_id), parsed))
    return out


def _streams(raw: object) -> list[tuple[str, list[tuple[str, Fields]]]]:
    """[(stream, entries)] from an XREAD/XREADGROUP reply (RESP2 list or RESP3 map)."""
    if isinstance(raw, dict):
        return [(_text(k), _entries(v)) for k, v in raw.items()]
    if isinstance(raw, list | tuple):
        return [
            (_text(item[0]), _entries(item[1]))
            for item in raw
            if isinstance(item, list | tuple) and len(item) == 2
        ]
    return []


def _json_object(raw: bytes | None) -> dict[str, object] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def next_id(entry_id: str) -> str:
    """The smallest stream id after `entry_id`."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


@dataclass(frozen=True, slots=True)
class Announcement:
    interaction_id: str
    tenant_id: str | None
    fmt: AudioFormat


def parse_announcement(raw: bytes | None) -> tuple[Announcement | None, str | None, str]:
    """(announcement, interaction_id if readable, problem)."""
    body = _json_object(raw)
    if body is None:
        return None, None, "the `data` field is not a JSON object"
    iid = body.get("interaction_id")
    readable = iid if isinstance(iid, str) and _valid_id(iid) else None
    try:
        interaction_id = check_id(iid if isinstance(iid, str) else None, "interaction_id")
        tenant = body.get("tenant_id")
        tenant_id = check_optional_id(tenant if isinstance(tenant, str) else None, "tenant_id")
        fmt = AudioFormat.parse(
            body.get("encoding", "linear16"), body.get("sample_rate", 8000), body.get("channels", 1)
        )
    except (BadRequest, AudioFormatError) as exc:
        return None, readable, str(exc)
    return Announcement(interaction_id, tenant_id, fmt), interaction_id, ""


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
    body = _json_object(raw)
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
        return Frame(audio=base64.b64decode(audio, validate=True))
    except (binascii.Error, ValueError):
        return "`audio` is not valid base64"


# --- one call this worker owns -------------------------------------------------------------


class CallState(StrEnum):
    READING = "reading"  # session live; reading audio until the end entry
    ENDED = "ended"  # the session ended the call; its session_ended is on its way to Redis
    HANDING_OVER = "handing_over"  # shutdown: save progress, then let another worker take it
    LOST = "lost"  # another worker holds the entry now; nothing more is written


@dataclass(slots=True)
class _Fed:
    entry_id: str
    start: int  # call byte offsets of the audio this entry gave the session
    end: int


@dataclass(slots=True)
class _Sample:
    """Progress to save once every event up to `seq` is written: final results behind
    `covered` were all emitted by then."""

    covered: int
    seq: int
    after: str
    next: str
    skip: int


@dataclass(slots=True)
class OwnedCall:
    interaction_id: str
    tenant_id: str | None
    fmt: AudioFormat
    entry_id: str  # the call's entry in asr:calls
    mark: str  # the transcript's last id before this call's first event
    read_after: str  # audio cursor: the last entry consumed
    offset: int  # call byte offset of the next byte to feed
    skip_entry: str = ""  # on resume, the first entry: its first `skip` bytes are already covered
    skip: int = 0
    runner: SessionRunner | None = None
    source_id: str | None = None
    state: CallState = CallState.READING
    end_seen: bool = False
    silent_since: float | None = None
    fed: deque[_Fed] = field(default_factory=deque)  # fed entries not yet wholly covered
    after: str = "0-0"  # last entry wholly covered
    saved_offset: int = 0
    saved_after: str = "0-0"
    sample: _Sample | None = None
    written_seq: int = 0  # highest seq of this call written to (or dropped before) Redis
    entry_gone: bool = False

    @property
    def audio_key(self) -> str:
        return audio_key(self.interaction_id)

    def wants_audio(self, feed_limit_bytes: int) -> bool:
        runner = self.runner
        if self.state is not CallState.READING or self.end_seen or runner is None:
            return False
        core = runner.core
        if core.phase is not Phase.ACTIVE:
            return False
        # The stream is the buffer: while the provider is not taking audio, leave it in Redis
        # rather than fill the session's retained buffer (which would shed the oldest).
        return not (
            core.retained_bytes >= feed_limit_bytes
            and (core.unsent_bytes > 0 or core.link is not Link.CONNECTED)
        )

    def progress(self, covered: int) -> tuple[str, str, int]:
        """(after, next, skip) for a covered call offset: the last entry wholly covered, the
        entry the offset falls in, and how many of that entry's bytes are covered."""
        while self.fed and self.fed[0].end <= covered:
            self.after = self.fed.popleft().entry_id
        if self.fed and self.fed[0].start < covered:
            head = self.fed[0]
            return self.after, head.entry_id, covered - head.start
        return self.after, "", 0


@dataclass(slots=True)
class _Outgoing:
    interaction_id: str
    seq: int
    fresh: bool
    data: str
    call: OwnedCall | None
    finish: str  # 'ack' (the call is over: acknowledge and clean up), 'expire', or ''


@dataclass(slots=True)
class BusCounters:
    events_written: int = 0
    events_dropped: int = 0
    calls_taken: int = 0
    calls_claimed: int = 0
    calls_finished: int = 0
    calls_handed_over: int = 0
    calls_lost: int = 0
    calls_refused: int = 0
    audio_entries: int = 0
    bad_entries: int = 0
    bad_calls: int = 0
    outages: int = 0


class RedisStreamsBus:
    name = "redis_streams"

    def __init__(self, settings: Settings) -> None:
        self._url = settings.redis_url
        parts = urlsplit(settings.redis_url)
        if parts.password:
            logs.register_secret(parts.password)
        self._where = f"{parts.hostname}:{parts.port or 6379}{parts.path or ''}"
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self._claim_idle_s = settings.claim_idle_s
        self._grace_s = settings.session_grace_s
        self._feed_limit_s = settings.max_retained_s / 2
        self.counters = BusCounters()
        self._outbox: deque[_Outgoing] = deque()
        self._calls: dict[str, OwnedCall] = {}
        self._manager: SessionManager | None = None
        self._client: aioredis.Redis | None = None
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._down.set()
        self._down_since: float | None = time.monotonic()
        self._last_error = "not connected yet"
        self._wake_writer = asyncio.Event()
        self._capacity_freed = asyncio.Event()
        self._calls_changed = asyncio.Event()
        self._reserved = 0
        self._claims_allowed_at = 0.0
        self._rng = random.Random()
        self._drop_logged = False
        self._write_retry = False  # the last event write failed midway: it may have been applied
        self._scripts_obj: _Scripts | None = None

    # --- timing derived from ASR_CLAIM_IDLE_S --------------------------------------------------

    @property
    def refresh_interval_s(self) -> float:
        return self._claim_idle_s / 4

    @property
    def claim_min_idle_ms(self) -> int:
        return round(self._claim_idle_s * 750)

    @property
    def claim_scan_interval_s(self) -> float:
        return min(1.0, self._claim_idle_s / 10)

    # --- the Bus interface --------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        iid = event.get("interaction_id")
        if not isinstance(iid, str):
            return
        kind = event.get("type")
        call = self._calls.get(iid)
        if call is not None and call.state is CallState.LOST:
            if kind == "session_ended":
                self._forget(call)
            return  # another worker owns the call now: nothing of this session is written
        seq = event.get("seq")
        seq_no = seq if isinstance(seq, int) else -1
        finish = ""
        if kind == "session_ended":
            self._capacity_freed.set()
            finish = "expire"
            if call is not None and call.runner is not None:
                if event.get("reason") in _HANDOVER_REASONS:
                    self._hand_over_later(call, seq_no)
                    return
                call.state = CallState.ENDED
                finish = "ack"
        fresh = kind == "session_started" and not event.get("resumed")
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        outgoing = _Outgoing(iid, seq_no, fresh, data, call, finish)
        if len(self._outbox) >= MAX_QUEUED_EVENTS:
            self._drop_one(outgoing)
        else:
            self._outbox.append(outgoing)
        self._wake_writer.set()

    def _drop_one(self, incoming: _Outgoing) -> None:
        """The queue is full (Redis away too long): an incoming interim is dropped first (a final
        follows it), else the oldest queued event; counted, and logged once per outage."""
        if not self._drop_logged:
            self._drop_logged = True
            log.error(
                "bus queue full; dropping events until redis answers", extra={"queued": len(self._outbox)}
            )
        self.counters.events_dropped += 1
        if '"is_final":false' in incoming.data:
            victim = incoming
        else:
            victim = self._outbox.popleft()
            self._outbox.append(incoming)
        if victim.call is not None:
            victim.call.written_seq = max(victim.call.written_seq, victim.seq)

    def healthy(self) -> bool:
        return self._up.is_set()

    def status(self) -> dict[str, object]:
        down_for = None if self._down_since is None else round(time.monotonic() - self._down_since, 1)
        status: dict[str, object] = {
            "adapter": self.name,
            "ok": self.healthy(),
            "redis": self._where,
            "consumer": self.consumer,
            "callsOwned": len(self._calls),
            "eventsQueued": len(self._outbox),
            "eventsDropped": self.counters.events_dropped,
        }
        if down_for is not None:
            status["downForSeconds"] = down_for
            status["lastError"] = self._last_error
        return status

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(_BusCollector(self))

    async def run(self, manager: SessionManager) -> None:
        self._manager = manager
        self._client = aioredis.Redis.from_url(
            self._url,
            retry=Retry(NoBackoff(), 0),  # this module retries, knowing what is safe to repeat
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=2.0,
            client_name=self.consumer,
        )
        self._scripts_obj = _Scripts(self._client)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._keep_link(), name="bus:link")
                tg.create_task(self._intake(), name="bus:intake")
                tg.create_task(self._claim(), name="bus:claim")
                tg.create_task(self._read_audio(), name="bus:audio")
                tg.create_task(self._write(), name="bus:write")
        finally:
            await self._final_flush()
            await self._client.aclose()

    # --- the link to Redis --------------------------------------------------------------------

    @property
    def client(self) -> aioredis.Redis:
        assert self._client is not None, "the bus is not running"
        return self._client

    @property
    def _scripts(self) -> _Scripts:
        assert self._scripts_obj is not None, "the bus is not running"
        return self._scripts_obj

    def _link_failed(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"[:300]
        if self._up.is_set():
            self._up.clear()
            self._down.set()
            self._down_since = time.monotonic()
            self.counters.outages += 1
            log.warning(
                "redis unreachable; keeping sessions, queueing events", extra={"error": self._last_error}
            )

    async def _keep_link(self) -> None:
        """While Redis is unreachable: drop stale connections, ping with backoff, and once it
        answers make sure the group exists, then let every loop go on."""
        delay = BACKOFF_INITIAL_S
        first = True
        while True:
            honour_cancel()
            await self._down.wait()
            await self.client.connection_pool.disconnect()
            try:
                await self.client.ping()
                await self._ensure_group()
            except (*REDIS_ERRORS, ResponseError) as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"[:300]
                await asyncio.sleep(delay * (0.5 + self._rng.random() / 2))
                delay = min(BACKOFF_MAX_S, delay * 2)
                continue
            delay = BACKOFF_INITIAL_S
            down_for = time.monotonic() - (self._down_since or time.monotonic())
            self._down.clear()
            self._down_since = None
            if not first:
                # Live owners get a refresh in before this worker claims anything idle: after an
                # outage every entry looks idle, though its owner may be alive and reconnecting too.
                self._claims_allowed_at = time.monotonic() + self.refresh_interval_s * 2
            self._drop_logged = False
            self._up.set()
            self._wake_writer.set()
            if first:
                log.info("redis bus connected", extra={"redis": self._where, "consumer": self.consumer})
                first = False
            else:
                log.info("redis is back", extra={"down_s": round(down_for, 2)})

    async def _ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(CALLS_KEY, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # --- taking calls -------------------------------------------------------------------------

    @property
    def manager(self) -> SessionManager:
        assert self._manager is not None
        return self._manager

    def _capacity(self) -> int:
        manager = self.manager
        if not manager.accepting:
            return 0
        return manager.max_sessions - len(manager.sessions) - self._reserved

    async def _wait_for_capacity(self) -> None:
        self._capacity_freed.clear()
        await _wake_or_timeout(self._capacity_freed, 0.5)  # other sources' sessions end unannounced

    async def _intake(self) -> None:
        """New calls, one at a time, only while this worker has room for another."""
        while True:
            honour_cancel()
            await self._up.wait()
            if self._capacity() <= 0:
                await self._wait_for_capacity()
                continue
            self._reserved += 1
            try:
                reply: object = await self.client.xreadgroup(
                    GROUP, self.consumer, {CALLS_KEY: ">"}, count=1, block=INTAKE_BLOCK_MS
                )
                for _, entries in _streams(reply):
                    for entry_id, fields in entries:
                        await self._take(entry_id, fields, claimed=False)
            except REDIS_ERRORS as exc:
                self._link_failed(exc)
            except ResponseError as exc:
                await self._response_error(exc)
            finally:
                self._reserved -= 1

    async def _claim(self) -> None:
        """Calls whose owner stopped refreshing them (it died), and housekeeping."""
        cursor = "0-0"
        next_housekeeping = time.monotonic() + HOUSEKEEPING_INTERVAL_S
        while True:
            honour_cancel()
            await asyncio.sleep(self.claim_scan_interval_s)
            await self._up.wait()
            now = time.monotonic()
            if now >= next_housekeeping:
                next_housekeeping = now + HOUSEKEEPING_INTERVAL_S
                await self._housekeeping()
            room = min(self._capacity(), CLAIM_BATCH)
            if room <= 0 or now < self._claims_allowed_at:
                continue
            self._reserved += room
            try:
                reply: object = await self.client.xautoclaim(
                    CALLS_KEY, GROUP, self.consumer, self.claim_min_idle_ms, cursor, count=room
                )
                if isinstance(reply, list | tuple) and len(reply) >= 2:
                    cursor = _text(reply[0])
                    for entry_id, fields in _entries(reply[1]):
                        await self._take(entry_id, fields, claimed=True)
                    if len(reply) > 2 and reply[2]:
                        log.warning(
                            "pending call entries vanished from the stream", extra={"ids": str(reply[2])}
                        )
            except REDIS_ERRORS as exc:
                self._link_failed(exc)
            except ResponseError as exc:
                await self._response_error(exc)
            finally:
                self._reserved -= room

    async def _response_error(self, exc: ResponseError) -> None:
        if "NOGROUP" in str(exc):  # Redis lost its data, or someone deleted the group
            with contextlib.suppress(*REDIS_ERRORS, ResponseError):
                await self._ensure_group()
            return
        log.error("redis refused a command", extra={"error": str(exc)[:300]})
        await asyncio.sleep(1.0)

    async def _take(self, entry_id: str, fields: Fields, *, claimed: bool) -> None:
        """Start (or resume) the call an entry of asr:calls announces."""
        announcement, iid, problem = parse_announcement(fields.get(b"data"))
        client = self.client
        if announcement is None:
            self.counters.bad_calls += 1
            log.warning(
                "bad call announcement; acknowledged and skipped",
                extra={"entry": entry_id, "problem": problem},
            )
            if iid is not None:
                error = {"type": "error", "interaction_id": iid, "code": "bad_call", "message": problem}
                await client.xadd(transcript_key(iid), {"data": json.dumps(error)})
            await client.xack(CALLS_KEY, GROUP, entry_id)
            return
        iid = announcement.interaction_id
        known = self._calls.get(iid)
        if known is not None and known.state is CallState.LOST:
            # Its session here is still winding down; let another worker (or a later scan) take it.
            await self._scripts.claim_own(self.consumer, [entry_id], idle_ms=self._handback_idle_ms)
            return
        if known is not None:
            self.counters.bad_calls += 1
            log.warning(
                "second announcement of a call this worker owns; acknowledged",
                extra={"interaction_id": iid, "entry": entry_id},
            )
            await client.xack(CALLS_KEY, GROUP, entry_id)
            return
        if self.manager.get(iid) is not None:
            log.warning(
                "a session for this call already runs here from another source; handing the entry back",
                extra={"interaction_id": iid},
            )
            await self._scripts.claim_own(self.consumer, [entry_id], idle_ms=self._handback_idle_ms)
            return
        reply = await self._scripts.start(iid, self.consumer, entry_id)
        verdict = reply[0] if reply else "lost"
        if verdict == "lost":
            return
        if verdict == "duplicate":
            self.counters.bad_calls += 1
            log.warning(
                "duplicate announcement of a live call; acknowledged",
                extra={
                    "interaction_id": iid,
                    "entry": entry_id,
                    "live_entry": reply[1] if len(reply) > 1 else "",
                },
            )
            await client.xack(CALLS_KEY, GROUP, entry_id)
            return
        mark = reply[1] if len(reply) > 1 else "0-0"
        call = OwnedCall(
            iid, announcement.tenant_id, announcement.fmt, entry_id, mark, read_after="0-0", offset=0
        )
        resume: Resume | None = None
        if verdict == "resume" and len(reply) >= 6:
            resume = await self._resume_point(
                call, after=reply[2], next_entry=reply[3], skip=_int(reply[4]), offset=_int(reply[5])
            )
        self._calls[iid] = call
        try:
            runner = self.manager.open_session(iid, announcement.tenant_id, announcement.fmt, resume)
        except (SessionRefused, ValueError) as exc:
            del self._calls[iid]
            self.counters.calls_refused += 1
            log.info(
                "call refused here; handing it back", extra={"interaction_id": iid, "reason": str(exc)[:200]}
            )
            await self._scripts.claim_own(self.consumer, [entry_id], idle_ms=self._handback_idle_ms)
            return
        call.runner = runner
        call.source_id = runner.attach()
        if claimed:
            self.counters.calls_claimed += 1
        else:
            self.counters.calls_taken += 1
        self._calls_changed.set()
        log.info(
            "call taken",
            extra={
                "interaction_id": iid,
                "entry": entry_id,
                "how": "claimed" if claimed else "new",
                "resumed_at_s": None if resume is None else round(announcement.fmt.seconds(resume.offset), 3),
            },
        )

    @property
    def _handback_idle_ms(self) -> int:
        return self.claim_min_idle_ms * 4

    async def _resume_point(
        self, call: OwnedCall, *, after: str, next_entry: str, skip: int, offset: int
    ) -> Resume | None:
        """From the progress hash and the transcript's tail: where the call continues."""
        fmt = call.fmt
        last_seq: int | None = None
        finalized: list[float | None] = [None] * fmt.channels
        upper = "+"
        lower = "-" if call.mark == "0-0" else f"({call.mark}"
        scanned = 0
        while scanned < TAIL_SCAN_LIMIT and (last_seq is None or None in finalized):
            page = _entries(
                await self.client.xrevrange(transcript_key(call.interaction_id), upper, lower, count=200)
            )
            if not page:
                break
            for entry_id, fields in page:
                scanned += 1
                upper = f"({entry_id}"
                event = _json_object(fields.get(b"data"))
                if event is None:
                    continue
                seq = event.get("seq")
                if last_seq is None and isinstance(seq, int):
                    last_seq = seq
                channel, end = event.get("channel"), event.get("end")
                if (
                    event.get("type") == "transcript"
                    and event.get("is_final") is True
                    and isinstance(channel, int)
                    and 0 <= channel < fmt.channels
                    and finalized[channel] is None
                    and isinstance(end, int | float)
                ):
                    finalized[channel] = float(end)
        if last_seq is None and offset == 0:
            return None  # nothing of this call was published: it starts afresh
        offset -= offset % fmt.frame_bytes
        call.offset = call.saved_offset = offset
        call.read_after = call.after = call.saved_after = after
        call.skip_entry, call.skip = next_entry, skip
        call.written_seq = last_seq or 0
        return Resume(offset=offset, seq=last_seq or 0, finalized_s=tuple(f or 0.0 for f in finalized))

    # --- reading audio ------------------------------------------------------------------------

    async def _read_audio(self) -> None:
        """One blocking XREAD over every call this worker reads, each from its own cursor."""
        while True:
            honour_cancel()
            await self._up.wait()
            calls = []
            for call in self._calls.values():
                if call.wants_audio(call.fmt.bytes_for(self._feed_limit_s)):
                    calls.append(call)
                else:
                    call.silent_since = None  # not asked for audio, so not silent either
            if not calls:
                self._calls_changed.clear()
                await _wake_or_timeout(self._calls_changed, AUDIO_BLOCK_MS / 1000)
                continue
            streams: dict[bytes | str | memoryview, int | bytes | str | memoryview] = {
                call.audio_key: call.read_after for call in calls
            }
            try:
                reply: object = await self.client.xread(
                    streams, count=AUDIO_ENTRIES_PER_READ, block=AUDIO_BLOCK_MS
                )
            except REDIS_ERRORS as exc:
                self._link_failed(exc)
                continue
            by_key = {call.audio_key: call for call in calls}
            heard: set[str] = set()
            for key, entries in _streams(reply):
                reader = by_key.get(key)
                if reader is None:
                    continue
                heard.add(key)
                for entry_id, fields in entries:
                    self._feed(reader, entry_id, fields)
            now = time.monotonic()
            for call in calls:
                self._producer_presence(call, call.audio_key in heard, now)

    def _feed(self, call: OwnedCall, entry_id: str, fields: Fields) -> None:
        runner = call.runner
        if runner is None or call.state is not CallState.READING or call.end_seen:
            return
        if runner.core.phase is not Phase.ACTIVE:
            return  # ending (drain): this entry stays for whoever continues the call
        self.counters.audio_entries += 1
        call.read_after = entry_id
        frame = parse_frame(fields.get(b"data"), call.fmt)
        start = call.offset
        if isinstance(frame, str):
            self.counters.bad_entries += 1
            runner.error("bad_entry", f"audio entry {entry_id} skipped: {frame}")
        elif frame.end:
            call.end_seen = True
            runner.end("end")
        else:
            audio = frame.audio
            if call.skip_entry:
                if call.skip_entry == entry_id:
                    audio = audio[call.skip :]
                else:
                    log.warning(
                        "the audio entry to resume in is gone; resuming at the next one",
                        extra={
                            "interaction_id": call.interaction_id,
                            "expected": call.skip_entry,
                            "entry": entry_id,
                        },
                    )
                call.skip_entry, call.skip = "", 0
            if runner.feed(audio):
                call.offset += len(audio)
        call.fed.append(_Fed(entry_id, start, call.offset))

    def _producer_presence(self, call: OwnedCall, heard: bool, now: float) -> None:
        """A producer that wrote nothing for a while counts as gone, so the session's grace
        period ends a call whose producer died without an end entry."""
        runner = call.runner
        if runner is None:
            return
        if heard:
            call.silent_since = None
            if call.source_id is None:
                call.source_id = runner.attach()
        elif call.silent_since is None:
            call.silent_since = now
        elif call.source_id is not None and now - call.silent_since >= PRODUCER_SILENT_S:
            runner.detach(call.source_id)
            call.source_id = None

    # --- writing: events, progress, ownership -------------------------------------------------

    async def _write(self) -> None:
        next_refresh = next_progress = time.monotonic()
        while True:
            honour_cancel()
            now = time.monotonic()
            wait_s = max(0.0, min(next_refresh, next_progress) - now)
            if not self._outbox and wait_s > 0:
                self._wake_writer.clear()
                await _wake_or_timeout(self._wake_writer, wait_s)
            await self._up.wait()
            try:
                await self._flush_events()
                now = time.monotonic()
                if now >= next_progress:
                    next_progress = now + PROGRESS_INTERVAL_S
                    self._sample_progress()
                await self._save_progress()
                if now >= next_refresh:
                    next_refresh = now + self.refresh_interval_s
                    await self._refresh()
            except REDIS_ERRORS as exc:
                self._link_failed(exc)

    async def _flush_events(self) -> None:
        while self._outbox and self._up.is_set():
            batch = [self._outbox[i] for i in range(min(WRITE_BATCH, len(self._outbox)))]
            groups: list[list[_Outgoing]] = []
            for item in batch:
                if (
                    groups
                    and groups[-1][0].interaction_id == item.interaction_id
                    and not groups[-1][-1].finish
                ):
                    groups[-1].append(item)
                else:
                    groups.append([item])
            try:
                results = await self._scripts.write_events(self.consumer, groups, retry=self._write_retry)
            except REDIS_ERRORS:
                self._write_retry = True
                raise
            self._write_retry = False
            for _ in batch:
                self._outbox.popleft()
            for group, result in zip(groups, results, strict=True):
                self._written(group, result)

    def _written(self, group: list[_Outgoing], result: object) -> None:
        call = group[0].call
        if isinstance(result, Exception):
            log.error(
                "redis refused a batch of events; dropped",
                extra={"interaction_id": group[0].interaction_id, "error": str(result)[:300]},
            )
            self.counters.events_dropped += len(group)
            return
        if result == -1:
            if call is not None:
                self._lose(call, "another worker holds the call")
            return
        self.counters.events_written += len(group)
        if call is None:
            return
        call.written_seq = max(call.written_seq, *(item.seq for item in group))
        if group[-1].finish == "ack":
            self._forget(call)
            self.counters.calls_finished += 1
            log.info("call finished", extra={"interaction_id": call.interaction_id, "entry": call.entry_id})

    def _sample_progress(self) -> None:
        for call in self._calls.values():
            if call.state is not CallState.READING or call.sample is not None or call.runner is None:
                continue
            core = call.runner.core
            covered = core.covered_offset
            if covered > call.saved_offset:
                after, next_entry, skip = call.progress(covered)
                call.sample = _Sample(covered, core.last_seq, after, next_entry, skip)

    def _hand_over_later(self, call: OwnedCall, ended_seq: int) -> None:
        """The session ended without the call ending (shutdown): once what it published is
        written, save where final results reached, then let another worker take it now."""
        call.state = CallState.HANDING_OVER
        assert call.runner is not None
        covered = call.runner.core.covered_offset
        after, next_entry, skip = call.progress(covered)
        call.sample = _Sample(covered, ended_seq - 1, after, next_entry, skip)
        call.written_seq = max(call.written_seq, ended_seq)  # session_ended itself stays local
        self._wake_writer.set()

    async def _save_progress(self) -> None:
        for call in list(self._calls.values()):
            sample = call.sample
            if sample is None or call.state in (CallState.LOST, CallState.ENDED):
                continue
            if sample.seq > call.written_seq:
                continue  # a final behind `covered` may not be in Redis yet
            trim = next_id(sample.after) if sample.after != call.saved_after else ""
            result = await self._scripts.save(self.consumer, call, sample, trim)
            call.sample = None
            if result == -1:
                self._lose(call, "another worker holds the call")
                continue
            if result == 0 and not call.entry_gone:
                call.entry_gone = True
                log.warning(
                    "the call's entry is pending for no one (did Redis lose its data?); carrying on",
                    extra={"interaction_id": call.interaction_id},
                )
            call.saved_offset, call.saved_after = sample.covered, sample.after
            if call.state is CallState.HANDING_OVER:
                await self._scripts.claim_own(self.consumer, [call.entry_id], idle_ms=self._handback_idle_ms)
                self._forget(call)
                self.counters.calls_handed_over += 1
                log.info(
                    "call handed over",
                    extra={
                        "interaction_id": call.interaction_id,
                        "covered_s": round(call.fmt.seconds(sample.covered), 3),
                    },
                )

    async def _refresh(self) -> None:
        """Keep the claim on every call still served here fresh; notice calls taken away."""
        ids = {c.entry_id: c for c in self._calls.values() if c.state is not CallState.LOST}
        if not ids:
            return
        reply = await self._scripts.claim_own(self.consumer, list(ids), idle_ms=0)
        for entry_id, why in zip(reply[::2], reply[1::2], strict=False):
            call = ids.get(entry_id)
            if call is None:
                continue
            if why == "taken":
                self._lose(call, "another worker claimed the call (this one was unreachable too long)")
            elif not call.entry_gone:
                call.entry_gone = True
                log.warning(
                    "the call's entry is pending for no one (did Redis lose its data?); carrying on",
                    extra={"interaction_id": call.interaction_id},
                )

    def _lose(self, call: OwnedCall, why: str) -> None:
        """Another worker holds the call: end the session here and write nothing more of it.
        The call stays known (as lost) until its session has ended, so its events are dropped."""
        if call.state is CallState.LOST:
            return
        call.state = CallState.LOST
        self.counters.calls_lost += 1
        log.warning(
            "call ownership lost; ending the session here",
            extra={"interaction_id": call.interaction_id, "why": why},
        )
        runner = call.runner
        if runner is None or runner.core.phase is Phase.ENDED:
            self._forget(call)
        elif runner.core.phase is Phase.ACTIVE:
            runner.end(_LOST_REASON)

    def _forget(self, call: OwnedCall) -> None:
        if self._calls.get(call.interaction_id) is call:
            del self._calls[call.interaction_id]
        self._capacity_freed.set()

    async def _final_flush(self) -> None:
        """On shutdown: write what is queued, save progress and hand calls over, bounded."""
        if not self._up.is_set():
            if self._calls:
                log.warning(
                    "redis unreachable at shutdown; other workers take these calls after the claim time",
                    extra={"calls": len(self._calls)},
                )
            return
        try:
            async with asyncio.timeout(FINAL_FLUSH_S):
                await self._flush_events()
                await self._save_progress()
        except (TimeoutError, *REDIS_ERRORS) as exc:
            log.warning(
                "could not finish writing to redis at shutdown",
                extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
            )

    # --- housekeeping -------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Trim asr:calls behind the oldest entry a group still needs; forget dead consumers."""
        client = self.client
        try:
            groups: object = await client.xinfo_groups(CALLS_KEY)
            keep: list[str] = []
            for group in groups if isinstance(groups, list) else []:
                if not isinstance(group, dict):
                    continue
                name = group.get("name")
                last = group.get("last-delivered-id")
                if last is not None:
                    keep.append(next_id(_text(last)))
                summary: object = await client.xpending(CALLS_KEY, _text(name))
                if isinstance(summary, dict) and summary.get("pending") and summary.get("min") is not None:
                    keep.append(_text(summary["min"]))
            if keep:
                await client.xtrim(CALLS_KEY, minid=min(keep, key=_id_key), approximate=True)
            dead_after_ms = max(60_000, round(self._claim_idle_s * 10_000))
            consumers: object = await client.xinfo_consumers(CALLS_KEY, GROUP)
            for consumer in consumers if isinstance(consumers, list) else []:
                if not isinstance(consumer, dict):
                    continue
                name = _text(consumer.get("name"))
                idle = consumer.get("idle")
                if (
                    name != self.consumer
                    and consumer.get("pending") == 0
                    and isinstance(idle, int)
                    and idle > dead_after_ms
                ):
                    await client.xgroup_delconsumer(CALLS_KEY, GROUP, name)
        except REDIS_ERRORS as exc:
            self._link_failed(exc)
        except ResponseError as exc:
            log.warning("housekeeping refused", extra={"error": str(exc)[:200]})


def honour_cancel() -> None:
    """Raise CancelledError if this task was asked to stop. redis-py sends every command with
    `asyncio.wait_for`, which on Python 3.11 loses a cancel that arrives as the send completes
    (fixed in 3.12); the request still shows in `cancelling()`, so every loop of this bus
    checks it each turn, or a worker could never finish shutting down."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _wake_or_timeout(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for `event`, at most `timeout_s` (cheaper than a timeout context per wait)."""
    honour_cancel()
    handle = asyncio.get_running_loop().call_later(timeout_s, event.set)
    try:
        await event.wait()
    finally:
        handle.cancel()


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class _Scripts:
    """The Lua scripts, typed: each returns what its caller needs, parsed."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._start = client.register_script(_START)
        self._write = client.register_script(_WRITE)
        self._save = client.register_script(_SAVE)
        self._claim_own = client.register_script(_CLAIM_OWN)

    async def start(self, iid: str, consumer: str, entry_id: str) -> list[str]:
        raw: object = await self._start(
            keys=[CALLS_KEY, progress_key(iid), transcript_key(iid)], args=[GROUP, consumer, entry_id]
        )
        return [_text(v) for v in raw] if isinstance(raw, list) else []

    async def write_events(
        self, consumer: str, groups: list[list[_Outgoing]], *, retry: bool
    ) -> list[object]:
        pipe = self._client.pipeline(transaction=False)
        for group in groups:
            first = group[0]
            iid = first.interaction_id
            call = first.call
            args: list[str | int] = [
                GROUP,
                consumer,
                call.entry_id if call is not None else "",
                group[-1].finish,
                TRANSCRIPT_TTL_S,
            ]
            for item in group:
                # On a retry the first attempt may have been applied: never restart numbering then.
                args += [item.seq, "1" if item.fresh and not retry else "0", item.data]
            await self._write(
                keys=[transcript_key(iid), CALLS_KEY, progress_key(iid), audio_key(iid)],
                args=args,
                client=pipe,
            )
        results: object = await pipe.execute(raise_on_error=False)
        out = list(results) if isinstance(results, list) else []
        for value in out:
            if isinstance(value, REDIS_ERRORS):
                raise value
        return [v if isinstance(v, Exception) else _int_or(v) for v in out]

    async def save(self, consumer: str, call: OwnedCall, sample: _Sample, trim: str) -> int:
        iid = call.interaction_id
        raw: object = await self._save(
            keys=[CALLS_KEY, progress_key(iid), audio_key(iid)],
            args=[
                GROUP,
                consumer,
                call.entry_id,
                call.mark,
                sample.after,
                sample.next,
                sample.skip,
                sample.covered,
                trim,
            ],
        )
        return _int_or(raw)

    async def claim_own(self, consumer: str, entry_ids: list[str], *, idle_ms: int) -> list[str]:
        raw: object = await self._claim_own(keys=[CALLS_KEY], args=[GROUP, consumer, idle_ms, *entry_ids])
        return [_text(v) for v in raw] if isinstance(raw, list) else []


def _int_or(value: object, default: int = 0) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | str):
        with contextlib.suppress(ValueError):
            return int(value)
    return default


class _BusCollector(Collector):
    def __init__(self, bus: RedisStreamsBus) -> None:
        self._bus = bus

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        bus, c = self._bus, self._bus.counters
        yield GaugeMetricFamily("asr_bus_up", "1 while the bus's Redis answers.", value=int(bus.healthy()))
        yield GaugeMetricFamily(
            "asr_bus_events_queued",
            f"Events waiting for Redis (at most {MAX_QUEUED_EVENTS}).",
            value=len(bus._outbox),
        )
        yield GaugeMetricFamily(
            "asr_bus_calls_owned", "Calls this worker owns on the bus.", value=len(bus._calls)
        )
        counters = {
            "asr_bus_events_written": ("Events written to transcript streams.", c.events_written),
            "asr_bus_events_dropped": (
                "Events dropped: the queue was full, or Redis refused them.",
                c.events_dropped,
            ),
            "asr_bus_calls_finished": ("Calls ended and acknowledged by this worker.", c.calls_finished),
            "asr_bus_calls_handed_over": ("Calls handed to another worker at shutdown.", c.calls_handed_over),
            "asr_bus_calls_lost": (
                "Calls another worker claimed while this one still served them.",
                c.calls_lost,
            ),
            "asr_bus_calls_refused": ("Calls taken but handed back (no room, or a clash).", c.calls_refused),
            "asr_bus_audio_entries": ("Audio entries read.", c.audio_entries),
            "asr_bus_bad_entries": ("Audio entries skipped as malformed.", c.bad_entries),
            "asr_bus_bad_calls": ("Call announcements skipped as malformed or duplicate.", c.bad_calls),
            "asr_bus_outages": ("Times Redis became unreachable.", c.outages),
        }
        for name, (help_text, value) in counters.items():
            yield CounterMetricFamily(name, help_text, value=value)
        taken = CounterMetricFamily(
            "asr_bus_calls_taken", "Calls taken, new or claimed from a dead worker.", labels=["how"]
        )
        taken.add_metric(["new"], c.calls_taken)
        taken.add_metric(["claimed"], c.calls_claimed)
        yield taken


def create(settings: Settings) -> RedisStreamsBus:
    return RedisStreamsBus(settings)
