"""The `asr-worker` command as a user runs it, and the rule for what it may print: no Python
warning and no traceback ever reaches a user's terminal or a worker's log. pytest turns
warnings inside the suite into failures; these checks do the same for the processes it starts."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

CLI = [sys.executable, "-m", "asr_worker"]

# What Python's warnings module prints ("path:line: UserWarning: ...") and an uncaught exception.
_NOISE = re.compile(r"^.*\b[A-Z]\w*Warning: |^Traceback \(most recent call last\):", re.MULTILINE)


def assert_clean_stderr(stderr: str | bytes) -> None:
    """Fail if a command's stderr holds a Python warning or a traceback."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    found = _NOISE.search(text)
    assert found is None, f"a command printed a Python warning or traceback:\n{text}"


@asynccontextmanager
async def logging_command(
    *args: str, env: Mapping[str, str], log_path: Path, until_logged: str, timeout_s: float = 20.0
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`asr-worker ARGS...` running, its stderr (the JSON log) in `log_path`, from the moment
    its log says `until_logged` (it must not exit before); sent SIGTERM and awaited at the
    block's end. Read the log after the block: it is then whole."""
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *CLI, *args, env={**os.environ, **env}, stdout=asyncio.subprocess.DEVNULL, stderr=log_file
        )
        try:
            async with asyncio.timeout(timeout_s):
                while until_logged not in (logged := _read(log_path)):
                    assert process.returncode is None, logged
                    await asyncio.sleep(0.05)
            yield process
        finally:
            if process.returncode is None:
                process.terminate()
            await process.wait()


def _read(path: Path) -> str:
    """A small log file, read at once (a test's poll, not a hot path)."""
    return path.read_text()


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
