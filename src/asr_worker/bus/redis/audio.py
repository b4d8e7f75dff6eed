"""Reading calls' audio: one blocking XREAD over every call this worker reads, each from its
own cursor, fed to the call's session in order.

Reads are paced: one starts at most every `ASR_BUS_READ_INTERVAL_MS` while audio flows. A
read that returned at once for every new frame would cost a command, its reply and a pass over
every call per 20 ms frame; paced, each read carries a few frames of every call, and the worker
and Redis spend a fraction of that (`bench/bus.py`). The price is latency: a frame waits in
Redis up to the interval, where on a socket it would wait as long in the session's send buffer
(`ASR_SEND_CHUNK_MS`).

A call is read only while its session takes audio and is not already holding back as much as
it may (`OwnedCall.wants_audio`): otherwise its audio waits in Redis, the stream being the
buffer. A producer that writes nothing for `PRODUCER_SILENT_S` counts as gone, so the
session's grace period ends a call whose producer died without an end entry. The reader
alone changes each call's `cursor` and the session's source (join, feed, leave).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final

from .calls import CallState, CallTable, OwnedCall
from .wire import REDIS_ERRORS, Fields, honour_cancel, parse_frame, streams, wake_or_timeout

if TYPE_CHECKING:
    from .link import RedisLink
    from .metrics import BusCounters

log = logging.getLogger("asr_worker.bus")

AUDIO_BLOCK_MS: Final = 100
AUDIO_ENTRIES_PER_READ: Final = 50  # per call and read: 1 s of 20 ms frames
CLUSTER_IDLE_READ_S: Final = 0.05  # a cluster cannot block on every call's stream at once: poll
PRODUCER_SILENT_S: Final = 2.0  # no audio entry this long: the producer counts as gone (grace applies)


class AudioReader:
    def __init__(
        self,
        link: RedisLink,
        calls: CallTable,
        counters: BusCounters,
        *,
        feed_limit_s: float,
        read_interval_s: float = 0.0,
    ) -> None:
        """`feed_limit_s`: how much audio a session may retain, unsent, before its call's
        audio is left in Redis. `read_interval_s`: the least time from one read's start to
        the next while reads return audio."""
        self._link = link
        self._calls = calls
        self._counters = counters
        self._feed_limit_s = feed_limit_s
        self._read_interval_s = read_interval_s

    async def run(self) -> None:
        link, table = self._link, self._calls
        while True:
            honour_cancel()
            await link.wait_up()
            calls = []
            for call in table:
                if call.wants_audio(call.fmt.bytes_for(self._feed_limit_s)):
                    calls.append(call)
                else:
                    call.cursor.silent_since = None  # not asked for audio, so not silent either
            if not calls:
                table.changed.clear()
                await wake_or_timeout(table.changed, AUDIO_BLOCK_MS / 1000)
                continue
            read_at = time.monotonic()
            try:
                reply = await self._read(calls)
            except REDIS_ERRORS as exc:
                link.failed(exc)
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
            pause_s = read_at + self._read_interval_s - now
            if link.cluster and not heard:
                pause_s = max(pause_s, CLUSTER_IDLE_READ_S)  # no blocking read to wait in
            if pause_s > 0 and (heard or link.cluster):
                await asyncio.sleep(pause_s)

    async def _read(self, calls: list[OwnedCall]) -> object:
        """Each call's audio after its cursor, as an XREAD reply. One server: one XREAD over
        every call, blocking while none has audio. A cluster: one XRANGE per call (a command's
        keys must share a slot), all in one pipeline that redis-py splits by node."""
        client = self._link.client
        if not self._link.cluster:
            cursors: dict[bytes | str | memoryview, int | bytes | str | memoryview] = {
                call.audio_key: call.cursor.read_after for call in calls
            }
            return await client.xread(cursors, count=AUDIO_ENTRIES_PER_READ, block=AUDIO_BLOCK_MS)
        pipe = client.pipeline(transaction=False)
        for call in calls:
            # XRANGE names its key in a fixed place; for XREAD redis-py would ask the server
            # where the keys are (COMMAND GETKEYS), a round trip more per call and read.
            pipe.xrange(call.audio_key, min=f"({call.cursor.read_after}", count=AUDIO_ENTRIES_PER_READ)
        replies: object = await pipe.execute()
        merged: dict[str, object] = {}
        for call, batch in zip(calls, replies if isinstance(replies, list) else [], strict=False):
            if batch:
                merged[call.audio_key] = batch
        return merged

    def _feed(self, call: OwnedCall, entry_id: str, fields: Fields) -> None:
        cursor = call.cursor
        if call.runner is None or call.state is not CallState.READING or cursor.end_seen:
            return
        if not call.active:
            return  # ending (drain): this entry stays for whoever continues the call
        self._counters.audio_entries += 1
        cursor.read_after = entry_id
        frame = parse_frame(fields.get(b"data"), call.fmt)
        start = cursor.offset
        if isinstance(frame, str):
            self._counters.bad_entries += 1
            call.report("bad_entry", f"audio entry {entry_id} skipped: {frame}")
        elif frame.end:
            cursor.end_seen = True
            call.end("end")
        else:
            audio = frame.audio
            if cursor.skip_entry:
                if cursor.skip_entry == entry_id:
                    audio = audio[cursor.skip :]
                else:
                    log.warning(
                        "the audio entry to resume in is gone; resuming at the next one",
                        extra={
                            "interaction_id": call.interaction_id,
                            "expected": cursor.skip_entry,
                            "entry": entry_id,
                        },
                    )
                cursor.skip_entry, cursor.skip = "", 0
            if call.feed(audio):
                cursor.offset += len(audio)
        call.fed.record(entry_id, start, cursor.offset)

    def _producer_presence(self, call: OwnedCall, heard: bool, now: float) -> None:
        """A producer that wrote nothing for a while counts as gone, so the session's grace
        period ends a call whose producer died without an end entry."""
        cursor = call.cursor
        if call.runner is None:
            return
        if heard:
            cursor.silent_since = None
            call.rejoin()
        elif cursor.silent_since is None:
            cursor.silent_since = now
        elif now - cursor.silent_since >= PRODUCER_SILENT_S:
            call.leave()
