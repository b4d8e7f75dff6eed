"""The operator's smoke test (scripts/smoke.sh) as tests run it: a real process against a real
worker, its output split into check lines, and a worker process to point it at."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SMOKE_SCRIPT = ROOT / "scripts" / "smoke.sh"


@dataclass(frozen=True)
class SmokeRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def failed(self) -> list[str]:
        return [line for line in self.lines if line.startswith("FAIL ")]

    @property
    def passed(self) -> list[str]:
        return [line for line in self.lines if line.startswith("ok   ")]

    def explain(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


async def run_smoke(*args: str, token: str | None = None, timeout_s: float = 90.0) -> SmokeRun:
    """`scripts/smoke.sh ARGS` with ASR_WORKER_TOKEN set to `token` (or unset)."""
    env = {k: v for k, v in os.environ.items() if k != "ASR_WORKER_TOKEN"}
    if token is not None:
        env["ASR_WORKER_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        str(SMOKE_SCRIPT),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return SmokeRun(process.returncode, stdout.decode(), stderr.decode())


async def wait_ready(
    url: str, process: asyncio.subprocess.Process, token: str | None = None, timeout_s: float = 60.0
) -> None:
    """Poll /ready until it answers 200; AssertionError if the process exits first."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers) as http, asyncio.timeout(timeout_s):
        while True:
            if process.returncode is not None:
                raise AssertionError(f"the worker exited with {process.returncode} before it was ready")
            try:
                async with http.get(f"{url}/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


@dataclass
class ServedWorker:
    url: str
    process: asyncio.subprocess.Process
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@asynccontextmanager
async def serve_worker(
    command: Sequence[str], env: Mapping[str, str], log_path: Path, token: str | None = None
) -> AsyncIterator[ServedWorker]:
    """`command` (a worker serving on env's PORT, loopback) until the block ends: ready first;
    SIGKILLed at the end if still running. Its output goes to `log_path`."""
    url = f"http://127.0.0.1:{env['PORT']}"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *command, env=dict(env), stdout=log_file, stderr=asyncio.subprocess.STDOUT
        )
        worker = ServedWorker(url, process, log_path)
        try:
            try:
                await wait_ready(url, process, token)
            except (AssertionError, TimeoutError) as exc:
                raise AssertionError(f"{exc}; its output:\n{worker.log()[-3000:]}") from exc
            yield worker
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
                await process.wait()


def worker_env(**overrides: str) -> dict[str, str]:
    """The test process's environment, on a free port, without a token unless given one."""
    env = {k: v for k, v in os.environ.items() if k != "ASR_WORKER_TOKEN"}
    return {**env, "PORT": str(free_port()), **overrides}
