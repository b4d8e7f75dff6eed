"""The Lua scripts of the Redis Streams bus, and `Scripts`, their typed callers.

Each script checks in Redis, in the same step as it acts, which worker holds the call's entry
in `asr:calls` (its consumer in the pending list), so a worker that lost a call can never
interleave a write with the call's new owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from .wire import (
    CALLS_KEY,
    GROUP,
    REDIS_ERRORS,
    TRANSCRIPT_TTL_S,
    audio_key,
    int_or,
    progress_key,
    text,
    to_int,
    transcript_key,
)

if TYPE_CHECKING:
    from .calls import OwnedCall, ProgressPoint
    from .outbox import Outgoing

HOLDER = """
local function holder(calls, group, id)
  local p = redis.call('XPENDING', calls, group, id, id, 1)
  if #p == 0 then return false end
  return p[1][2]
end
"""

# KEYS: asr:calls, asr:progress:{ID}, transcript.{ID}; ARGV: group, consumer, call entry id,
# most takeovers. A call that another worker began is resumed; if that worker stopped without
# handing it over (`handed`, set by HAND_BACK_SCRIPT), that is one more takeover, and past the
# most the call is 'poison': its audio has stopped every worker that held it.
START_SCRIPT = (
    HOLDER
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
  local takeovers = tonumber(h['takeovers'] or '0') or 0
  if h['handed'] == '1' then
    redis.call('HDEL', KEYS[2], 'handed')
  else
    takeovers = takeovers + 1
    redis.call('HSET', KEYS[2], 'takeovers', takeovers)
  end
  local verdict = 'resume'
  if takeovers > tonumber(ARGV[4]) then verdict = 'poison' end
  return {verdict, h['mark'] or '0-0', h['after'] or '0-0', h['next'] or '', h['skip'] or '0',
          h['offset'] or '0', tostring(takeovers)}
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
# ARGV: group, consumer, call entry id or '', finish ('ack', 'abandon', 'expire' or ''), ttl, then
# (seq, fresh, json) per event (seq -1: an event without one, always written). Returns the last
# seq in the transcript, or -1 if another worker holds the call. Events whose seq is not above
# the last written one were written already (a retried batch); a fresh session_started
# restarts the numbering (a new call with an old id).
WRITE_SCRIPT = (
    HOLDER
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
  if seq < 0 or seq > last then
    redis.call('XADD', KEYS[1], '*', 'data', ARGV[i + 2])
    if seq >= 0 then last = seq end
  end
end
if ARGV[4] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  if ARGV[4] == 'ack' or ARGV[4] == 'abandon' then
    redis.call('XACK', KEYS[2], ARGV[1], ARGV[3])
    redis.call('DEL', KEYS[3])
    if ARGV[4] == 'ack' then redis.call('DEL', KEYS[4]) else redis.call('EXPIRE', KEYS[4], ARGV[5]) end
  end
end
return last
"""
)

