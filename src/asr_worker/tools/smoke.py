"""`python -m asr_worker.tools.smoke [BASE_URL]`: is a deployed worker working end to end?

An operator runs it against a worker (default http://127.0.0.1:3001; the token from
`ASR_WORKER_TOKEN`). It plays a short recorded call (`data/smoke-call.wav`, speech, so the
local Whisper engine has something to transcribe) at real time into the ingest WebSocket and
checks what an operator would look at by hand: /health and its fields, /ready, the call's
interim and final transcripts and its `session_ended`, and from /metrics (read before and
after the call) that the call opened exactly one provider connection and that its audio went
to the provider without a gap of 250 ms or more. One line per check, `ok   ...` or
`FAIL ... : reason`; the exit status is 0 when every check passed, 1 when one failed (the last
line names which), 2 for a bad command line.

It needs nothing but the installed package: no test dependency, no speech synthesizer.
Run it on an idle worker: the metrics are the worker's totals, so another call made at the
same time would be counted too (the connection check says so when it sees one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Final, TextIO
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from .audio_files import AudioFile, AudioFileError, read_audio
from .protocols.ingest import IngestLeg, call_url
from .stream import Player

DEFAULT_URL: Final = "http://127.0.0.1:3001"
TOKEN_ENV: Final = "ASR_WORKER_TOKEN"
MAX_SEND_GAP_S: Final = 0.25
CHUNK_MS: Final = 20
# What /health must answer, with the JSON type each field has.
HEALTH_FIELDS: Final[dict[str, type | tuple[type, ...]]] = {
    "status": str,
    "service": str,
    "version": str,
    "provider": str,
    "activeBuffers": int,
    "activeConnections": int,
    "activeSources": int,
    "draining": bool,
}
CONNECTIONS_CREATED: Final = "asr_provider_connections_created_total"
SESSIONS_STARTED: Final = "asr_sessions_started_total"
SEND_GAP_BUCKET: Final = "asr_send_gap_seconds_bucket"
# After the last audio, how long the worker may take to finalize and end the call.
END_TIMEOUT_S: Final = 30.0
REQUEST_TIMEOUT_S: Final = 10.0


def packaged_call() -> AudioFile:
    """The call shipped with the package (see data/smoke-call.txt for what it says)."""
    with resources.as_file(resources.files(__package__ or "asr_worker.tools") / "data/smoke-call.wav") as p:
        return read_audio(p)


@dataclass
class Report:
    """The checks so far, each printed as it is made, so a hung step shows where it hung."""

    out: TextIO
    failed: list[str] = field(default_factory=list)
    passed: int = 0

    def check(self, name: str, ok: bool, detail: str) -> bool:
        if ok:
            self.passed += 1
            print(f"ok   {name}: {detail}", file=self.out, flush=True)
        else:
            self.failed.append(name)
            print(f"FAIL {name} : {detail}", file=self.out, flush=True)
        return ok


class Stop(Exception):
    """A check failed in a way that makes the remaining ones meaningless (worker down, refused)."""


# ---------------------------------------------------------------------------------------------
# /metrics: the few series the checks need, from Prometheus' text format.

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """Every sample line of a Prometheus text exposition (comments and junk skipped)."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        samples.append(Sample(name, dict(_LABEL.findall(labels or "")), number))
    return samples


@dataclass(frozen=True)
class MetricsSnapshot:
    """The totals the checks compare before and after the call."""

    connections_created: float
    sessions_started: float
    send_gap_buckets: dict[float, float]  # upper bound (seconds, inf last) -> cumulative count

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> MetricsSnapshot:
        def total(name: str) -> float:
            values = [s.value for s in samples if s.name == name]
            if not values:
                raise ValueError(f"/metrics has no {name}")
            return sum(values)

        buckets = {float(s.labels["le"]): s.value for s in samples if s.name == SEND_GAP_BUCKET}
        if math.inf not in buckets:
            raise ValueError(f"/metrics has no {SEND_GAP_BUCKET}")
        return cls(total(CONNECTIONS_CREATED), total(SESSIONS_STARTED), buckets)


def largest_gap_bound_s(before: MetricsSnapshot, after: MetricsSnapshot) -> tuple[int, float]:
    """(sends observed, the smallest bucket bound that holds every gap observed in between):
    the histogram's answer to "how long was the longest gap", to its bucket's precision."""
    deltas = {
        le: after.send_gap_buckets[le] - before.send_gap_buckets.get(le, 0.0) for le in after.send_gap_buckets
    }
    count = deltas[math.inf]
    bound = min(le for le, cumulative in deltas.items() if cumulative >= count)
    return round(count), bound


