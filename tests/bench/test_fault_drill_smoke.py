"""The fault drill runs: one call at a time for 18 s (calls of 7.7, 6.3 and 7.9 s, so SIGTERM
falls 4 s into the third), one 429, one dropped connection, and an outage 7.2 s in for 4.5 s
(the first call moves to the fallback, the second may start during it). A smoke test of the harness,
not the drill itself (`python -m bench.fault_drill`, 30 minutes, reported in the README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_fault_drill_runs_and_prints_its_table(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    faults = "drop_after_ms=2000,fault_connections=1,reject_status=429,reject_count=1,retry_after_s=1"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "bench.fault_drill", "--calls", "1", "--minutes", "0.3"),
            *("--call-seconds", "6-8", "--faults", faults, "--json", str(figures)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for row in (
        "words expected / lost / repeated",
        "frames lost",
        "transcript latency",
        "first fallback final",
    ):
        assert row in result.stdout
    data = json.loads(figures.read_text())
    injected = data["injected"]
    assert injected["drop"] == 1 and injected["reject_429"] == 1 and data["reconnects"] >= 1
    assert injected["outage_drop"] == 1 and injected["reject_503"] >= 1
    assert data["live_at_outage"] == data["live_moved"] == 1 and data["outage_gap_ms"][0] > 0
    assert data["words_expected"] > 0 and data["words_lost"] == 0 and data["words_repeated"] == 0
    assert data["frames_lost"] == 0
    assert data["completed"] >= 1
    assert data["shutdown"] == data["live_at_sigterm"] == data["drained_exact"] == 1
    assert data["exit_code"] == 0 and all(data["goals"].values())
