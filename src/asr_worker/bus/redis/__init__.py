"""The Redis Streams bus: calls are jobs shared by many workers.

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

Bounded streams: a call's audio stream is trimmed (XTRIM MINID) only behind the entry its
progress points at, i.e. behind audio both consumed and covered by finals; it is deleted when
the call ends. `asr:calls` is trimmed behind the oldest entry any group still needs. The
transcript stream is the consumers': it is never trimmed, and expires a day after the call.

`bus.py` puts the parts together; `wire.py` (key names, entries, the client) is shared with
`asr-worker publish`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ..base import BusKind
from .options import SETTINGS, RedisOptions

if TYPE_CHECKING:
    from ...core.session_types import SessionConfig
    from .bus import RedisStreamsBus


def create(options: RedisOptions, session: SessionConfig) -> RedisStreamsBus:
    from .bus import RedisStreamsBus  # redis-py loads only where this bus runs

    return RedisStreamsBus(options, session)


KIND: Final = BusKind(SETTINGS, create)

__all__ = ["KIND", "SETTINGS", "RedisOptions", "create"]
