"""The bus's connection to Redis: one client, whether Redis answers, and getting it back.

Every loop of the bus waits for `wait_up` before it talks to Redis and calls `failed` when a
command could not reach it; `keep` (its own task) then drops the stale connections, pings with
backoff and, once Redis answers, makes sure the consumer group exists and lets the loops go on.
The link's state (up or down, since when, the last error) is changed here only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Final

from redis.exceptions import ResponseError

from .scripts import Scripts
from .wire import CALLS_KEY, GROUP, REDIS_ERRORS, RedisClient, drop_connections, honour_cancel, redis_client

log = logging.getLogger("asr_worker.bus")

SOCKET_TIMEOUT_S: Final = 5.0
BACKOFF_INITIAL_S: Final = 0.1
BACKOFF_MAX_S: Final = 2.0
STILL_DOWN_LOG_S: Final = 60.0  # while Redis stays unreachable, one warning this often


class RedisLink:
    def __init__(
        self, url: str, where: str, consumer: str, on_up: Callable[[bool], None], *, cluster: bool = False
    ) -> None:
        """`where` names the server for logs and /health (no password); `on_up(again)` runs
        each time Redis answers, just before the loops go on (`again`: after an outage).
        `cluster`: `url` names a node of a Redis Cluster."""
        self._url = url
        self.cluster = cluster
        self.where = where
        self.consumer = consumer
        self._on_up = on_up
        self._client: RedisClient | None = None
        self._scripts: Scripts | None = None
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._down.set()
        self._down_since: float | None = time.monotonic()
        self.last_error = "not connected yet"
        self.attempted = False  # a connection attempt has ended, either way: /health knows
        self.outages = 0
        self._rng = random.Random()
        self._warned_at: float | None = None  # the last "unreachable" warning of this outage

    # --- the client -------------------------------------------------------------------------

    def open(self) -> None:
        self._client = redis_client(
            self._url, name=self.consumer, socket_timeout_s=SOCKET_TIMEOUT_S, cluster=self.cluster
        )
        self._scripts = Scripts(self._client, cluster=self.cluster)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    @property
    def client(self) -> RedisClient:
        assert self._client is not None, "the bus is not running"
        return self._client

    @property
    def scripts(self) -> Scripts:
        assert self._scripts is not None, "the bus is not running"
        return self._scripts

    # --- up or down -------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up.is_set()

    async def wait_up(self) -> None:
        await self._up.wait()

    @property
    def down_for_s(self) -> float | None:
        return None if self._down_since is None else time.monotonic() - self._down_since

    def failed(self, exc: BaseException) -> None:
        """A command could not reach Redis: the loops wait until `keep` has it back."""
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if self._up.is_set():
            self._up.clear()
            self._down.set()
            self._down_since = time.monotonic()
            self.outages += 1
            log.warning(
                "redis unreachable; keeping sessions, queueing events", extra={"error": self.last_error}
            )

    async def keep(self) -> None:
        """While Redis is unreachable: drop stale connections, ping with backoff, and once it
        answers make sure the group exists, then let every loop go on."""
        delay = BACKOFF_INITIAL_S
        first = True
        while True:
            honour_cancel()
            await self._down.wait()
            await drop_connections(self.client)
            try:
                if not self.cluster:  # a cluster client pings every node; the group's master is enough
                    await self.client.ping()
                await self.ensure_group()
                await self.scripts.load()
            except (*REDIS_ERRORS, ResponseError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self.attempted = True
                self._warn_still_down(first)
                await asyncio.sleep(delay * (0.5 + self._rng.random() / 2))
                delay = min(BACKOFF_MAX_S, delay * 2)
                continue
            delay = BACKOFF_INITIAL_S
            self.attempted = True
            down_for = time.monotonic() - (self._down_since or time.monotonic())
            self._down.clear()
            self._down_since = None
            self._warned_at = None
            self._on_up(not first)
            self._up.set()
            if first:
                log.info("redis bus connected", extra={"redis": self.where, "consumer": self.consumer})
                first = False
            else:
                log.info("redis is back", extra={"down_s": round(down_for, 2)})

    def _warn_still_down(self, never_connected: bool) -> None:
        """An unreachable Redis is said in the log at once (at start, before any call could
        show it) and again every STILL_DOWN_LOG_S while it lasts, never once per retry."""
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < STILL_DOWN_LOG_S:
            return
        if self._warned_at is None and not never_connected:
            self._warned_at = now  # `failed` has just said it
            return
        self._warned_at = now
        log.warning(
            "redis unreachable; the bus takes no calls until it answers"
            if never_connected
            else "redis still unreachable",
            extra={
                "redis": self.where,
                "down_s": round(now - (self._down_since or now), 1),
                "error": self.last_error,
            },
        )

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(CALLS_KEY, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def response_error(self, exc: ResponseError) -> None:
        """Redis refused a command: recreate the group if it is gone (Redis lost its data, or
        someone deleted it), else log and pause a second before the caller goes on."""
        if "NOGROUP" in str(exc):
            with contextlib.suppress(*REDIS_ERRORS, ResponseError):
                await self.ensure_group()
            return
        log.error("redis refused a command", extra={"error": str(exc)[:300]})
        await asyncio.sleep(1.0)
