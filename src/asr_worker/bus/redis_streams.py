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

A call whose holders keep dying (its audio may be what kills them) is not passed on forever:
the start script counts each takeover that was not a deliberate hand-over, and past
`ASR_MAX_TAKEOVERS` the worker ends the call unread (`call_abandoned`) and acknowledges it.

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
import contextlib
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
from redis.exceptions import ResponseError

from .. import logs
from ..core.audio import AudioFormat
from ..core.events import CallEvent, Refusal, SessionEnded, SessionStarted, Transcript
from ..core.session import Link, Phase, Resume
from ..jsonwire import dumps_event_text
from ..runtime.manager import SessionRefused
from .redis_wire import (
    CALLS_KEY,
    CLAIM_OWN_SCRIPT,
    GROUP,
    HAND_BACK_SCRIPT,
    REDIS_ERRORS,
    SAVE_SCRIPT,
    START_SCRIPT,
    WRITE_SCRIPT,
    Fields,
    audio_key,
    entries,
    event_seq,
    final_end,
    honour_cancel,
    id_key,
    int_or,
    json_object,
    next_id,
    parse_announcement,
    parse_frame,
    progress_key,
    redis_client,
    streams,
    text,
    to_int,
    transcript_key,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..config import Settings
    from ..runtime.manager import SessionManager
    from ..runtime.runner import SessionRunner

log = logging.getLogger("asr_worker.bus")

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
DEAD_CONSUMER_MIN_S = 60.0  # a consumer with nothing pending, idle this long (or 10 claim times), is gone
FINAL_FLUSH_S: Final = 3.0
SOCKET_TIMEOUT_S: Final = 5.0
BACKOFF_INITIAL_S: Final = 0.1
BACKOFF_MAX_S: Final = 2.0

# A session ended by these reasons did not end the call: the call goes to another worker.
_HANDOVER_REASONS: Final = frozenset({"shutdown", "shutdown_timeout"})
_LOST_REASON: Final = "ownership_lost"
_ABANDONED: Final = "call_abandoned"


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
    # 'ack' (the call is over: acknowledge and clean up), 'abandon' (the same, but its audio
    # is kept a while for whoever investigates), 'expire', or ''
    finish: str
    interim: bool = False  # an interim transcript: the first to go when the queue is full


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
    calls_abandoned: int = 0
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
        self._max_takeovers = settings.max_takeovers
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

    def publish(self, event: CallEvent) -> None:
        iid = event.interaction_id
        call = self._calls.get(iid)
        if call is not None and call.state is CallState.LOST:
            if isinstance(event, SessionEnded):
                self._forget(call)
            return  # another worker owns the call now: nothing of this session is written
        seq_no = event.seq
        finish = ""
        if isinstance(event, SessionEnded):
            self._capacity_freed.set()
            finish = "expire"
            if call is not None and call.runner is not None:
                if event.reason in _HANDOVER_REASONS:
                    self._hand_over_later(call, seq_no)
                    return
                call.state = CallState.ENDED
                finish = "abandon" if event.reason == _ABANDONED else "ack"
        fresh = isinstance(event, SessionStarted) and not event.resumed
        interim = isinstance(event, Transcript) and not event.is_final
        data = dumps_event_text(event)
        outgoing = _Outgoing(iid, seq_no, fresh, data, call, finish, interim)
        if len(self._outbox) >= MAX_QUEUED_EVENTS:
            self._drop_one(outgoing)
        else:
            self._outbox.append(outgoing)
        self._wake_writer.set()

    def _drop_one(self, incoming: _Outgoing) -> None:
        """The queue is full (Redis away too long). An incoming interim is dropped (the final
        that follows says more), else the oldest queued event that does not end a call (an
        end must reach Redis, or the call is never acknowledged); counted, logged once per
        outage."""
        if not self._drop_logged:
            self._drop_logged = True
            log.error(
                "bus queue full; dropping events until redis answers", extra={"queued": len(self._outbox)}
            )
        victim: _Outgoing | None = incoming
        if not incoming.interim:
            victim = next((item for item in self._outbox if not item.finish), None)
            if victim is not None:
                self._outbox.remove(victim)
            self._outbox.append(incoming)
        if victim is None:
            return  # the queue holds nothing but call ends: keep them all
        self.counters.events_dropped += 1
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
        self._client = redis_client(self._url, name=self.consumer, socket_timeout_s=SOCKET_TIMEOUT_S)
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
                for _, entries in streams(reply):
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
                    cursor = text(reply[0])
                    for entry_id, fields in entries(reply[1]):
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
                error = Refusal("bad_call", problem, iid)
                await client.xadd(transcript_key(iid), {"data": dumps_event_text(error)})
                await client.expire(transcript_key(iid), TRANSCRIPT_TTL_S)
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
        reply = await self._scripts.start(iid, self.consumer, entry_id, self._max_takeovers)
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
        if verdict in ("resume", "poison") and len(reply) >= 6:
            resume = await self._resume_point(
                call, after=reply[2], next_entry=reply[3], skip=to_int(reply[4]), offset=to_int(reply[5])
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
            await self._scripts.hand_back(self.consumer, iid, entry_id, idle_ms=self._handback_idle_ms)
            return
        call.runner = runner
        if verdict == "poison":
            self._abandon(call, runner, takeovers=to_int(reply[6]) if len(reply) > 6 else 0)
            return
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

    def _abandon(self, call: OwnedCall, runner: SessionRunner, takeovers: int) -> None:
        """Workers kept dying while they held this call (its audio may be what kills them):
        end it here, before any of its audio is read, so it cannot stop another. Its
        `session_ended` acknowledges the entry, as any end does; its audio stays a day, for
        whoever looks into what stopped the workers (and so that a producer still writing it
        adds to a stream that expires)."""
        self.counters.calls_abandoned += 1
        covered_s = round(call.fmt.seconds(call.offset), 3)
        log.error(
            "call abandoned: workers stopped while holding it",
            extra={"interaction_id": call.interaction_id, "takeovers": takeovers, "covered_s": covered_s},
        )
        runner.abandon(
            _ABANDONED,
            f"{takeovers} workers stopped without handing this call over (ASR_MAX_TAKEOVERS="
            f"{self._max_takeovers}); it is given up so that it cannot stop more. Final results "
            f"cover its first {covered_s:g} s.",
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
            page = entries(
                await self.client.xrevrange(transcript_key(call.interaction_id), upper, lower, count=200)
            )
            if not page:
                break
            for entry_id, fields in page:
                scanned += 1
                upper = f"({entry_id}"
                event = json_object(fields.get(b"data"))
                if event is None:
                    continue
                seq = event_seq(event)
                if last_seq is None and seq is not None:
                    last_seq = seq
                final = final_end(event, fmt.channels)
                if final is not None and finalized[final[0]] is None:
                    finalized[final[0]] = final[1]
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
            cursors: dict[bytes | str | memoryview, int | bytes | str | memoryview] = {
                call.audio_key: call.read_after for call in calls
            }
            try:
                reply: object = await self.client.xread(
                    cursors, count=AUDIO_ENTRIES_PER_READ, block=AUDIO_BLOCK_MS
                )
            except REDIS_ERRORS as exc:
                self._link_failed(exc)
                continue
            by_key = {call.audio_key: call for call in calls}
            heard: set[str] = set()
            for key, batch in streams(reply):
                reader = by_key.get(key)
                if reader is None:
                    continue
                heard.add(key)
                for entry_id, fields in batch:
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
        finish = group[-1].finish
        if finish in ("ack", "abandon"):
            self._forget(call)
        if finish == "ack":  # an abandoned call is counted (and logged) when it is given up
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
                await self._scripts.hand_back(
                    self.consumer, call.interaction_id, call.entry_id, idle_ms=self._handback_idle_ms
                )
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
                    keep.append(next_id(text(last)))
                summary: object = await client.xpending(CALLS_KEY, text(name))
                if isinstance(summary, dict) and summary.get("pending") and summary.get("min") is not None:
                    keep.append(text(summary["min"]))
            if keep:
                await client.xtrim(CALLS_KEY, minid=min(keep, key=id_key), approximate=False)
            dead_after_ms = round(max(DEAD_CONSUMER_MIN_S, self._claim_idle_s * 10) * 1000)
            consumers: object = await client.xinfo_consumers(CALLS_KEY, GROUP)
            for consumer in consumers if isinstance(consumers, list) else []:
                if not isinstance(consumer, dict):
                    continue
                name = text(consumer.get("name"))
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


async def _wake_or_timeout(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for `event`, at most `timeout_s` (cheaper than a timeout context per wait)."""
    honour_cancel()
    handle = asyncio.get_running_loop().call_later(timeout_s, event.set)
    try:
        await event.wait()
    finally:
        handle.cancel()


class _Scripts:
    """The Lua scripts, typed: each returns what its caller needs, parsed."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._start = client.register_script(START_SCRIPT)
        self._write = client.register_script(WRITE_SCRIPT)
        self._save = client.register_script(SAVE_SCRIPT)
        self._claim_own = client.register_script(CLAIM_OWN_SCRIPT)
        self._hand_back = client.register_script(HAND_BACK_SCRIPT)

    async def start(self, iid: str, consumer: str, entry_id: str, max_takeovers: int) -> list[str]:
        raw: object = await self._start(
            keys=[CALLS_KEY, progress_key(iid), transcript_key(iid)],
            args=[GROUP, consumer, entry_id, max_takeovers],
        )
        return [text(v) for v in raw] if isinstance(raw, list) else []

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
        return [v if isinstance(v, Exception) else int_or(v) for v in out]

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
        return int_or(raw)

    async def hand_back(self, consumer: str, iid: str, entry_id: str, *, idle_ms: int) -> int:
        raw: object = await self._hand_back(
            keys=[CALLS_KEY, progress_key(iid)], args=[GROUP, consumer, entry_id, idle_ms]
        )
        return int_or(raw)

    async def claim_own(self, consumer: str, entry_ids: list[str], *, idle_ms: int) -> list[str]:
        raw: object = await self._claim_own(keys=[CALLS_KEY], args=[GROUP, consumer, idle_ms, *entry_ids])
        return [text(v) for v in raw] if isinstance(raw, list) else []


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
            "asr_bus_calls_abandoned": (
                "Calls given up because more than ASR_MAX_TAKEOVERS workers died holding them.",
                c.calls_abandoned,
            ),
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
