"""The benchmark runs (one call, one second): a smoke test, not a measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_deepgram_benchmark_runs_and_prints_its_table(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "bench.deepgram", "--calls", "1", "--seconds", "1"),
            *("--rounds", "2", "--json", str(figures)),
            *("--compare-env", "ASR_REDACT=pci", "--sink-digits"),  # what redacting every call costs
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for row in ("CPU time per call-second", "forward latency p99", "largest send gap", "memory per call"):
        assert row in result.stdout
    assert "asr-worker CPU / deepgram-sdk CPU" in result.stdout
    assert result.stdout.count("median ratio over 2 rounds") == 2
    assert "with ASR_REDACT=pci" in result.stdout
    data = json.loads(figures.read_text())
    assert data["worker"]["ended"] == 1 and data["sdk"]["ended"] == 1
    assert data["worker"]["missing_frames"] == 0 and data["sdk"]["missing_frames"] == 0


def test_the_flux_benchmark_runs_and_prints_its_table() -> None:
    """One turn on the mock engine: the table's rows, not the figures."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.flux", "--turns", "1", "--gap", "1.0", "--provider", "mock"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for row in ("Flux EagerEndOfTurn", "Flux EndOfTurn", "v1 first speech_final result", "v1 UtteranceEnd"):
        assert row in result.stdout
    assert "1 turn of people's speech" in result.stdout


def test_the_audiohook_benchmark_runs_and_prints_its_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.audiohook", "--sessions", "5", "--provider", "mock"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "open->opened p50" in result.stdout and "ready" in result.stdout


def test_the_bus_benchmark_runs_both_paths_and_loses_nothing(tmp_path: Path) -> None:
    """Two calls through the socket path, then through Redis shared by two workers."""
    figures = tmp_path / "figures.json"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "bench.bus", "--calls", "2", "--seconds", "1"),
            *("--workers", "2", "--entry-ms", "40", "--json", str(figures)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for row in ("worker CPU per call-second", "Redis CPU per call-second", "forward latency p99"):
        assert row in result.stdout
    assert "Redis path worker CPU / socket path worker CPU" in result.stdout
    data = json.loads(figures.read_text())
    assert data["socket"]["ended"] == 2 and data["redis"]["ended"] == 2
    assert data["socket"]["missing_frames"] == 0 and data["redis"]["missing_frames"] == 0
    assert data["redis"]["workers"] == 2


def test_the_local_engine_benchmark_ramps_two_leg_calls() -> None:
    """One two-leg conversation of two turns through a real worker: the harness's table, not the
    engine's figures (`python -m bench.local --parts capacity` prints them)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.local", "--parts", "capacity", "--steps", "1", "--turns", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for text in ("two-leg calls sustained", "WER people", "engine's measure, calls"):
        assert text in result.stdout, result.stdout


def test_the_redaction_benchmark_prints_its_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.redaction", "--transcripts", "200"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "no number (most transcripts)" in result.stdout and "a card in a sentence" in result.stdout


def test_the_dg_endpointing_benchmark_prints_its_table() -> None:
    """One value over the shortest set of people's recordings on the mock engine: the harness
    (deepgram-sdk against a dg-server it starts), not the local engine's figures."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "bench.dg_endpointing", "--endpointing", "300"),
            *("--sets", "phrases", "--provider", "mock"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "speech_final p50 ms" in result.stdout and "UtteranceEnd p50 ms" in result.stdout
    [row] = [line for line in result.stdout.splitlines() if line.startswith("| 300 ")]
    assert row.split("|")[3].strip() == "2", row  # the set's two utterances
    assert not result.stderr, result.stderr  # no warning printed
