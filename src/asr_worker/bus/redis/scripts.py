"""The Lua scripts of the Redis Streams bus, and `Scripts`, their typed callers.

Who serves a call is written in the call's own progress hash (`asr:progress:{ID}`): `call`,
the entry of `asr:calls` that announced it, and `owner`, the worker serving it. Every script
that writes a call's transcript or progress first checks, in the same step, that this worker
is still its owner, so a worker that lost a call can never interleave a write with the call's
new owner. The scripts touch only the call's own keys, which on a Redis Cluster share one slot
(their hash tag), so they stay atomic there too.

`asr:calls` is the queue and the liveness signal: a worker takes a call from the consumer group
(XREADGROUP, or XAUTOCLAIM once its holder stopped refreshing it) and then makes itself the
owner with the start script; it refreshes its entries while the hash names it, and
acknowledges an entry after its end is written. Those stream commands are separate from the
scripts (nothing atomic spans `asr:calls` and a call's keys on a cluster); where they can
interleave with another worker's, the hash decides (see `Scripts.refresh`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, cast

from redis.exceptions import NoScriptError

from .wire import (
    CALLS_KEY,
    GROUP,
    REDIS_ERRORS,
    TRANSCRIPT_TTL_S,
    RedisClient,
    audio_key,
    document_key,
    int_or,
    progress_key,
    text,
    to_int,
    transcript_key,
)

if TYPE_CHECKING:
    from .calls import OwnedCall, ProgressPoint
    from .outbox import Outgoing

# KEYS: asr:progress:{ID}, transcript.{ID}; ARGV: consumer, call entry id, most takeovers, the
# entry this one may replace ('' for none). This worker was handed the entry: it becomes the
# call's owner. A call that another worker began is resumed; if that worker stopped without
# handing it over (`handed`, set by HAND_BACK_SCRIPT), that is one more takeover, and past the
# most the call is 'poison': its audio has stopped every worker that held it. A call whose end
# is written ('ended') is 'done': only its acknowledgement is missing. A hash that belongs to
# another, live entry of the same call id is 'other': the caller finds out whether anyone
# still holds that entry, and if not starts again with it as ARGV[4].
START_SCRIPT = """
local h = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
if h['call'] and h['call'] ~= ARGV[2] then
  if h['ended'] ~= '1' and h['call'] ~= ARGV[4] then return {'other', h['call']} end
  redis.call('DEL', KEYS[1])
  h = {}
end
if h['call'] == ARGV[2] then
  if h['ended'] == '1' then return {'done'} end
  local takeovers = tonumber(h['takeovers'] or '0') or 0
  if h['handed'] == '1' then
    redis.call('HDEL', KEYS[1], 'handed')
  else
    takeovers = takeovers + 1
    redis.call('HSET', KEYS[1], 'takeovers', takeovers)
  end
  redis.call('HSET', KEYS[1], 'owner', ARGV[1])
  local verdict = 'resume'
  if takeovers > tonumber(ARGV[3]) then verdict = 'poison' end
  return {verdict, h['mark'] or '0-0', h['after'] or '0-0', h['next'] or '', h['skip'] or '0',
          h['offset'] or '0', tostring(takeovers)}
end
local mark = '0-0'
local tail = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #tail > 0 then mark = tail[1][1] end
redis.call('HSET', KEYS[1], 'call', ARGV[2], 'owner', ARGV[1], 'mark', mark, 'after', '0-0',
           'next', '', 'skip', '0', 'offset', '0')
return {'new', mark}
"""

# Whether ARGV[1] (consumer) owns the call announced by ARGV[2] (entry) per hash KEYS[n]:
# true, false, or nil when the hash is gone (Redis lost its data: carry on).
OWNS = """
local function owns(key, consumer, entry)
  local held = redis.call('HMGET', key, 'call', 'owner')
  if not held[1] then return nil end
  return held[1] == entry and held[2] == consumer
