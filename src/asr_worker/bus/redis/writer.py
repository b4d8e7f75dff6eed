"""Everything the bus writes of a call: its events, its progress, its claim.

* Events: `publish` queues each event in the bounded outbox and wakes the write loop, which
  writes them in order, each call's run of events in one script call that checks this worker
  still holds the call. Writes are idempotent by seq, so a batch retried after an ambiguous
  failure is not duplicated.
* Progress: every `PROGRESS_INTERVAL_S` the writer notes where final results cover each call
  (`ProgressPoint`), and saves it once every event up to then is written, trimming the call's
  audio stream behind it.
* Ownership: every quarter of the claim time it refreshes the claim on each call it serves,
  and notices calls another worker has taken.
* Hand-over: a session that ends without its call ending (shutdown) leaves its call to the
  next worker once its events and progress are written.
* Documents and webhooks (`share_transcripts`): a call's document events go to its document
  list too, in the same script, and the webhook deliveries an event makes (attached to it when
  it is published) are queued on `asr:webhooks` once it is written, before a call's end is
  acknowledged: a worker that stops in between leaves the entry pending, and whoever is
  handed it next finds the call done and queues its document again.

The writer alone changes a call's `state` and `progress`, and forgets calls that are over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final

from ...core.events import CallEvent, SessionEnded, SessionStarted, Transcript
from ...jsonwire import dumps_event_text
from ...transcripts.document import in_document
from .calls import ABANDONED, CallState, CallTable, ClaimTiming, OwnedCall, PendingProgress
from .deliveries import register_deliveries
from .outbox import Finish, Outbox, Outgoing
from .scripts import NotHeld
from .wire import REDIS_ERRORS, call_tag, honour_cancel, next_id, wake_or_timeout

if TYPE_CHECKING:
    from ...transcripts import Delivery
    from .link import RedisLink
    from .metrics import BusCounters

log = logging.getLogger("asr_worker.bus")

WRITE_BATCH: Final = 256
PROGRESS_INTERVAL_S: Final = 0.5
FINAL_FLUSH_S: Final = 3.0

# A session ended by these reasons did not end the call: the call goes to another worker.
_HANDOVER_REASONS: Final = frozenset({"shutdown", "shutdown_timeout"})
_LOST_REASON: Final = "ownership_lost"


class Writer:
    def __init__(
        self, link: RedisLink, calls: CallTable, counters: BusCounters, timing: ClaimTiming, outbox: Outbox
    ) -> None:
        self._link = link
        self._calls = calls
        self._counters = counters
        self._timing = timing
        self.outbox = outbox
        self._wake = asyncio.Event()
        self._drop_logged = False  # the queue-full error is logged once per outage
        self._write_retry = False  # the last event write failed midway: it may have been applied
        self.document_ttl_s = 0  # documents are kept (share_transcripts) this long; 0: not kept
        self._attached: tuple[CallEvent, tuple[Delivery, ...]] | None = None
        self._unregistered: list[Delivery] = []  # webhooks of written events, to queue

    def link_up(self) -> None:
        """Redis answers (again): write what waited, and log the next overflow anew."""
        self._drop_logged = False
        self._wake.set()

    # --- events in ----------------------------------------------------------------------------

    def attach(self, event: CallEvent, deliveries: tuple[Delivery, ...]) -> None:
        """The webhooks `event` makes, queued once it is written (it is published next)."""
        self._attached = (event, deliveries)

    def publish(self, event: CallEvent) -> None:
        attached, self._attached = self._attached, None
        deliveries = attached[1] if attached is not None and attached[0] is event else ()
        iid = call_tag(event.tenant_id, event.interaction_id)
        call = self._calls.get(iid)
        if call is not None and call.state is CallState.LOST:
            if isinstance(event, SessionEnded):
                self._calls.forget(call)
            return  # another worker owns the call now: nothing of this session is written
        seq_no = event.seq
        finish = Finish.NONE
        if isinstance(event, SessionEnded):
            self._calls.freed.set()
            finish = Finish.EXPIRE
            if call is not None and call.runner is not None:
                if event.reason in _HANDOVER_REASONS:
                    self._hand_over_later(call, seq_no)
                    return
                call.state = CallState.ENDED
                finish = Finish.ABANDON if event.reason == ABANDONED else Finish.ACK
        fresh = isinstance(event, SessionStarted) and not event.resumed
        interim = isinstance(event, Transcript) and not event.is_final
        document = bool(self.document_ttl_s) and in_document(event)
        outgoing = Outgoing(
            iid, seq_no, fresh, dumps_event_text(event), call, finish, interim, document, deliveries
        )
        outbox = self.outbox
        if len(outbox) >= outbox.max_events and not self._drop_logged:
            self._drop_logged = True
            log.error("bus queue full; dropping events until redis answers", extra={"queued": len(outbox)})
        dropped = outbox.put(outgoing)
        if dropped is not None:
            self._counters.events_dropped += 1
            if dropped.call is not None:
                progress = dropped.call.progress
                progress.written_seq = max(progress.written_seq, dropped.seq)
        self._wake.set()

    def _hand_over_later(self, call: OwnedCall, ended_seq: int) -> None:
        """The session ended without the call ending (shutdown): once what it published is
        written, save where final results reached, then let another worker take it now."""
        call.state = CallState.HANDING_OVER
        assert call.runner is not None
        point = call.fed.point(call.runner.status.covered_offset)
        progress = call.progress
        progress.pending = PendingProgress(point, ended_seq - 1)
        progress.written_seq = max(progress.written_seq, ended_seq)  # session_ended itself stays local
        self._wake.set()

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        link = self._link
        next_refresh = next_progress = time.monotonic()
        while True:
            honour_cancel()
            now = time.monotonic()
            wait_s = max(0.0, min(next_refresh, next_progress) - now)
            if not len(self.outbox) and wait_s > 0:
                self._wake.clear()
                await wake_or_timeout(self._wake, wait_s)
            await link.wait_up()
            try:
                await self._flush_events()
                await self._register()
                now = time.monotonic()
                if now >= next_progress:
                    next_progress = now + PROGRESS_INTERVAL_S
                    self._sample_progress()
                await self._save_progress()
                if now >= next_refresh:
                    next_refresh = now + self._timing.refresh_interval_s
                    await self._refresh()
            except REDIS_ERRORS as exc:
                link.failed(exc)

    async def final_flush(self) -> None:
        """On shutdown: write what is queued, save progress and hand calls over, bounded."""
        if not self._link.up:
            if len(self._calls):
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

    # --- events out ---------------------------------------------------------------------------

    async def _flush_events(self) -> None:
        link, outbox = self._link, self.outbox
        while len(outbox) and link.up:
            batch = outbox.head(WRITE_BATCH)
            groups: list[list[Outgoing]] = []
            for item in batch:
                if groups and groups[-1][0].tag == item.tag and not groups[-1][-1].finish:
                    groups[-1].append(item)
                else:
                    groups.append([item])
            try:
                results = await link.scripts.write_events(
                    link.consumer, groups, retry=self._write_retry, document_ttl_s=self.document_ttl_s
                )
            except REDIS_ERRORS:
                self._write_retry = True
                raise
            self._write_retry = False
            outbox.pop(len(batch))
            ended: list[str] = []
            for group, result in zip(groups, results, strict=True):
                call = group[0].call
                if self._written(group, result) and call is not None:
                    ended.append(call.entry_id)
                if not isinstance(result, Exception) and result != -1:
                    self._unregistered += [d for item in group for d in item.deliveries]
            # The ends are written: queue their webhooks, then acknowledge their entries (a
            # worker that stops before this leaves them pending; whoever is handed one next
            # finds the call done, and queues its document again).
            await self._register()
            await link.scripts.acknowledge(ended)

    async def _register(self) -> None:
        if self._unregistered:
            await register_deliveries(self._link.client, self._unregistered)
            self._unregistered = []

    def _written(self, group: list[Outgoing], result: int | Exception) -> bool:
        """Note what Redis did with a group; True if it wrote the call's end (the entry is
        to be acknowledged)."""
        call = group[0].call
        if isinstance(result, Exception):
            log.error(
                "redis refused a batch of events; dropped",
                extra={"call": group[0].tag, "error": str(result)[:300]},
            )
            self._counters.events_dropped += len(group)
            return False
        if result == -1:
            if call is not None:
                self._lose(call, "another worker holds the call")
            return False
        self._counters.events_written += len(group)
        if call is None:
            return False
        progress = call.progress
        progress.written_seq = max(progress.written_seq, *(item.seq for item in group))
        finish = group[-1].finish
        if finish in (Finish.ACK, Finish.ABANDON):
            self._calls.forget(call)
        if finish is Finish.ACK:  # an abandoned call is counted (and logged) when it is given up
            self._counters.calls_finished += 1
            log.info("call finished", extra={"interaction_id": call.interaction_id, "entry": call.entry_id})
        return finish in (Finish.ACK, Finish.ABANDON)

    # --- progress and hand-over ---------------------------------------------------------------

    def _sample_progress(self) -> None:
        for call in self._calls:
            progress = call.progress
            if call.state is not CallState.READING or progress.pending is not None or call.runner is None:
                continue
            status = call.runner.status
            covered = status.covered_offset
            if covered > progress.saved_offset:
                progress.pending = PendingProgress(call.fed.point(covered), status.last_seq)

    async def _save_progress(self) -> None:
        link = self._link
        for call in self._calls:
            progress = call.progress
            pending = progress.pending
            if pending is None or call.state in (CallState.LOST, CallState.ENDED):
                continue
            if pending.seq > progress.written_seq:
                continue  # a final behind `covered` may not be in Redis yet
            point = pending.point
            trim = next_id(point.after) if point.after != progress.saved_after else ""
            result = await link.scripts.save(link.consumer, call, point, trim)
            progress.pending = None
            if result == -1:
                self._lose(call, "another worker holds the call")
                continue
            if result == 0:
                self._entry_gone(call)
            progress.saved_offset, progress.saved_after = point.covered, point.after
            if call.state is CallState.HANDING_OVER:
                await link.scripts.hand_back(
                    link.consumer, call.tag, call.entry_id, idle_ms=self._timing.handback_idle_ms
                )
                self._calls.forget(call)
                self._counters.calls_handed_over += 1
                log.info(
                    "call handed over",
                    extra={
                        "interaction_id": call.interaction_id,
                        "covered_s": round(call.fmt.seconds(point.covered), 3),
                    },
                )

    # --- ownership ----------------------------------------------------------------------------

    async def _refresh(self) -> None:
        """Keep the claim on every call still served here fresh; notice calls taken away."""
        ids = {c.entry_id: c for c in self._calls if c.state is not CallState.LOST}
        if not ids:
            return
        link = self._link
        not_held = await link.scripts.refresh(link.consumer, [(c.tag, e) for e, c in ids.items()])
        for entry_id, why in not_held.items():
            call = ids.get(entry_id)
            if call is None:
                continue
            if why is NotHeld.TAKEN:
                self._lose(call, "another worker claimed the call (this one was unreachable too long)")
            else:
                self._entry_gone(call)

    def _entry_gone(self, call: OwnedCall) -> None:
        if not call.progress.entry_gone:
            call.progress.entry_gone = True
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
        self._counters.calls_lost += 1
        log.warning(
            "call ownership lost; ending the session here",
            extra={"interaction_id": call.interaction_id, "why": why},
        )
        if call.session_over:
            self._calls.forget(call)
        elif call.active:
            call.end(_LOST_REASON)
