"""Media-fork clients for tests: Node's `ws` package playing FreeSWITCH's and jambonz's forks
(tests/node/fork_client.mjs), and the platforms' messages built as they send them."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
SCRIPTS = Path(__file__).resolve().parent.parent.parent / "scripts"


def node_clients() -> Path:
    """tests/node with its locked packages installed (scripts/node-clients.sh, which the test
    command runs; run here too, so one test file can be run alone). Skips without Node."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node and npm are not installed (scripts/system-packages.sh installs them)")
    if not (NODE_DIR / "node_modules" / ".installed").exists():
        subprocess.run([str(SCRIPTS / "node-clients.sh")], check=True, capture_output=True, timeout=300)
    return NODE_DIR


@dataclass
class NodeRun:
    returncode: int
    events: list[dict[str, object]] = field(default_factory=list)
    stderr: str = ""

    def of(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.events if e["event"] == kind]

    @property
    def protocol(self) -> object:
        opened = self.of("open")
        return opened[0]["protocol"] if opened else None

    @property
    def close_code(self) -> object:
        closed = self.of("close")
        return closed[0]["code"] if closed else None


async def node_fork(
    url: str,
    *,
    protocols: list[str],
    metadata: str | None,
    audio: bytes = b"",
    frame_bytes: int = 640,
    headers: dict[str, str] | None = None,
    texts: list[str] | None = None,
    end: str = "close",
    timeout_s: float = 30.0,
) -> NodeRun:
    """Play one fork with Node's `ws` client: open (offering `protocols`), the metadata frame,
    the audio in binary frames, `texts`, then end it (`close` 1000, `empty-frame`, `none`)."""
    directory = node_clients()
    with tempfile.NamedTemporaryFile(suffix=".pcm") as raw:
        raw.write(audio)
        raw.flush()
        spec = {
            "url": url,
            "protocols": protocols,
            "headers": headers or {},
            "metadata": metadata,
            "audio": raw.name,
            "frameBytes": frame_bytes,
            "texts": texts or [],
            "end": end,
        }
        process = await asyncio.create_subprocess_exec(
            "node",
            str(directory / "fork_client.mjs"),
            json.dumps(spec),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout_s)
        except TimeoutError:
            process.kill()
            out, err = await process.communicate()
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    return NodeRun(process.returncode if process.returncode is not None else -1, events, err.decode())


def stereo(left: bytes, right: bytes) -> bytes:
    """Two mono L16 legs as a stereo fork carries them: interleaved, the caller first."""
    a, b = np.frombuffer(left, "<i2"), np.frombuffer(right, "<i2")
    return np.stack([a, b], axis=1).astype("<i2").tobytes()


def interleave(left: bytes, right: bytes) -> bytes:
    """Two tracks of one-byte samples (G.711) as one two-channel stream, inbound first."""
    out = bytearray(2 * len(left))
    out[0::2], out[1::2] = left, right
    return bytes(out)
