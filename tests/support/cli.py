"""The `asr-worker` command as a user runs it, and the rule for what it may print: no Python
warning and no traceback ever reaches a user's terminal or a worker's log. pytest turns
warnings inside the suite into failures; these checks do the same for the processes it starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping

CLI = [sys.executable, "-m", "asr_worker"]

# What Python's warnings module prints ("path:line: UserWarning: ...") and an uncaught exception.
_NOISE = re.compile(r"^.*\b[A-Z]\w*Warning: |^Traceback \(most recent call last\):", re.MULTILINE)


def assert_clean_stderr(stderr: str | bytes) -> None:
    """Fail if a command's stderr holds a Python warning or a traceback."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    found = _NOISE.search(text)
    assert found is None, f"a command printed a Python warning or traceback:\n{text}"


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`asr-worker ARGS...` to completion; its stderr is checked for warnings and tracebacks."""
    result = subprocess.run(
        [*CLI, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_clean_stderr(result.stderr)
    return result
