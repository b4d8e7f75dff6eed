"""/health, /ready, /metrics and /v1/sessions report the worker's real state."""

from __future__ import annotations

import aiohttp

from asr_worker import __version__, compiled
from asr_worker.providers.mock import MockProvider
from asr_worker.worker import Worker
from tests.conftest import base_url, running_worker
from tests.support.audio import frames, speechlike
from tests.support.client import connect


async def _json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_health_has_the_old_workers_fields_from_real_state(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    status, idle = await _json(http, f"{base_url(worker)}/health")
    assert status == 200
    assert idle["status"] == "ok" and idle["service"] == "asr-worker" and idle["provider"] == "mock"
    assert idle["activeBuffers"] == 0 and idle["activeConnections"] == 0
    call = await connect(http, worker, "live-1")
    await call.send_frames(frames(speechlike(0.4)))
    await call.next_event("transcript")
    _, busy = await _json(http, f"{base_url(worker)}/health")
    assert busy["activeBuffers"] == 1 and busy["activeConnections"] == 1 and busy["activeSources"] == 1
    await call.end()
    await call.collect()
    _, after = await _json(http, f"{base_url(worker)}/health")
    assert after["activeBuffers"] == 0 and after["activeConnections"] == 0


async def test_sessions_lists_active_calls_with_their_state(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    call = await connect(http, worker, "listed", "encoding=mulaw&sample_rate=8000&tenant_id=acme")
    await call.send_frames([b"\x00" * 160] * 10)
    await call.next_event("transcript")
    status, body = await _json(http, f"{base_url(worker)}/v1/sessions")
    assert status == 200 and body["count"] == 1
    sessions = body["sessions"]
    assert isinstance(sessions, list) and len(sessions) == 1
    session = sessions[0]
    assert session["interaction_id"] == "listed" and session["tenant_id"] == "acme"
    assert session["encoding"] == "mulaw" and session["provider_state"] == "connected"
    assert session["phase"] == "active" and session["sources"] == 1 and session["audio_s"] == 0.2
    assert session["buffered_ms"] == session["unsent_ms"] + session["kept_for_replay_ms"]


async def test_ready_says_503_at_capacity_and_the_call_beyond_is_refused(http: aiohttp.ClientSession) -> None:
    async with running_worker(MockProvider(), max_sessions=2) as worker:
        status, body = await _json(http, f"{base_url(worker)}/ready")
        assert status == 200 and body == {"ready": True, "reason": "ready"}
        a = await connect(http, worker, "a")
        b = await connect(http, worker, "b")
        await a.next_event("session_started")
        await b.next_event("session_started")
        status, body = await _json(http, f"{base_url(worker)}/ready")
        assert status == 503 and body["reason"] == "at_capacity"
        c = await connect(http, worker, "c")
        refused = await c.next_event("error")
        assert refused["code"] == "capacity" and "limit of 2 calls" in str(refused["message"])
        await c.ws.receive()
        assert c.ws.close_code == 1013
        _, health = await _json(http, f"{base_url(worker)}/health")
        assert health["activeBuffers"] == 2  # the refusal disturbed nothing
        async with http.get(f"{base_url(worker)}/metrics") as response:
            assert 'asr_sessions_refused_total{reason="capacity"} 1.0' in await response.text()


async def test_metrics_are_prometheus_text_with_the_promised_families(
    worker: Worker, http: aiohttp.ClientSession
) -> None:
    call = await connect(http, worker, "measured")
    await call.send_frames(frames(speechlike(1.0)))
    await call.ws.send_bytes(b"\x01")
    await call.end()
    await call.collect()
    async with http.get(f"{base_url(worker)}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["asr_sessions_started_total"] == 1
    assert samples['asr_sessions_ended_total{reason="end"}'] == 1
    assert samples['asr_provider_connections_created_total{provider="mock"}'] == 1
    assert samples['asr_provider_connections_reused_total{provider="mock"}'] == 49
    assert samples["asr_audio_in_seconds_total"] == 1.0
    assert samples["asr_audio_out_seconds_total"] == 1.0
    assert samples['asr_errors_total{code="bad_audio"}'] == 1
    assert samples["asr_audio_frames_rejected_total"] == 1
    assert samples["asr_sessions_active"] == 0
    assert samples["asr_forward_wait_seconds_count"] >= 1
    # which build runs: the compiled hot path (a count of modules) or all interpreted (0)
    (build,) = [name for name in samples if name.startswith("asr_build_info{")]
    assert samples[build] == 1 and f'version="{__version__}"' in build
    compiled_count = int(build.split('compiled_modules="')[1].split('"')[0])
    assert (compiled_count > 0) == ("asr_worker.core.session" in compiled.compiled_modules())
    assert samples["asr_send_gap_seconds_count"] >= 1
    assert samples['asr_transcript_latency_seconds_count{kind="final"}'] >= 1
    assert "asr_provider_connections_reconnected_total" in text and "asr_audio_buffered_seconds" in text
    # the Prometheus client's standard process and runtime series, as every exporter has
    assert samples["process_resident_memory_bytes"] > 0 and samples["process_cpu_seconds_total"] > 0
    assert samples["process_open_fds"] > 0
    assert any(name.startswith("python_info{") for name in samples)
    assert any(name.startswith("python_gc_objects_collected_total{") for name in samples)
