"""The voice-agent frameworks' Deepgram clients (Pipecat's, LiveKit Agents'), run as their users
run them, in a virtualenv of their own: their pins conflict with the test lock. The first use
installs it (scripts/install-clients.sh, locked with hashes; a moment when already there);
each client is a small program in tests/clients/ that prints what the framework hands an app,
one JSON object a line."""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ROOT / "tests" / "clients"


@functools.cache
def clients_python() -> Path:
    """The clients' virtualenv's Python, installed first if it is not there or is stale."""
    subprocess.run([str(ROOT / "scripts" / "install-clients.sh")], check=True, timeout=1200)
    return ROOT / ".venv-clients" / "bin" / "python"


@dataclass(frozen=True)
class ClientRun:
    name: str
    events: list[dict[str, object]]
    stderr: str

    def of(self, *kinds: str) -> list[dict[str, object]]:
        return [e for e in self.events if e["kind"] in kinds]

    def texts(self, kind: str) -> list[str]:
        return [str(e["text"]) for e in self.of(kind)]


async def run_client(program: str, mode: str, url: str, audio: Path, rate: int) -> ClientRun:
    """Run tests/clients/`program`.py in `mode` (flux or v1) against the server at `url`
    (ws://host:port), streaming `audio` (raw 16-bit mono at `rate`) at real time."""
    process = await asyncio.create_subprocess_exec(
        str(clients_python()),
        str(PROGRAMS / f"{program}.py"),
        mode,
        url,
        str(audio),
        str(rate),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(120):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = err.decode(errors="replace")
    assert process.returncode == 0, f"{program} {mode} failed:\n{stderr[-3000:]}"
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    return ClientRun(f"{program} {mode}", events, stderr)
