"""No module of src/ grows past 800 lines: past that, a module holds more than one idea and a
newcomer cannot read it in one sitting (split it by owner, as bus/redis/ is)."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "asr_worker"
MAX_LINES = 800


def test_no_module_is_over_800_lines() -> None:
    sizes = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in SRC.rglob("*.py")}
    assert len(sizes) > 50
    too_long = {str(path.relative_to(SRC)): n for path, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"over {MAX_LINES} lines: {too_long}"
