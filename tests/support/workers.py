"""Worker processes for tests: `python -m asr_worker serve` on free ports, their JSON logs in
files (so a chatty process never blocks on a full pipe), and what those logs say."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from tests.conftest import free_port
from tests.support.cli import CLI, assert_clean_stderr


@dataclass
class WorkerProcess:
    name: str
    port: int
    process: asyncio.subprocess.Process
    log_path: Path
    log_file: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> list[dict[str, object]]:
        """Its JSON log lines so far (the process writes the file; readable after it ended)."""
        lines = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def calls(self, message: str = "call taken") -> list[str]:
        return [str(line["interaction_id"]) for line in self.logs() if line.get("msg") == message]

    def kill(self) -> None:
        """kill -9: no goodbye, no flush, nothing."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)


@asynccontextmanager
async def worker_processes(
    count: int, redis_url: str, log_dir: Path, **env: str
) -> AsyncIterator[list[WorkerProcess]]:
    """`count` workers on the Redis bus with the mock provider, each ready (bus up) before
    the block starts; killed at its end, when their logs must hold no Python warning."""
    workers: list[WorkerProcess] = []
    try:
        for i in range(count):
            port = free_port()
            path = log_dir / f"worker-{i}.log"
            log_file = path.open("wb")
            process = await asyncio.create_subprocess_exec(
                *CLI,
                "serve",
                env={
                    **os.environ,
                    "PORT": str(port),
                    "ASR_PROVIDER": "mock",
                    "PUBSUB_ADAPTER": "redis_streams",
                    "REDIS_URL": redis_url,
                    **env,
                },
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log_file,
            )
            workers.append(WorkerProcess(f"worker-{i}", port, process, path, log_file))
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            for worker in workers:
                while not await is_ready(http, worker):
                    if worker.process.returncode is not None:
                        raise AssertionError(f"{worker.name} exited: {worker.log_path.read_text()[-2000:]}")
                    await asyncio.sleep(0.05)
        yield workers
    finally:
        for worker in workers:
            worker.kill()
        for worker in workers:
            await worker.process.wait()
            worker.log_file.close()
    for worker in workers:
        assert_clean_stderr(worker.log_path.read_text())


async def is_ready(http: aiohttp.ClientSession, worker: WorkerProcess) -> bool:
    try:
        async with http.get(f"{worker.url}/ready") as response:
            return response.status == 200
    except aiohttp.ClientConnectionError:
        return False
