"""Keeping `asr:calls` small: every `HOUSEKEEPING_INTERVAL_S`, trim it behind the oldest entry
any consumer group still needs (undelivered, or pending), and forget consumers of this
worker's group that hold nothing and have been idle long enough to be gone.

A call's own streams are kept small elsewhere: its audio is trimmed as its progress is saved
and deleted when it ends; its transcript is the consumers' and only expires.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from redis.exceptions import ResponseError

from .wire import CALLS_KEY, GROUP, REDIS_ERRORS, RedisClient, honour_cancel, id_key, next_id, text

if TYPE_CHECKING:
    from .link import RedisLink

log = logging.getLogger("asr_worker.bus")

HOUSEKEEPING_INTERVAL_S: Final = 30.0
DEAD_CONSUMER_MIN_S: Final = (
    60.0  # a consumer with nothing pending, idle this long (or 10 claim times), is gone
)


def dead_consumer_after_s(claim_idle_s: float) -> float:
    return max(DEAD_CONSUMER_MIN_S, claim_idle_s * 10)


class Housekeeping:
    def __init__(self, consumer: str, *, dead_consumer_after_s: float) -> None:
        """`consumer`: this worker's own name in the group, never forgotten."""
        self._consumer = consumer
        self._dead_after_ms = round(dead_consumer_after_s * 1000)

    async def run(self, link: RedisLink) -> None:
        while True:
            honour_cancel()
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            await link.wait_up()
            try:
                await self.sweep(link.client)
            except REDIS_ERRORS as exc:
                link.failed(exc)
            except ResponseError as exc:
                log.warning("housekeeping refused", extra={"error": str(exc)[:200]})

    async def sweep(self, client: RedisClient) -> None:
        """One round of trimming and forgetting."""
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
        consumers: object = await client.xinfo_consumers(CALLS_KEY, GROUP)
        for consumer in consumers if isinstance(consumers, list) else []:
            if not isinstance(consumer, dict):
                continue
            name = text(consumer.get("name"))
            idle = consumer.get("idle")
            if (
                name != self._consumer
                and consumer.get("pending") == 0
                and isinstance(idle, int)
                and idle > self._dead_after_ms
            ):
                await client.xgroup_delconsumer(CALLS_KEY, GROUP, name)
