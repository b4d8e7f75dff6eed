"""scripts/smoke.sh, the operator's smoke test, as an operator runs it: a real process against a
real worker process (the mock provider for the plumbing, the local engine once), against no
worker at all, and against workers that break one check each. Every run must keep stderr empty:
no Python warning, no traceback."""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from asr_worker.tools.smoke import (
    MetricsSnapshot,
    largest_gap_bound_s,
    packaged_call,
    parse_metrics,
)
from tests.conftest import free_port
from tests.support.smoke import SmokeRun, run_smoke, serve_worker, worker_env

SERVE = [sys.executable, "-m", "asr_worker", "serve"]
TOKEN = "smoke-test-token"
EXPECTED_CHECKS = [
    "/health",
    "/ready",
    "call",
    "interim transcripts",
    "final transcripts",
    "session_ended",
    "one provider connection",
    "audio forwarded continuously",
]


def check_name(line: str) -> str:
    """The check an `ok   NAME: detail` or `FAIL NAME : reason` line is about."""
    return line[5:].split(" : " if line.startswith("FAIL") else ": ", maxsplit=1)[0]


def assert_all_passed(run: SmokeRun, url: str) -> None:
    assert run.returncode == 0, run.explain()
    assert run.stderr == "", run.explain()
    assert [check_name(line) for line in run.passed] == EXPECTED_CHECKS, run.explain()
    assert not run.failed
    assert run.lines[-1] == f"smoke test passed against {url}: {len(EXPECTED_CHECKS)} checks"


def assert_failed(run: SmokeRun, check: str, *reason: str) -> str:
    """Exit 1, one FAIL line for `check` whose reason has every text in `reason`, the last line
    naming it, and nothing on stderr. Returns that FAIL line."""
    assert run.returncode == 1, run.explain()
    assert run.stderr == "", run.explain()
    lines = [line for line in run.failed if line.startswith(f"FAIL {check} : ")]
    assert len(lines) == 1, run.explain()
    for text in reason:
        assert text in lines[0], run.explain()
    assert run.lines[-1].startswith("smoke test FAILED against ") and check in run.lines[-1], run.explain()
    return lines[0]


async def test_passes_against_a_worker_with_a_token(tmp_path: Path) -> None:
    env = worker_env(ASR_PROVIDER="mock", ASR_WORKER_TOKEN=TOKEN)
    async with serve_worker(SERVE, env, tmp_path / "worker.log", TOKEN) as worker:
        run = await run_smoke(worker.url, token=TOKEN)
    assert_all_passed(run, worker.url)
    assert TOKEN not in run.stdout


async def test_passes_against_the_local_engine_on_its_defaults(tmp_path: Path) -> None:
    """The worker as shipped: the embedded Whisper engine, which says nothing without speech."""
    env = worker_env()
    env.pop("ASR_PROVIDER", None)
    async with serve_worker(SERVE, env, tmp_path / "worker.log") as worker:
        run = await run_smoke(worker.url)
    assert_all_passed(run, worker.url)
    final = next(line for line in run.passed if line.startswith("ok   final transcripts"))
    assert "how can i help you today" in final.lower(), run.explain()


async def test_a_worker_that_is_down_is_one_fail_line_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = await run_smoke(url)
    line = assert_failed(run, "worker reachable", url, "connection refused")
    assert run.lines == [line, f"smoke test FAILED against {url}: worker reachable"]


@pytest.mark.parametrize("token", [None, "not-the-token"])
async def test_a_missing_or_wrong_token_says_to_set_it(tmp_path: Path, token: str | None) -> None:
    env = worker_env(ASR_PROVIDER="mock", ASR_WORKER_TOKEN=TOKEN)
    async with serve_worker(SERVE, env, tmp_path / "worker.log", TOKEN) as worker:
        run = await run_smoke(worker.url, token=token)
    assert_failed(run, "/ready", "HTTP 401", "set ASR_WORKER_TOKEN to the worker's token")
    assert run.passed == [line for line in run.lines if line.startswith("ok   /health")], run.explain()
    assert "not-the-token" not in run.stdout


