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
    assert "median ratio over 2 rounds" in result.stdout
    data = json.loads(figures.read_text())
    assert data["worker"]["ended"] == 1 and data["sdk"]["ended"] == 1
    assert data["worker"]["missing_frames"] == 0 and data["sdk"]["missing_frames"] == 0


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
