"""Taking calls: new ones from `asr:calls` (XREADGROUP), and calls whose owner stopped
refreshing them, i.e. died (XAUTOCLAIM), only while this worker has room for them.

Taking a call runs the start script, which decides in Redis: a new call, one to resume where
its progress hash says (another worker began it), a duplicate announcement, or one whose
holders kept dying (`ASR_MAX_TAKEOVERS`), which is ended unread. Intake builds the `OwnedCall`
whole (a resumed call's cursor and progress set from Redis) before any other loop sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final

from redis.exceptions import ResponseError

from ...core.events import Refusal
from ...core.ids import CallKey
from ...core.session_types import Resume
from ...errors import SessionRefused
from ...jsonwire import dumps_event_text
from .calls import (
    ABANDONED,
    AudioCursor,
    CallState,
    CallTable,
    ClaimTiming,
    FedEntries,
    OwnedCall,
    SavedProgress,
)
from .deliveries import done_deliveries, register_deliveries
from .scripts import Start, Verdict
from .wire import (
    CALLS_KEY,
    GROUP,
    REDIS_ERRORS,
    TRANSCRIPT_TTL_S,
    Announcement,
    Fields,
    entries,
    event_seq,
    final_end,
    honour_cancel,
    json_object,
    parse_announcement,
    streams,
    text,
    transcript_key,
    wake_or_timeout,
)

if TYPE_CHECKING:
    from ...runtime.manager import SessionManager
    from ...transcripts import WebhookPlan
    from .link import RedisLink
    from .metrics import BusCounters

log = logging.getLogger("asr_worker.bus")

INTAKE_BLOCK_MS: Final = 500
CLAIM_BATCH: Final = 10
TAIL_SCAN_LIMIT: Final = 2_000


class Intake:
    def __init__(
        self,
        link: RedisLink,
        calls: CallTable,
        counters: BusCounters,
        timing: ClaimTiming,
        *,
        max_takeovers: int,
        cluster: bool = False,
    ) -> None:
        self._link = link
        self._cluster = cluster
        self._calls = calls
        self._counters = counters
        self._timing = timing
        self._max_takeovers = max_takeovers
        self._manager: SessionManager | None = None
        self._reserved = 0  # room the two loops hold for calls they are asking Redis for
        self._claims_allowed_at = 0.0
        self.plan: WebhookPlan | None = None  # who gets a call's webhooks (share_transcripts)

    def hold_claims(self) -> None:
        """Redis is back after an outage: live owners get a refresh in before this worker
        claims anything idle (after an outage every entry looks idle, though its owner may be
        alive and reconnecting too)."""
        self._claims_allowed_at = time.monotonic() + self._timing.refresh_interval_s * 2

    @property
    def manager(self) -> SessionManager:
        assert self._manager is not None, "intake is not running"
        return self._manager

    def _capacity(self) -> int:
        manager = self.manager
        if not manager.accepting:
            return 0
        return manager.max_sessions - len(manager.sessions) - self._reserved

    async def _wait_for_capacity(self) -> None:
        self._calls.freed.clear()
        await wake_or_timeout(self._calls.freed, 0.5)  # other sources' sessions end unannounced

    async def run(self, manager: SessionManager) -> None:
        """Both ways in, until cancelled."""
        self._manager = manager
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._new_calls(), name="bus:intake")
            tg.create_task(self._claims(), name="bus:claim")

    async def _new_calls(self) -> None:
        """New calls, one at a time, only while this worker has room for another."""
        link = self._link
        while True:
            honour_cancel()
            await link.wait_up()
            if self._capacity() <= 0:
                await self._wait_for_capacity()
                continue
            self._reserved += 1
            try:
                reply: object = await link.client.xreadgroup(
                    GROUP, link.consumer, {CALLS_KEY: ">"}, count=1, block=INTAKE_BLOCK_MS
                )
                for _, batch in streams(reply):
                    for entry_id, fields in batch:
                        await self._take(entry_id, fields, claimed=False)
            except REDIS_ERRORS as exc:
                link.failed(exc)
            except ResponseError as exc:
                await link.response_error(exc)
            finally:
                self._reserved -= 1

    async def _claims(self) -> None:
        """Calls whose owner stopped refreshing them (it died)."""
        link = self._link
        cursor = "0-0"
        while True:
            honour_cancel()
            await asyncio.sleep(self._timing.claim_scan_interval_s)
            await link.wait_up()
            room = min(self._capacity(), CLAIM_BATCH)
            if room <= 0 or time.monotonic() < self._claims_allowed_at:
                continue
            self._reserved += room
            try:
                reply: object = await link.client.xautoclaim(
                    CALLS_KEY, GROUP, link.consumer, self._timing.claim_min_idle_ms, cursor, count=room
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
                link.failed(exc)
            except ResponseError as exc:
                await link.response_error(exc)
            finally:
                self._reserved -= room

    async def _take(self, entry_id: str, fields: Fields, *, claimed: bool) -> None:
        """Start (or resume) the call an entry of asr:calls announces."""
        announcement, readable_iid, problem = parse_announcement(fields.get(b"data"))
        if announcement is None:
            await self._skip_bad(entry_id, readable_iid, problem)
            return
        iid, tag = announcement.interaction_id, announcement.tag  # its id, and its name in Redis keys
        if await self._clashes(entry_id, announcement):
            return
        link = self._link
        client, scripts, consumer = link.client, link.scripts, link.consumer
        handback_idle_ms = self._timing.handback_idle_ms
        start = await scripts.start(tag, consumer, entry_id, self._max_takeovers)
        if start.verdict is Verdict.OTHER:
            # The call's hash belongs to another entry announcing the same id: a second
            # announcement of a live call if someone holds that entry, else a new call reusing
            # an id whose last call's worker died before its end was written.
            if await scripts.holder(start.live_entry) is None:
                start = await scripts.start(
                    tag, consumer, entry_id, self._max_takeovers, replaces=start.live_entry
                )
            else:
                start = Start(Verdict.DUPLICATE, live_entry=start.live_entry)
        if start.verdict is Verdict.DONE:
            log.info(
                "a call whose end was written is acknowledged",
                extra={"interaction_id": iid, "entry": entry_id},
            )
            if self.plan is not None:  # its worker may have stopped before queueing them
                await register_deliveries(client, done_deliveries(self.plan, announcement))
            await scripts.acknowledge([entry_id])
            return
        if start.verdict in (Verdict.DUPLICATE, Verdict.OTHER):
            self._counters.bad_calls += 1
            log.warning(
                "duplicate announcement of a live call; acknowledged",
                extra={"interaction_id": iid, "entry": entry_id, "live_entry": start.live_entry},
            )
            await client.xack(CALLS_KEY, GROUP, entry_id)
            return
        # A claimed entry is the announcement itself, read again: a call continued here keeps
        # the keyterms it was announced with.
        call = OwnedCall(
            iid,
            announcement.tenant_id,
            announcement.fmt,
            entry_id,
            start.mark,
            cluster=self._cluster,
            options=announcement.options,
        )
        resume: Resume | None = None
        if start.verdict in (Verdict.RESUME, Verdict.POISON):
            resume = await self._resume(call, start)
        # Known before the session opens: the session's first events must find their call.
        self._calls.add(call)
        try:
            call.open(self.manager, resume)
        except (SessionRefused, ValueError) as exc:
            self._calls.forget(call)
            self._counters.calls_refused += 1
            log.info(
                "call refused here; handing it back", extra={"interaction_id": iid, "reason": str(exc)[:200]}
            )
            await scripts.hand_back(consumer, tag, entry_id, idle_ms=handback_idle_ms)
            return
        if start.verdict is Verdict.POISON:
            self._abandon(call, takeovers=start.takeovers)
            return
        if claimed:
            self._counters.calls_claimed += 1
        else:
            self._counters.calls_taken += 1
        self._calls.changed.set()
        log.info(
            "call taken",
            extra={
                "interaction_id": iid,
                "entry": entry_id,
                "how": "claimed" if claimed else "new",
                "resumed_at_s": None if resume is None else round(announcement.fmt.seconds(resume.offset), 3),
            },
        )

    async def _skip_bad(self, entry_id: str, tag: str | None, problem: str) -> None:
        """An announcement no call can start from: acknowledged, and said on the call's
        transcript if its id is readable."""
        client = self._link.client
        self._counters.bad_calls += 1
        log.warning(
            "bad call announcement; acknowledged and skipped", extra={"entry": entry_id, "problem": problem}
        )
        if tag is not None:
            error = Refusal("bad_call", problem, tag.rpartition("/")[2])  # the id, without its tenant
            key = transcript_key(tag, cluster=self._cluster)
            await client.xadd(key, {"data": dumps_event_text(error)})
            await client.expire(key, TRANSCRIPT_TTL_S)
        await client.xack(CALLS_KEY, GROUP, entry_id)

    async def _clashes(self, entry_id: str, announcement: Announcement) -> bool:
        """The call already has a session here: a second announcement of a call this worker
        owns is acknowledged; a call another source serves here, or one lost that still
        winds down here, is handed back for another worker (or a later scan) to take."""
        link = self._link
        iid = announcement.interaction_id
        known = self._calls.get(announcement.tag)
        if known is None:
            if self.manager.get(CallKey(announcement.tenant_id, iid)) is None:
                return False
            log.warning(
                "a session for this call already runs here from another source; handing the entry back",
                extra={"interaction_id": iid},
            )
        elif known.state is not CallState.LOST:
            self._counters.bad_calls += 1
            log.warning(
                "second announcement of a call this worker owns; acknowledged",
                extra={"interaction_id": iid, "entry": entry_id},
            )
            await link.client.xack(CALLS_KEY, GROUP, entry_id)
            return True
        # else lost: its session here is still winding down
        await link.scripts.release(link.consumer, [entry_id], idle_ms=self._timing.handback_idle_ms)
        return True

    def _abandon(self, call: OwnedCall, takeovers: int) -> None:
        """Workers kept dying while they held this call (its audio may be what kills them):
        end it here, before any of its audio is read, so it cannot stop another. Its
        `session_ended` acknowledges the entry, as any end does; its audio stays a day, for
        whoever looks into what stopped the workers (and so that a producer still writing it
        adds to a stream that expires)."""
        self._counters.calls_abandoned += 1
        covered_s = round(call.fmt.seconds(call.cursor.offset), 3)
        log.error(
            "call abandoned: workers stopped while holding it",
            extra={"interaction_id": call.interaction_id, "takeovers": takeovers, "covered_s": covered_s},
        )
        call.abandon(
            ABANDONED,
            f"{takeovers} workers stopped without handing this call over (ASR_MAX_TAKEOVERS="
            f"{self._max_takeovers}); it is given up so that it cannot stop more. Final results "
            f"cover its first {covered_s:g} s.",
        )

    async def _resume(self, call: OwnedCall, start: Start) -> Resume | None:
        """From the progress hash and the transcript's tail: where the call continues. Sets
        the call's cursor and progress to that point (the call is not shared yet)."""
        fmt, after = call.fmt, start.after
        last_seq, finalized = await self._transcript_tail(call.tag, call.mark, fmt.channels)
        if last_seq is None and start.offset == 0:
            return None  # nothing of this call was published: it starts afresh
        offset = start.offset - start.offset % fmt.frame_bytes
        call.cursor = AudioCursor(read_after=after, offset=offset, skip_entry=start.next, skip=start.skip)
        call.progress = SavedProgress(saved_offset=offset, saved_after=after, written_seq=last_seq or 0)
        call.fed = FedEntries(after)
        return Resume(offset=offset, seq=last_seq or 0, finalized_s=tuple(f or 0.0 for f in finalized))

    async def _transcript_tail(
        self, tag: str, mark: str, channels: int
    ) -> tuple[int | None, list[float | None]]:
        """The last seq published for the call (since `mark`), and where each channel's last
        final ended, read back from the newest end of its transcript."""
        last_seq: int | None = None
        finalized: list[float | None] = [None] * channels
        upper = "+"
        lower = "-" if mark == "0-0" else f"({mark}"
        scanned = 0
        while scanned < TAIL_SCAN_LIMIT and (last_seq is None or None in finalized):
            key = transcript_key(tag, cluster=self._cluster)
            page = entries(await self._link.client.xrevrange(key, upper, lower, count=200))
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
                final = final_end(event, channels)
                if final is not None and finalized[final[0]] is None:
                    finalized[final[0]] = final[1]
        return last_seq, finalized