# ---------------------------------------------------------------------------------------------
# The call.


@dataclass
class CallEvents:
    interaction_id: str
    started: bool = False
    interims: list[str] = field(default_factory=list)
    finals: list[str] = field(default_factory=list)
    ended: dict[str, object] | None = None
    errors: list[str] = field(default_factory=list)

    def take(self, event: dict[str, object]) -> None:
        kind = event.get("type")
        text = str(event.get("text") or "").strip()
        if kind == "session_started":
            self.started = True
        elif kind == "transcript" and text:
            (self.finals if event.get("is_final") else self.interims).append(text)
        elif kind == "session_ended":
            self.ended = event
        elif kind == "error":
            self.errors.append(f"{event.get('code')}: {event.get('message')}")


async def play_call(http: aiohttp.ClientSession, ws_url: str, audio: AudioFile, events: CallEvents) -> None:
    """Send `audio` at real time in 20 ms messages, then `end`, and collect the call's events
    until the worker closes the socket after `session_ended`."""
    async with http.ws_connect(ws_url, max_msg_size=1 << 22) as ws, asyncio.TaskGroup() as tg:
        tg.create_task(Player(audio, CHUNK_MS, speed=1.0).play(IngestLeg(ws)))
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                event = json.loads(msg.data)
            except ValueError:
                event = None
            if isinstance(event, dict):
                events.take(event)
            else:
                events.errors.append(f"not a JSON event: {str(msg.data)[:80]!r}")


# ---------------------------------------------------------------------------------------------
# The checks.


async def smoke(base_url: str, token: str | None, audio: AudioFile, out: TextIO) -> Report:
    """Run every check against the worker at `base_url`, printing each; the report says which failed."""
    report = Report(out)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
        try:
            await _check_health(http, base_url, report)
            await _check_ready(http, base_url, token, report)
            before = await _metrics(http, base_url, report)
            events = await _check_call(http, base_url, audio, report)
            after = await _metrics(http, base_url, report)
        except Stop:
            return report
        _check_connections(before, after, report)
        _check_send_gaps(before, after, report)
        if events.errors:
            report.check("no error events", False, "; ".join(events.errors[:3]))
    return report


async def _get(http: aiohttp.ClientSession, base_url: str, path: str, report: Report) -> tuple[int, bytes]:
    """GET `path` under `base_url`; a worker that cannot be reached stops the smoke test."""
    try:
        async with http.get(base_url.rstrip("/") + path) as response:
            return response.status, await response.read()
    except aiohttp.ClientConnectorError as exc:
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        reason = "connection refused (is the worker running, on this address?)" if refused else str(exc)
        report.check("worker reachable", False, f"cannot connect to {base_url}: {reason}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        report.check(
            "worker reachable", False, f"GET {path} on {base_url} failed: {type(exc).__name__} {exc}"
        )
    raise Stop


async def _check_health(http: aiohttp.ClientSession, base_url: str, report: Report) -> None:
    status, body = await _get(http, base_url, "/health", report)
    health = _json_object(body)
    if status != 200 or health is None:
        report.check("/health", False, f"HTTP {status}, expected 200 with a JSON object")
        return
    wrong = [
        name
        for name, kind in HEALTH_FIELDS.items()
        if name not in health
        or not isinstance(health[name], kind)
        or (kind is int and isinstance(health[name], bool))
    ]
    if wrong:
        report.check("/health", False, f"missing or mistyped fields: {', '.join(wrong)}")
        return
    report.check(
        "/health",
        health["status"] == "ok",
        f"status {health['status']}, service {health['service']} {health['version']}, "
        f"provider {health['provider']}, activeBuffers {health['activeBuffers']}, "
        f"activeConnections {health['activeConnections']}"
        + ("" if health["status"] == "ok" else f", checks {json.dumps(health.get('checks'))}"),
    )


async def _check_ready(http: aiohttp.ClientSession, base_url: str, token: str | None, report: Report) -> None:
    status, body = await _get(http, base_url, "/ready", report)
    if status == 401:
        why = (
            f"the worker refused the token in {TOKEN_ENV}"
            if token
            else f"the worker needs a token and {TOKEN_ENV} is not set"
        )
        report.check("/ready", False, f"HTTP 401: {why}; set {TOKEN_ENV} to the worker's token")
        raise Stop
    answer = _json_object(body) or {}
    report.check("/ready", status == 200, f"HTTP {status}, {answer.get('reason', 'no reason given')}")


