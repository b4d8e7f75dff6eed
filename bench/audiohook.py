"""How soon a Genesys AudioHook `open` is answered with `opened` when many sessions open at once.

    .venv/bin/python -m bench.audiohook [--sessions 200] [--provider local|mock]

Starts a worker (`asr-worker serve`, its own process) and, from this process, opens `--sessions`
AudioHook sessions at once, each with a signed upgrade request (X-API-KEY and an HMAC
signature) and an `open` for its own call; measures the time from sending `open` to receiving
`opened`, and from starting the upgrade to `opened`. It does this twice: as soon as the worker
listens (the local engine's model still loading) and again once it is ready. Genesys fails a
session whose `opened` takes more than about 5 s. Prints one row per round.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import sys
import time
import uuid

import aiohttp

KEY = "bench-key"
SECRET = b"bench client secret, 32 bytes.."
ORG = str(uuid.uuid4())
MEDIA = [{"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signed_headers(port: int, session_id: str) -> dict[str, str]:
    headers = {
        "Audiohook-Organization-Id": ORG,
        "Audiohook-Session-Id": session_id,
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "X-API-KEY": KEY,
    }
    components = [
        ("@request-target", "/v1/audiohook"),
        ("@authority", f"127.0.0.1:{port}"),
        *((name.lower(), value) for name, value in headers.items()),
    ]
    created = int(time.time())
    nonce = base64.b64encode(os.urandom(18)).decode()
    names = " ".join(f'"{name}"' for name, _ in components)
    params = (
        f'({names});keyid="{KEY}";nonce="{nonce}";alg="hmac-sha256";created={created};expires={created + 30}'
    )
    base = "\n".join([*(f'"{n}": {v}' for n, v in components), f'"@signature-params": {params}'])
    signature = base64.b64encode(hmac.new(SECRET, base.encode(), hashlib.sha256).digest()).decode()
    return {**headers, "Signature-Input": f"sig1={params}", "Signature": f"sig1=:{signature}:"}


async def one_session(http: aiohttp.ClientSession, port: int, start: asyncio.Event) -> tuple[float, float]:
    """(open -> opened, upgrade start -> opened) in seconds."""
    session_id = str(uuid.uuid4())
    await start.wait()
    t0 = time.perf_counter()
    async with http.ws_connect(
        f"ws://127.0.0.1:{port}/v1/audiohook", headers=signed_headers(port, session_id)
    ) as ws:
        message = {
            "version": "2",
            "id": session_id,
            "seq": 1,
            "serverseq": 0,
            "position": "PT0S",
            "type": "open",
            "parameters": {
                "organizationId": ORG,
                "conversationId": str(uuid.uuid4()),
                "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
                "media": MEDIA,
            },
        }
        t1 = time.perf_counter()
        await ws.send_str(json.dumps(message))
        opened = json.loads((await ws.receive(timeout=30)).data)
        t2 = time.perf_counter()
        assert opened["type"] == "opened", opened
        close = {**message, "seq": 2, "serverseq": 1, "type": "close", "parameters": {"reason": "end"}}
        await ws.send_str(json.dumps(close))
        while json.loads((await ws.receive(timeout=30)).data)["type"] != "closed":
            pass
    return t2 - t1, t2 - t0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def round_of(http: aiohttp.ClientSession, port: int, sessions: int) -> tuple[list[float], list[float]]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(one_session(http, port, start)) for _ in range(sessions)]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*tasks)
    return [r[0] for r in results], [r[1] for r in results]


async def ready(http: aiohttp.ClientSession, port: int, path: str) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{port}{path}") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def until(http: aiohttp.ClientSession, port: int, path: str) -> None:
    async with asyncio.timeout(120):
        while not await ready(http, port, path):  # noqa: ASYNC110 - another process's state
            await asyncio.sleep(0.02)


async def run(sessions: int, provider: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "ASR_PROVIDER": provider,
        "ASR_AUDIOHOOK_API_KEYS": f"{KEY}:{base64.b64encode(SECRET).decode()}",
        "ASR_MAX_SESSIONS": str(max(1000, 2 * sessions)),
        "ASR_LOG_LEVEL": "warning",
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asr_worker", "serve", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    rows = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            await until(http, port, "/health")
            loading = " (model loading)" if not await ready(http, port, "/ready") else ""
            rows.append((f"as it starts{loading}", *await round_of(http, port, sessions)))
            await until(http, port, "/ready")
            rows.append(("ready", *await round_of(http, port, sessions)))
    finally:
        worker.terminate()
        await asyncio.wait_for(worker.wait(), 30)
    print(f"AudioHook `open` -> `opened`, {sessions} sessions opening at once, provider {provider}")
    print(
        f"{'round':28} {'open->opened p50':>17} {'p99':>9} {'max':>9} {'upgrade->opened p50':>20} {'p99':>9}"
    )
    for name, opened, total in rows:
        ms = [
            percentile(opened, 50),
            percentile(opened, 99),
            max(opened),
            percentile(total, 50),
            percentile(total, 99),
        ]
        print(
            f"{name:28} {ms[0] * 1000:14.1f} ms {ms[1] * 1000:6.1f} ms {ms[2] * 1000:6.1f} ms "
            f"{ms[3] * 1000:17.1f} ms {ms[4] * 1000:6.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--provider", choices=("local", "mock"), default="local")
    args = parser.parse_args()
    asyncio.run(run(args.sessions, args.provider))


if __name__ == "__main__":
    main()