end
"""

# KEYS: transcript.{ID}, asr:progress:{ID}, asr:audio:{ID}, asr:document:{ID}
# ARGV: consumer, call entry id or '', finish ('ack', 'abandon', 'expire' or ''), ttl, the
# document's ttl ('0': no document is kept), then (seq, fresh, document, json) per event (seq
# -1: an event without one, always written; document '1': it is one of the call's document
# events, which go to the document list too). Returns the last seq in the transcript, or -1 if
# another worker owns the call. Events whose seq is not above the last written one were written
# already (a retried batch); a fresh session_started restarts the numbering (a new call with an
# old id), and its document. The last seq is kept in the call's hash
# (`seq`), read back from the transcript's newest event only where the hash has none (events
# of a call this bus does not own, or a hash Redis lost). An end ('ack', 'abandon') marks the
# hash 'ended' and lets it expire: the caller then acknowledges the entry, and a worker handed
# the entry before that acknowledgement landed finds the call done.
WRITE_SCRIPT = (
    OWNS
    + """
if ARGV[2] ~= '' and owns(KEYS[2], ARGV[1], ARGV[2]) == false then return -1 end
local owned = ARGV[2] ~= ''
local last = owned and tonumber(redis.call('HGET', KEYS[2], 'seq') or '')
if not last then
  last = 0
  local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #tail > 0 then
    local ok, ev = pcall(cjson.decode, tail[1][2][2])
    if ok and type(ev) == 'table' and type(ev['seq']) == 'number' then last = ev['seq'] end
  end
end
local documented = 0
for i = 6, #ARGV, 4 do
  local seq = tonumber(ARGV[i])
  if ARGV[i + 1] == '1' then
    last = seq - 1
    if ARGV[5] ~= '0' then redis.call('DEL', KEYS[4]) end
  end
  if seq < 0 or seq > last then
    redis.call('XADD', KEYS[1], '*', 'data', ARGV[i + 3])
    if ARGV[i + 2] == '1' then
      redis.call('RPUSH', KEYS[4], ARGV[i + 3])
      documented = documented + 1
    end
    if seq >= 0 then last = seq end
  end
end
if documented > 0 then redis.call('EXPIRE', KEYS[4], ARGV[5]) end
if owned and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'seq', last) end
if ARGV[3] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  if ARGV[3] == 'ack' or ARGV[3] == 'abandon' then
    redis.call('HSET', KEYS[2], 'call', ARGV[2], 'ended', '1')
    redis.call('HDEL', KEYS[2], 'owner')
    redis.call('EXPIRE', KEYS[2], ARGV[4])
    if ARGV[3] == 'ack' then redis.call('DEL', KEYS[3]) else redis.call('EXPIRE', KEYS[3], ARGV[4]) end
  end
end
return last
"""
)

# KEYS: asr:progress:{ID}, asr:audio:{ID}
# ARGV: consumer, call entry id, mark, after, next, skip, offset, trim min id or ''.
# Returns 1 when saved, 0 when the hash is gone, -1 when another worker owns the call.
SAVE_SCRIPT = (
    OWNS
    + """
local mine = owns(KEYS[1], ARGV[1], ARGV[2])
if mine == nil then return 0 end
if not mine then return -1 end
redis.call('HSET', KEYS[1], 'mark', ARGV[3], 'after', ARGV[4], 'next', ARGV[5], 'skip', ARGV[6],
           'offset', ARGV[7])
if ARGV[8] ~= '' then redis.call('XTRIM', KEYS[2], 'MINID', ARGV[8]) end
return 1
"""
)

# KEYS: asr:progress:{ID}; ARGV: consumer, call entry id. This worker lets go of a call it
# owns, on purpose (shutdown, or no room after all): the next start is not counted as a
# takeover. Returns 1, or 0 if this worker does not own the call.
HAND_BACK_SCRIPT = (
    OWNS
    + """
