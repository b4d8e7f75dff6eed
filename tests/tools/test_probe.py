"""The container's health check command (`python -m asr_worker.tools.probe`): where it asks,
and what it answers for a ready worker, a wrong token and no worker. The image's own HEALTHCHECK
runs it from the built image (tests/deploy/test_image.py)."""

from __future__ import annotations

import asyncio

import pytest

from asr_worker.credentials import Secret
from asr_worker.tools.probe import probe, ready_url
from tests.conftest import free_port, running_worker


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "http://127.0.0.1:3001/ready"),
        ({"HOST": "0.0.0.0", "PORT": "8080"}, "http://127.0.0.1:8080/ready"),
        ({"HOST": "::", "PORT": "8080"}, "http://[::1]:8080/ready"),
        ({"HOST": "10.1.2.3"}, "http://10.1.2.3:3001/ready"),
        ({"HOST": "fd00::5"}, "http://[fd00::5]:3001/ready"),
        ({"HOST": "worker.internal", "PORT": " 81 "}, "http://worker.internal:81/ready"),
    ],
)
def test_it_asks_the_address_the_worker_listens_on(env: dict[str, str], url: str) -> None:
    assert ready_url(env) == url


async def test_a_ready_worker_passes_and_a_wrong_token_or_no_worker_fails() -> None:
    async with running_worker(worker_token=Secret("probe-token")) as worker:
        env = {"HOST": "0.0.0.0", "PORT": str(worker.port)}
        assert await asyncio.to_thread(probe, {**env, "ASR_WORKER_TOKEN": "probe-token"}) == (
            True,
            f"http://127.0.0.1:{worker.port}/ready: HTTP 200",
        )
        ok, line = await asyncio.to_thread(probe, {**env, "ASR_WORKER_TOKEN": "wrong"})
        assert not ok and "HTTP 401" in line and "wrong" not in line
    ok, line = await asyncio.to_thread(probe, {"PORT": str(free_port())})
    assert not ok and "Connection refused" in line
