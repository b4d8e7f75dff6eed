"""A raw AudioHook client for tests: the messages Genesys Cloud sends, over a real socket, and
the HTTP message signature it puts on the upgrade request."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp

from asr_worker.audiohook import signature
from asr_worker.worker import Worker

ORG = "d7934305-0972-4844-938e-9060eef73d05"
STEREO_PCMU = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
OFFERS = [
    STEREO_PCMU,
    {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
    {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000},
]


def upgrade_headers(
    api_key: str,
    *,
    session_id: str,
    org: str = ORG,
    secret: bytes | None = None,
    authority: str = "",
    target: str = "/v1/audiohook",
    created: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Genesys's upgrade headers, signed by the client side of `audiohook.signature` (which
    reproduces the AudioHook documentation's signed example byte for byte, in
    tests/audiohook/test_signature.py)."""
    return signature.upgrade_headers(
        api_key,
        session_id=session_id,
        organization_id=org,
        secret=secret,
        authority=authority,
        target=target,
        created=created,
        nonce=nonce,
    )


def url(worker: Worker) -> str:
    return f"ws://127.0.0.1:{worker.port}/v1/audiohook"


class Hook:
    """One AudioHook session from the client's side: numbers its messages, checks the server's
    numbering, keeps every message received."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session_id: str) -> None:
        self.ws = ws
        self.id = session_id
        self.seq = 0
        self.serverseq = 0
        self.position = 0.0
        self.received: list[dict[str, Any]] = []

    async def send(self, kind: str, parameters: Mapping[str, object] | None = None, **fields: object) -> int:
        self.seq += 1
        message: dict[str, object] = {
            "version": "2",
            "id": self.id,
            "type": kind,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "position": f"PT{self.position:.3f}S",
            "parameters": dict(parameters or {}),
        }
        message.update(fields)
        await self.ws.send_str(json.dumps(message))
        return self.seq

    async def audio(self, data: bytes, bytes_per_second: int = 16000, chunk_ms: int = 100) -> None:
        step = bytes_per_second * chunk_ms // 1000
        for i in range(0, len(data), step):
            await self.ws.send_bytes(data[i : i + step])
        self.position += len(data) / bytes_per_second

    async def receive(self, timeout_s: float = 10.0) -> dict[str, Any] | None:
        """The next server message (None once the socket closed)."""
        msg = await asyncio.wait_for(self.ws.receive(), timeout_s)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return None
        message: dict[str, Any] = json.loads(msg.data)
        assert message["version"] == "2" and message["id"] == self.id
        assert message["seq"] == self.serverseq + 1, (message, self.serverseq)
        assert message["clientseq"] <= self.seq
        self.serverseq = message["seq"]
        self.received.append(message)
        return message

    async def expect(self, kind: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Read until a message of this type (events on the way are kept)."""
        while True:
            message = await self.receive(timeout_s)
            assert message is not None, f"socket closed before {kind!r}; got {self.received}"
            if message["type"] == kind:
                return message
            assert message["type"] == "event", f"expected {kind!r}, got {message}"

    def events(self) -> list[dict[str, Any]]:
        return [e for m in self.received if m["type"] == "event" for e in m["parameters"]["entities"]]

    async def open(self, conversation_id: str | None = None, **parameters: object) -> dict[str, Any]:
        params: dict[str, object] = {
            "organizationId": ORG,
            "conversationId": conversation_id or str(uuid.uuid4()),
            "participant": {"id": str(uuid.uuid4()), "ani": "+1-555-0100", "aniName": "A", "dnis": "+1-800"},
            "media": OFFERS,
        }
        params.update(parameters)
        await self.send("open", params)
        return await self.expect("opened")

    async def close(self, reason: str = "end") -> dict[str, Any]:
        await self.send("close", {"reason": reason})
        return await self.expect("closed", timeout_s=15)


async def connect(
    http: aiohttp.ClientSession,
    worker: Worker,
    api_key: str = "key-1",
    secret: bytes | None = None,
    **kw: Any,
) -> Hook:
    session_id = kw.pop("session_id", None) or str(uuid.uuid4())
    headers = upgrade_headers(
        api_key, session_id=session_id, secret=secret, authority=f"127.0.0.1:{worker.port}", **kw
    )
    ws = await http.ws_connect(url(worker), headers=headers)
    return Hook(ws, session_id)