# KEYS: asr:calls, asr:progress:{ID}, asr:audio:{ID}
# ARGV: group, consumer, call entry id, mark, after, next, skip, offset, trim min id or ''.
# Returns 1 when saved, 0 when nobody holds the entry, -1 when another worker does.
SAVE_SCRIPT = (
    HOLDER
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

# KEYS: asr:calls, asr:progress:{ID}; ARGV: group, consumer, call entry id, idle ms. This worker
# lets go of a call it started, on purpose (shutdown, or no room after all): the next start is
# not counted as a takeover. Returns 1, or 0 if this worker does not hold the entry.
HAND_BACK_SCRIPT = (
    HOLDER
    + """
if holder(KEYS[1], ARGV[1], ARGV[3]) ~= ARGV[2] then return 0 end
if redis.call('HGET', KEYS[2], 'call') == ARGV[3] then redis.call('HSET', KEYS[2], 'handed', '1') end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
return 1
"""
)

# KEYS: asr:calls; ARGV: group, consumer, idle ms, call entry ids. Resets the idle time of the
# entries this consumer still holds (0: keep them; large: hand them to the next XAUTOCLAIM).
# Returns the entries it does not hold, each followed by 'taken' or 'gone'.
CLAIM_OWN_SCRIPT = (
    HOLDER
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


class Verdict(StrEnum):
    """What the start script made of a call entry this worker was handed."""

    NEW = "new"  # nobody began the call: start it
    RESUME = "resume"  # another worker began it: continue from its saved progress
    POISON = "poison"  # workers kept dying holding it (ASR_MAX_TAKEOVERS): give it up unread
    DUPLICATE = "duplicate"  # another entry announces the same call, and someone holds it
    LOST = "lost"  # this worker does not hold the entry (any more)


@dataclass(frozen=True, slots=True)
class Start:
    verdict: Verdict
    mark: str = "0-0"  # the transcript's last id before the call's first event
    after: str = "0-0"  # RESUME, POISON: the saved progress (ProgressPoint's fields)
    next: str = ""
    skip: int = 0
    offset: int = 0
    takeovers: int = 0  # RESUME, POISON: workers that stopped holding the call, uncounted hand-overs
    live_entry: str = ""  # DUPLICATE: the entry that announced the call first

    @classmethod
    def parse(cls, reply: list[str]) -> Start:
        verdict = next((v for v in Verdict if reply and reply[0] == v.value), Verdict.LOST)
        if verdict is Verdict.NEW and len(reply) > 1:
            return cls(verdict, mark=reply[1])
        if verdict is Verdict.DUPLICATE and len(reply) > 1:
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
    """The scripts, registered on one client; each call returns what its caller needs, parsed."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._start = client.register_script(START_SCRIPT)
        self._write = client.register_script(WRITE_SCRIPT)
        self._save = client.register_script(SAVE_SCRIPT)
        self._claim_own = client.register_script(CLAIM_OWN_SCRIPT)
        self._hand_back = client.register_script(HAND_BACK_SCRIPT)

    async def start(self, iid: str, consumer: str, entry_id: str, max_takeovers: int) -> Start:
        raw: object = await self._start(
            keys=[CALLS_KEY, progress_key(iid), transcript_key(iid)],
            args=[GROUP, consumer, entry_id, max_takeovers],
        )
        return Start.parse([text(v) for v in raw] if isinstance(raw, list) else [])

    async def write_events(
        self, consumer: str, groups: Sequence[Sequence[Outgoing]], *, retry: bool
    ) -> list[int | Exception]:
        """Write each group (one call's events, in order) in one pipeline; per group, the last
        seq in its transcript, -1 if another worker holds the call, or the error Redis
        answered. A lost connection raises (the whole batch may or may not be applied)."""
        pipe = self._client.pipeline(transaction=False)
        for group in groups:
            first = group[0]
            iid = first.interaction_id
            call = first.call
            args: list[str | int] = [
                GROUP,
                consumer,
                call.entry_id if call is not None else "",
                group[-1].finish.value,
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

    async def save(self, consumer: str, call: OwnedCall, point: ProgressPoint, trim: str) -> int:
        """1 when saved (and the audio trimmed below `trim`, if given), 0 when nobody holds the
        call's entry, -1 when another worker does."""
        iid = call.interaction_id
        raw: object = await self._save(
            keys=[CALLS_KEY, progress_key(iid), audio_key(iid)],
            args=[
                GROUP,
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
        raw: object = await self._hand_back(
            keys=[CALLS_KEY, progress_key(iid)], args=[GROUP, consumer, entry_id, idle_ms]
        )
        return int_or(raw)

    async def claim_own(self, consumer: str, entry_ids: list[str], *, idle_ms: int) -> dict[str, NotHeld]:
        """Set the idle time of the entries this worker holds; the others, and why not."""
        raw: object = await self._claim_own(keys=[CALLS_KEY], args=[GROUP, consumer, idle_ms, *entry_ids])
        reply = [text(v) for v in raw] if isinstance(raw, list) else []
        return {
            entry_id: NotHeld.TAKEN if why == NotHeld.TAKEN.value else NotHeld.GONE
            for entry_id, why in zip(reply[::2], reply[1::2], strict=False)
        }