if not owns(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'handed', '1')
redis.call('HDEL', KEYS[1], 'owner')
return 1
"""
)


class Verdict(StrEnum):
    """What the start script made of a call entry this worker was handed."""

    NEW = "new"  # nobody began the call: start it
    RESUME = "resume"  # another worker began it: continue from its saved progress
    POISON = "poison"  # workers kept dying holding it (ASR_MAX_TAKEOVERS): give it up unread
    DUPLICATE = "duplicate"  # another entry announces the same call, and someone holds it
    DONE = "done"  # the call's end is written; only the entry's acknowledgement was missing
    OTHER = "other"  # the call's hash belongs to another entry: is that one still held?


@dataclass(frozen=True, slots=True)
class Start:
    verdict: Verdict
    mark: str = "0-0"  # the transcript's last id before the call's first event
    after: str = "0-0"  # RESUME, POISON: the saved progress (ProgressPoint's fields)
    next: str = ""
    skip: int = 0
    offset: int = 0
    takeovers: int = 0  # RESUME, POISON: workers that stopped holding the call, uncounted hand-overs
    live_entry: str = ""  # DUPLICATE, OTHER: the entry that announced the call first

    @classmethod
    def parse(cls, reply: list[str]) -> Start:
        verdict = next((v for v in Verdict if reply and reply[0] == v.value), None)
        if verdict is None:
            raise ValueError(f"the start script answered {reply!r}")
        if verdict is Verdict.NEW and len(reply) > 1:
            return cls(verdict, mark=reply[1])
        if verdict in (Verdict.DUPLICATE, Verdict.OTHER) and len(reply) > 1:
            return cls(verdict, live_entry=reply[1])
        if verdict in (Verdict.RESUME, Verdict.POISON) and len(reply) >= 7:
            mark, after, next_entry, skip, offset, takeovers = reply[1:7]
            return cls(verdict, mark, after, next_entry, to_int(skip), to_int(offset), to_int(takeovers))
        return cls(verdict)


class NotHeld(StrEnum):
    """Why an entry this worker refreshed is not its own."""

    TAKEN = "taken"  # another worker holds it
    GONE = "gone"  # nobody does (acknowledged, or Redis lost it)


class Scripts:
    """The scripts, registered on one client; each call returns what its caller needs, parsed.
    `cluster`: the call's keys carry its id as a hash tag (see `wire`)."""

    def __init__(self, client: RedisClient, *, cluster: bool = False) -> None:
        self._client = client
        self._cluster = cluster
        self._start = client.register_script(START_SCRIPT)
        self._write = client.register_script(WRITE_SCRIPT)
        self._save = client.register_script(SAVE_SCRIPT)
        self._hand_back = client.register_script(HAND_BACK_SCRIPT)

    async def load(self) -> None:
        """Put the scripts in Redis's script cache (on a cluster: on every master). A script
        called alone loads itself when Redis answers that it does not know it; one queued in
        a cluster pipeline cannot, so the link loads them whenever Redis (re)connects, and
        `write_events` again if a master that replaced a failed one does not know them."""
        for script in (self._start, self._write, self._save, self._hand_back):
            await self._client.script_load(script.script)

    def _progress(self, iid: str) -> str:
        return progress_key(iid, cluster=self._cluster)

    async def start(
        self, iid: str, consumer: str, entry_id: str, max_takeovers: int, *, replaces: str = ""
    ) -> Start:
        raw: object = await self._start(
            keys=[self._progress(iid), transcript_key(iid, cluster=self._cluster)],
            args=[consumer, entry_id, max_takeovers, replaces],
        )
        return Start.parse([text(v) for v in raw] if isinstance(raw, list) else [])

    async def holder(self, entry_id: str) -> str | None:
        """The consumer an entry of `asr:calls` is pending for, if any."""
        raw: object = await self._client.xpending_range(CALLS_KEY, GROUP, entry_id, entry_id, 1)
        if isinstance(raw, list) and raw and isinstance(raw[0], dict):
            return text(raw[0].get("consumer"))
        return None

    async def write_events(
        self, consumer: str, groups: Sequence[Sequence[Outgoing]], *, retry: bool, document_ttl_s: int = 0
    ) -> list[int | Exception]:
        """Write each group (one call's events, in order) in one pipeline; per group, the last
        seq in its transcript, -1 if another worker owns the call, or the error Redis
        answered. A lost connection raises (the whole batch may or may not be applied)."""
        results = await self._write_pipeline(consumer, groups, retry=retry, document_ttl_s=document_ttl_s)
        if any(isinstance(v, NoScriptError) for v in results):
            await self.load()  # a group refused so ran nothing: it is safe to send again
            again = [g for g, v in zip(groups, results, strict=True) if isinstance(v, NoScriptError)]
            redone = iter(
                await self._write_pipeline(consumer, again, retry=retry, document_ttl_s=document_ttl_s)
            )
            results = [next(redone) if isinstance(v, NoScriptError) else v for v in results]
        return results

    async def _write_pipeline(
        self, consumer: str, groups: Sequence[Sequence[Outgoing]], *, retry: bool, document_ttl_s: int
    ) -> list[int | Exception]:
        pipe = self._client.pipeline(transaction=False)
        for group in groups:
            first = group[0]
            iid = first.tag
            call = first.call
            args: list[str | int] = [
                consumer,
                call.entry_id if call is not None else "",
                group[-1].finish.value,
                TRANSCRIPT_TTL_S,
                document_ttl_s,
            ]
            for item in group:
                # On a retry the first attempt may have been applied: never restart numbering then.
                fresh = "1" if item.fresh and not retry else "0"
                args += [item.seq, fresh, "1" if item.document and document_ttl_s else "0", item.data]
            cluster = self._cluster
            # redis-py runs a script in either kind of pipeline, though its annotation names
            # only clients.
            await self._write(
                keys=[
                    transcript_key(iid, cluster=cluster),
                    progress_key(iid, cluster=cluster),
                    audio_key(iid, cluster=cluster),
                    document_key(iid, cluster=cluster),
                ],
                args=args,
                client=cast("RedisClient", pipe),
            )
        results: object = await pipe.execute(raise_on_error=False)
        out = list(results) if isinstance(results, list) else []
        for value in out:
            if isinstance(value, REDIS_ERRORS):
                raise value
        return [v if isinstance(v, Exception) else int_or(v) for v in out]

    async def acknowledge(self, entry_ids: Sequence[str]) -> None:
        """The calls these entries announced are over: their end is written."""
        if entry_ids:
            await self._client.xack(CALLS_KEY, GROUP, *entry_ids)

    async def save(self, consumer: str, call: OwnedCall, point: ProgressPoint, trim: str) -> int:
        """1 when saved (and the audio trimmed below `trim`, if given), 0 when the call's hash
        is gone, -1 when another worker owns the call."""
        iid = call.tag
        raw: object = await self._save(
            keys=[self._progress(iid), audio_key(iid, cluster=self._cluster)],
            args=[
                consumer,
                call.entry_id,
                call.mark,
                point.after,
                point.next,
                point.skip,
                point.covered,
                trim,
            ],
        )
        return int_or(raw)

    async def hand_back(self, consumer: str, iid: str, entry_id: str, *, idle_ms: int) -> int:
        """Let go of a call this worker owns, and make its entry look `idle_ms` idle, so the
        next XAUTOCLAIM anywhere takes it: 1, or 0 if this worker does not own it."""
        raw: object = await self._hand_back(keys=[self._progress(iid)], args=[consumer, entry_id])
        if int_or(raw) != 1:
            return 0
        await self.release(consumer, [entry_id], idle_ms=idle_ms)
        return 1

    async def release(self, consumer: str, entry_ids: Sequence[str], *, idle_ms: int) -> None:
        """Entries this worker was just handed but will not serve: they look `idle_ms` idle."""
        if entry_ids:
            await self._client.xclaim(
                CALLS_KEY, GROUP, consumer, 0, list(entry_ids), idle=idle_ms, justid=True
            )

    async def refresh(self, consumer: str, calls: Sequence[tuple[str, str]]) -> dict[str, NotHeld]:
        """Reset the idle time of the entries of the calls (interaction id, entry) this worker
        still owns; the others, and why not. The hash decides: an entry another worker took
        but has not started yet comes back here for a moment (XCLAIM), and goes to that
        worker again at its next refresh, once its start has made it the owner."""
        pipe = self._client.pipeline(transaction=False)
        for iid, _entry in calls:
            pipe.hmget(self._progress(iid), ["call", "owner"])
        replies: object = await pipe.execute()
        held = list(replies) if isinstance(replies, list) else []
        out: dict[str, NotHeld] = {}
        mine: list[str | bytes | int | memoryview] = []
        for (_iid, entry_id), reply in zip(calls, held, strict=False):
            pair = reply if isinstance(reply, list) and len(reply) == 2 else [None, None]
            call, owner = (None if v is None else text(v) for v in pair)
            if call is None:
                out[entry_id] = NotHeld.GONE
            elif call != entry_id or owner != consumer:
                out[entry_id] = NotHeld.TAKEN
            else:
                mine.append(entry_id)
        if mine:
            claimed: object = await self._client.xclaim(
                CALLS_KEY, GROUP, consumer, 0, mine, idle=0, justid=True
            )
            still = {text(v) for v in claimed} if isinstance(claimed, list) else set()
            for entry_id in map(text, mine):
                if entry_id not in still:
                    out[entry_id] = NotHeld.GONE
        return out
