"""Fixtures: a real worker on a free port, and clients that talk to it over real sockets."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from asr_worker import compiled
from asr_worker.config import Settings, settings_with
from asr_worker.providers.base import Provider
from asr_worker.providers.mock import MockOptions, MockProvider
from asr_worker.worker import Worker
from tests.support.speech import Speech

# Property-based tests run the same examples on every run (derandomized, no example database),
# so CI can never fail on a fresh random seed that no local run saw; time limits are off, since
# a shared 2-core machine makes per-example timing meaningless. `HYPOTHESIS_PROFILE=hunt`
# explores with fresh random seeds and many more examples (tests/support/fuzz.py scales them).
hypothesis_settings.register_profile(
    "repeatable",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
hypothesis_settings.register_profile(
    "hunt", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """The hot modules are compiled next to their sources (setup.py); after an edit, Python
    would still import the old compiled code, and the suite would test that. Refuse."""
    if os.environ.get("ASR_INTERPRETED") == "1":
        return  # the sources run
    if stale := compiled.stale_modules():
        names = ", ".join(str(path.relative_to(compiled.PACKAGE_DIR.parent)) for path in stale)
        pytest.exit(
            f"changed since they were compiled: {names}. Rebuild with `.venv/bin/pip install -e .` "
            "(scripts/test.sh does), or run them from source with ASR_INTERPRETED=1",
            returncode=4,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def running_worker(provider: Provider | None = None, **overrides: Any) -> AsyncIterator[Worker]:
    """A worker serving on a free loopback port until the block ends (then drained);
    `fallback=` gives it a fallback provider object, `settings=` the settings the overrides
    apply to (loaded from an environment, say)."""
    fallback: Provider | None = overrides.pop("fallback", None)
    base: Settings | None = overrides.pop("settings", None)
    defaults: dict[str, object] = {"port": 0} if base is not None else {"port": 0, "provider": "mock"}
    settings = settings_with(base, **{**defaults, **overrides})
    worker = Worker(settings, provider=provider, fallback=fallback)
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    started = asyncio.create_task(worker.started.wait())
    done, _ = await asyncio.wait({serving, started}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if serving in done:
        started.cancel()
        await serving  # raises whatever stopped it
    assert started in done, "worker did not start"
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)


@pytest.fixture
def mock_provider() -> MockProvider:
    return MockProvider(MockOptions())


@pytest.fixture
async def worker(mock_provider: MockProvider) -> AsyncIterator[Worker]:
    async with running_worker(mock_provider) as w:
        yield w


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


def base_url(worker: Worker, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{worker.port}"


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """espeak-ng sentences, synthesized once per test session."""
    return Speech(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="session")
def natural_speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """The same sentences in Piper's voice, which speaks like a person: what the real engine's
    accuracy is judged on (espeak-ng's formant speech hides some errors and makes others at 8 kHz)."""
    return Speech(tmp_path_factory.mktemp("natural-speech"), natural=True)