async def test_a_call_that_needs_a_second_provider_connection_fails_that_check(tmp_path: Path) -> None:
    """The mock provider drops its first stream after 2 s of audio: the call still completes
    (replayed on a new connection), and the smoke test says that it took two."""
    env = worker_env(ASR_PROVIDER="mock", ASR_MOCK="drop_after_ms=2000,drop_streams=1")
    async with serve_worker(SERVE, env, tmp_path / "worker.log") as worker:
        run = await run_smoke(worker.url)
    assert_failed(run, "one provider connection", "2 opened")
    assert [check_name(line) for line in run.passed] == [
        name for name in EXPECTED_CHECKS if name != "one provider connection"
    ], run.explain()


@pytest.fixture
async def fake_worker() -> AsyncIterator[str]:
    """An HTTP server that answers /health with 200 but only some of its fields."""

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "asr-worker", "activeBuffers": "0"})

    app = web.Application()
    app.add_routes([web.get("/health", health)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_health_answer_without_its_fields_fails_naming_them(fake_worker: str) -> None:
    run = await run_smoke(fake_worker)
    line = assert_failed(run, "/health", "missing or mistyped fields")
    assert "activeBuffers" in line and "provider" in line and "activeConnections" in line
    assert "status" not in line and "service" not in line
    # /ready and /metrics are missing (404) too; no call is tried without metrics to check it by
    assert [check_name(line) for line in run.failed] == ["/health", "/ready", "/metrics"], run.explain()


async def test_a_bad_url_is_a_usage_error() -> None:
    run = await run_smoke("localhost:3001")
    assert run.returncode == 2
    assert "BASE_URL must be an http:// or https:// URL" in run.stderr
    assert "Traceback" not in run.stderr and "Warning" not in run.stderr


def test_the_packaged_call_is_short_telephone_speech() -> None:
    call = packaged_call()
    assert (str(call.fmt.encoding), call.fmt.sample_rate, call.fmt.channels) == ("mulaw", 8000, 1)
    assert 3.0 <= call.duration_s <= 8.0
    assert len(call.data) < 64_000


def metrics(calls: int, gaps_by_bound: tuple[int, int, int, int]) -> str:
    """A worker's /metrics after `calls` calls, one connection each, whose send gaps fall in
    the buckets 100 ms, 250 ms, 500 ms, +Inf (cumulative counts)."""
    b01, b025, b05, inf = gaps_by_bound
    return f"""# HELP asr_sessions_started_total Sessions started.
# TYPE asr_sessions_started_total counter
asr_sessions_started_total {calls}.0
asr_provider_connections_created_total{{provider="local"}} {calls}.0
asr_send_gap_seconds_bucket{{le="0.1"}} {b01}.0
asr_send_gap_seconds_bucket{{le="0.25"}} {b025}.0
asr_send_gap_seconds_bucket{{le="0.5"}} {b05}.0
asr_send_gap_seconds_bucket{{le="+Inf"}} {inf}.0
asr_send_gap_seconds_count {inf}.0
"""


def snapshot(calls: int, gaps_by_bound: tuple[int, int, int, int]) -> MetricsSnapshot:
    return MetricsSnapshot.of(parse_metrics(metrics(calls, gaps_by_bound)))


def test_the_largest_gap_is_the_smallest_bucket_holding_every_new_gap() -> None:
    before = snapshot(3, (10, 12, 13, 13))
    assert (before.sessions_started, before.connections_created) == (3.0, 3.0)
    assert before.send_gap_buckets == {0.1: 10.0, 0.25: 12.0, 0.5: 13.0, math.inf: 13.0}
    assert largest_gap_bound_s(before, snapshot(4, (60, 62, 63, 63))) == (50, 0.1)
    # one new gap between 100 and 250 ms (the old one over 250 ms does not count)
    assert largest_gap_bound_s(before, snapshot(4, (60, 63, 64, 64))) == (51, 0.25)
    assert largest_gap_bound_s(before, snapshot(4, (60, 62, 64, 64))) == (51, 0.5)
    assert largest_gap_bound_s(before, snapshot(4, (10, 12, 13, 14))) == (1, math.inf)


def test_metrics_without_the_series_are_an_error() -> None:
    with pytest.raises(ValueError, match="asr_send_gap_seconds_bucket"):
        MetricsSnapshot.of(parse_metrics(metrics(1, (1, 1, 1, 1)).replace('{le="+Inf"}', '{le="9"}')))
    with pytest.raises(ValueError, match="/metrics has no asr_"):
        MetricsSnapshot.of(parse_metrics("<html>not found</html>\n"))