async def _metrics(http: aiohttp.ClientSession, base_url: str, report: Report) -> MetricsSnapshot:
    status, body = await _get(http, base_url, "/metrics", report)
    try:
        if status != 200:
            raise ValueError(f"HTTP {status}")
        return MetricsSnapshot.of(parse_metrics(body.decode("utf-8", "replace")))
    except ValueError as exc:
        report.check("/metrics", False, str(exc))
        raise Stop from None


async def _check_call(
    http: aiohttp.ClientSession, base_url: str, audio: AudioFile, report: Report
) -> CallEvents:
    events = CallEvents(f"smoke-{secrets.token_hex(4)}")
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = f"{parts.path.rstrip('/')}/v1/audio/{events.interaction_id}"
    ws_url = call_url(urlunsplit((scheme, parts.netloc, path, "", "")), events.interaction_id, audio.fmt)
    try:
        async with asyncio.timeout(audio.duration_s + END_TIMEOUT_S):
            await play_call(http, ws_url, audio, events)
    except aiohttp.WSServerHandshakeError as exc:
        report.check("call", False, f"the ingest WebSocket refused the call: HTTP {exc.status} {exc.message}")
        raise Stop from None
    except (aiohttp.ClientError, OSError) as exc:
        report.check("call", False, f"the ingest WebSocket failed: {type(exc).__name__} {exc}")
        raise Stop from None
    except TimeoutError:
        report.check("call", False, f"no session_ended within {END_TIMEOUT_S:.0f} s of the call's last audio")
    call = f"{events.interaction_id}, {audio.duration_s:.1f} s of {audio.fmt.encoding} at real time"
    report.check(
        "call", events.started, f"{call}, " + ("session_started" if events.started else "no session_started")
    )
    report.check(
        "interim transcripts",
        bool(events.interims),
        f"{len(events.interims)} with text, last {events.interims[-1]!r}"
        if events.interims
        else "none with text",
    )
    report.check(
        "final transcripts",
        bool(events.finals),
        f"{len(events.finals)} with text: {' '.join(events.finals)!r}" if events.finals else "none with text",
    )
    ended = events.ended
    report.check(
        "session_ended",
        ended is not None,
        f"reason {ended.get('reason')}, audio {ended.get('audio_s')} s" if ended else "never arrived",
    )
    return events


def _check_connections(before: MetricsSnapshot, after: MetricsSnapshot, report: Report) -> None:
    created = round(after.connections_created - before.connections_created)
    started = round(after.sessions_started - before.sessions_started)
    if started != 1:
        detail = (
            f"{started} sessions started during the smoke call (run it on an idle worker); {created} opened"
        )
        report.check("one provider connection", False, detail)
        return
    report.check("one provider connection", created == 1, f"{created} opened for the call")


def _check_send_gaps(before: MetricsSnapshot, after: MetricsSnapshot, report: Report) -> None:
    sends, bound = largest_gap_bound_s(before, after)
    if sends == 0:
        report.check("audio forwarded continuously", False, "no audio sends to the provider were recorded")
        return
    shown = "over 5 s" if math.isinf(bound) else f"at most {bound * 1000:.0f} ms"
    limit = f"under {MAX_SEND_GAP_S * 1000:.0f} ms"
    report.check(
        "audio forwarded continuously",
        bound <= MAX_SEND_GAP_S,
        f"largest send gap {shown} ({limit} required) over {sends} sends",
    )


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------------------------------------
# The command.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m asr_worker.tools.smoke",
        description=(
            "Smoke-test a running worker: /health, /ready, one short call at real time through "
            f"the ingest WebSocket, and /metrics. The token comes from {TOKEN_ENV}. "
            "Exit status 0: every check passed; 1: one failed; 2: bad arguments."
        ),
    )
    parser.add_argument(
        "base_url", nargs="?", default=DEFAULT_URL, help=f"the worker's HTTP URL [{DEFAULT_URL}]"
    )
    parser.add_argument(
        "--audio",
        default=None,
        help="play this WAV file (PCM16, mu-law or A-law, with speech) instead of the packaged call",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    out: TextIO = sys.stdout,
    env: Callable[[str], str | None] = os.environ.get,
) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    base_url: str = args.base_url
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        parser.error(f"BASE_URL must be an http:// or https:// URL such as {DEFAULT_URL}, not {base_url!r}")
    try:
        audio = read_audio(args.audio) if args.audio else packaged_call()
    except AudioFileError as exc:
        parser.error(str(exc))
    report = asyncio.run(smoke(base_url, env(TOKEN_ENV) or None, audio, out))
    if report.failed:
        print(f"smoke test FAILED against {base_url}: {', '.join(report.failed)}", file=out, flush=True)
        return 1
    print(f"smoke test passed against {base_url}: {report.passed} checks", file=out, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
