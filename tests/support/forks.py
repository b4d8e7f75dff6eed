"""Media-fork clients for tests: Node's `ws` package playing FreeSWITCH's and jambonz's forks
(tests/node/fork_client.mjs), and the platforms' messages built as they send them."""

from __future__ import annotations

import asyncio
import base64
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


# --- Twilio-like platforms: messages as they send them ----------------------------------------


def telnyx_start(
    call_control_id: str = "v3:call-control-1",
    encoding: str = "PCMU",
    sample_rate: int = 8000,
    params: dict[str, str] | None = None,
) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequence_number": "1",
            "start": {
                "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
                "call_control_id": call_control_id,
                "media_format": {"encoding": encoding, "sample_rate": sample_rate, "channels": 1},
                **({"custom_parameters": params} if params else {}),
            },
            "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
        }
    )


def telnyx_media(track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequence_number": str(chunk + 2),
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode(),
            },
            "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
        }
    )


def plivo_start(
    call_id: str = "12345678-1234-1234-1234-123456789abc",
    tracks: tuple[str, ...] = ("inbound", "outbound"),
    encoding: str = "audio/x-mulaw",
    sample_rate: int = 8000,
    extra_headers: str = "",
) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": 1,
            "start": {
                "callId": call_id,
                "streamId": "87654321-4321-4321-4321-cba987654321",
                "accountId": "MAXXXXXXXXXXXXXXXXXX",
                "tracks": list(tracks),
                "mediaFormat": {"encoding": encoding, "sampleRate": sample_rate},
            },
            "extra_headers": extra_headers,
        }
    )


def plivo_media(track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": chunk + 1,
            "streamId": "87654321-4321-4321-4321-cba987654321",
            "media": {
                "track": track,
                "timestamp": str(timestamp_ms),
                "chunk": chunk,
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


def interleave(left: bytes, right: bytes) -> bytes:
    """Two tracks of one-byte samples (G.711) as one two-channel stream, inbound first."""
    out = bytearray(2 * len(left))
    out[0::2], out[1::2] = left, right
    return bytes(out)


def signalwire_start(
    call_sid: str = "76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad",
    tracks: tuple[str, ...] = ("inbound", "outbound"),
    encoding: str = "audio/x-mulaw",
    sample_rate: int = 8000,
    params: dict[str, str] | None = None,
) -> str:
    """A bare `start`, as a Twilio-compatible stream sends it (no documentation envelope)."""
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "streamSid": "7d56cc11-536d-4a45-b4fb-ed3d55be843b",
                "accountSid": "b08dacad-2f6c-4de1-93d6-cc732e0c69c5",
                "callSid": call_sid,
                "tracks": list(tracks),
                "customParameters": params or {},
                "mediaFormat": {"encoding": encoding, "sampleRate": sample_rate, "channels": len(tracks)},
            },
        }
    )


def signalwire_media(track: str, chunk: int, timestamp_ms: int, payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(chunk + 1),
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )
