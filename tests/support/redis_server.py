"""A real `redis-server` for tests (the Debian package), on a free port, stoppable and
restartable on the same port and data directory; and helpers to read what the bus wrote."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
import redis.asyncio as aioredis

from asr_worker.bus.redis.wire import transcript_key
from tests.conftest import free_port

Event = dict[str, object]


class RedisServer:
    def __init__(self, data_dir: Path, *, persistent: bool = False, password: str | None = None) -> None:
        self.dir = data_dir
        self.port = free_port()
        self.persistent = persistent
        self.password = password  # `requirepass`: clients must AUTH with it
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/test.sh installs it)"
        self.dir.mkdir(parents=True, exist_ok=True)
        # Persistence only where a test restarts Redis and expects its data back (an
        # append-only file, flushed on a clean shutdown); otherwise nothing touches the disk.
        persistence = ["yes", "--appendfsync", "always"] if self.persistent else ["no"]
        options = {"port": str(self.port), "bind": "127.0.0.1", "save": "", "dir": str(self.dir)}
        if self.password:
            options["requirepass"] = self.password
        args = [part for name, value in options.items() for part in (f"--{name}", value)]
        self.process = subprocess.Popen(
            [binary, *args, "--logfile", str(self.dir / "redis.log"), "--appendonly", *persistence]
        )
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:  # poll until it answers, bounded
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"redis-server did not start: {self.log()}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """A clean shutdown (its data reaches the disk when persistent)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text()[-2000:] if path.exists() else ""


def client(server: RedisServer) -> aioredis.Redis:
    return aioredis.Redis.from_url(server.url)


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, every_s: float = 0.02) -> None:
    """Poll `check` until it holds, bounded by `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(every_s)


async def entries(r: aioredis.Redis, key: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """A stream's entries, typed."""
    raw: object = await r.xrange(key)
    out = []
    for entry_id, fields in raw if isinstance(raw, list) else []:
        assert isinstance(entry_id, bytes) and isinstance(fields, dict)
        out.append((entry_id, fields))
    return out


async def transcript(r: aioredis.Redis, interaction_id: str) -> list[Event]:
    return [json.loads(fields[b"data"]) for _, fields in await entries(r, transcript_key(interaction_id))]


async def wait_for_calls_to_end(
    r: aioredis.Redis, ids: list[str], timeout_s: float = 30.0
) -> dict[str, list[Event]]:
    """Poll the transcript streams until every call has its session_ended (bounded)."""
    done: dict[str, list[Event]] = {}
    async with asyncio.timeout(timeout_s):
        while len(done) < len(ids):
            for iid in ids:
                if iid not in done:
                    events = await transcript(r, iid)
                    if any(e["type"] == "session_ended" for e in events):
                        done[iid] = events
            await asyncio.sleep(0.05)
    return done


def final_words(events: list[Event]) -> list[str]:
    return [w for e in events if e["type"] == "transcript" and e["is_final"] for w in str(e["text"]).split()]
