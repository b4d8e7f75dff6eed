"""Every page for a route opens with its try-it command, and that command works as written on
a fresh clone, without a network: the test reads the page's first code block, starts what the
block starts (the worker with the environment it gives, `dg-server` with its faults, Redis for
the bus), and runs each `asr-worker stream` or `publish` line as a user would (a process),
with the call file and the ports of the servers it started. The speech engines are the mock's,
to keep it fast: what is tried is the routes, the commands and what they print. Deepgram's
failover walk is run the same way, and must show the move in `stream`'s normal output.

Every `--protocol` of `asr-worker stream` must be tried on some page, so a route added later
comes with its page's command. A page of several routes (docs/pbx-and-platforms.md) opens each
route's section with that route's line, run with the worker the page's opening block starts."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest

from asr_worker.config import load_settings
from asr_worker.core.audio import AudioFormat, Encoding
from asr_worker.dgserver import DeepgramServer, Faults
from asr_worker.providers.mock import MockProvider
from asr_worker.tools import protocols
from asr_worker.tools.audio_files import write_wav
from asr_worker.worker import Worker
from tests.conftest import running_worker
from tests.support.audio import silence, speechlike
from tests.support.cli import CLI, assert_clean_stderr
from tests.support.redis_server import RedisServer
from tests.support.wait import until

DOCS: Final = Path(__file__).resolve().parents[1] / "docs"
# The pages of the routes a call comes in by (and the bus); a page for a new route joins them.
ROUTE_PAGES: Final = (
    "ingest-and-events.md",
    "telephony.md",
    "audiohook.md",
    "openai-realtime.md",
    "deepgram.md",
    "redis-bus.md",
    "siprec.md",
    "pbx-and-platforms.md",
)
# Pages with a section per route, each opening with its one-line try-it command; the sections
# that are no route's.
SECTION_PAGES: Final = {"pbx-and-platforms.md": {"What every route does"}}
CALL: Final = "/tmp/call.wav"  # what the pages play (the README makes it)
WORKER_URL, DG_SERVER_URL = "ws://127.0.0.1:3001", "ws://127.0.0.1:3002"
ASR_WORKER: Final = ".venv/bin/asr-worker"
PCM16K: Final = AudioFormat(Encoding.LINEAR16, 16000, 1)
_FENCE: Final = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass
class TryIt:
    """What a try-it block starts and runs."""

    page: str
    worker_env: dict[str, str] | None = None  # `VAR=value ./scripts/serve.sh &`
    dg_server: list[str] | None = None  # `asr-worker dg-server ARGS &`
    commands: list[list[str]] = field(default_factory=list)  # `asr-worker stream|publish ...`


def opening_block(page: str) -> str:
    """The page's first code block, which must come before its first section."""
    text = (DOCS / page).read_text(encoding="utf-8")
    first = _FENCE.search(text)
    assert first is not None, f"{page} has no code block"
    assert "\n## " not in text[: first.start()], f"{page} does not open with its try-it command"
    return first.group(1)


def block_after(page: str, heading: str) -> str:
    text = (DOCS / page).read_text(encoding="utf-8")
    at = text.index(heading)
    found = _FENCE.search(text, at)
    assert found is not None, f"no code block after {heading!r} in {page}"
    return found.group(1)


def section_openings(page: str) -> dict[str, str]:
    """Each `## ` section's heading and the code block it opens with, for those that open with
    one (only blank lines between the heading and the block)."""
    text = (DOCS / page).read_text(encoding="utf-8")
    openings = {}
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading, _, body = section.partition("\n")
        first = _FENCE.match(body.lstrip("\n"))
        if first is not None:
            openings[heading] = first.group(1)
    return openings


def parse(page: str, block: str) -> TryIt:
    try_it = TryIt(page)
    for line in block.splitlines():
        words = [w for w in shlex.split(line, comments=True) if w != "&"]
        if not words:
            continue
        env = {}
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if words == ["./scripts/serve.sh"]:
            try_it.worker_env = env
        elif words[:2] == [ASR_WORKER, "dg-server"]:
            try_it.dg_server = words[2:]
        elif words[:1] == [ASR_WORKER] and words[1] in ("stream", "publish") and not env:
            try_it.commands.append(words[1:])
        else:
            raise AssertionError(f"{page}: a try-it line this test cannot run: {line!r}")
    assert try_it.commands, f"{page}'s try-it block runs no `asr-worker stream` or `publish`"
    return try_it


def wav(path: Path, seconds: float) -> Path:
    """A call of speech-like sound (the mock engine makes its own words of it), 16 kHz."""
    audio = b""
    for i in range(round(seconds / 1.4)):
        audio += speechlike(0.8, PCM16K, seed=i + 1) + silence(0.6, PCM16K)
    write_wav(path, audio, PCM16K)
    return path


@asynccontextmanager
async def started(try_it: TryIt, tmp_path: Path) -> AsyncIterator[tuple[Worker | None, int | None, str]]:
    """What the block starts: dg-server (its port), the worker, Redis for the bus (its URL)."""
    async with AsyncExitStack() as stack:
        dg_port = None
        if try_it.dg_server is not None:
            faults = Faults()
            if try_it.dg_server[:1] == ["--faults"]:
                faults = Faults.parse(try_it.dg_server[1])
            dg = await stack.enter_async_context(DeepgramServer(MockProvider(), faults=faults).running())
            dg_port = dg.port
        redis_url = ""
        worker = None
        if try_it.worker_env is not None:
            env = {"ASR_PROVIDER": "mock", **try_it.worker_env}
            if env.get("ASR_FALLBACK_PROVIDER"):
                env["ASR_FALLBACK_PROVIDER"] = "mock"
            if "DEEPGRAM_URL" in env:
                assert dg_port is not None, f"{try_it.page}: DEEPGRAM_URL but no dg-server started"
                env["DEEPGRAM_URL"] = env["DEEPGRAM_URL"].replace(DG_SERVER_URL, f"ws://127.0.0.1:{dg_port}")
            if env.get("PUBSUB_ADAPTER") == "redis_streams":
                server = RedisServer(tmp_path / "redis")
                server.start()
                stack.callback(server.kill)
                redis_url = env["REDIS_URL"] = server.url
            # the recording server and the AudioSocket port on free ports: `run` gives the
            # commands' --sip-port and --audiosocket-port those
            ports: dict[str, object] = {"siprec_port": 0} if "ASR_SIPREC_PORT" in env else {}
            if "ASR_AUDIOSOCKET_PORT" in env:
                ports["audiosocket_port"] = 0
            settings = load_settings(env)
            worker = await stack.enter_async_context(running_worker(None, settings=settings, **ports))
            if redis_url:
                await until(worker.bus.healthy)
        elif dg_port is None:
            worker = await stack.enter_async_context(running_worker())  # "with the worker running"
        yield worker, dg_port, redis_url


async def run(try_it: TryIt, tmp_path: Path, call: Path, *, together: bool = False) -> list[str]:
    """Each command's stdout, after it exited 0 with a clean stderr; one after the other, or
    all at once (`together`: commands that do not depend on each other, as separate calls)."""
    async with started(try_it, tmp_path) as (worker, dg_port, redis_url):

        async def one(command: list[str]) -> str:
            args = [str(call) if a == CALL else a for a in command]
            if worker is not None:
                args = [a.replace(WORKER_URL, f"ws://127.0.0.1:{worker.port}") for a in args]
                args = _sip_port(try_it, args, worker)
                args = _audiosocket_port(try_it, args, worker)
            if dg_port is not None:
                args = [a.replace(DG_SERVER_URL, f"ws://127.0.0.1:{dg_port}") for a in args]
            process = await asyncio.create_subprocess_exec(
                *CLI,
                *args,
                env={**os.environ, "REDIS_URL": redis_url} if redis_url else None,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, f"{try_it.page}: {shlex.join(command)}\n{err.decode()}"
            assert_clean_stderr(err)
            return out.decode()

        if together:
            return list(await asyncio.gather(*(one(command) for command in try_it.commands)))
        return [await one(command) for command in try_it.commands]


def _sip_port(try_it: TryIt, args: list[str], worker: Worker) -> list[str]:
    """`--sip-port` as the page gives it (the worker's ASR_SIPREC_PORT), made the port the
    worker's recording server listens on."""
    if "--sip-port" not in args:
        return args
    at = args.index("--sip-port") + 1
    documented = (try_it.worker_env or {}).get("ASR_SIPREC_PORT")
    assert args[at] == documented, (
        f"{try_it.page}: --sip-port {args[at]}, the worker's ASR_SIPREC_PORT {documented}"
    )
    assert worker.siprec.sip_port is not None
    return [*args[:at], str(worker.siprec.sip_port), *args[at + 1 :]]


def _audiosocket_port(try_it: TryIt, args: list[str], worker: Worker) -> list[str]:
    """`--audiosocket-port` as the page gives it (the worker's ASR_AUDIOSOCKET_PORT), made the
    port the worker's AudioSocket server listens on."""
    if "--audiosocket-port" not in args:
        return args
    at = args.index("--audiosocket-port") + 1
    documented = (try_it.worker_env or {}).get("ASR_AUDIOSOCKET_PORT")
    assert args[at] == documented, (
        f"{try_it.page}: --audiosocket-port {args[at]}, the worker's ASR_AUDIOSOCKET_PORT {documented}"
    )
    assert worker.audiosocket.port is not None
    return [*args[:at], str(worker.audiosocket.port), *args[at + 1 :]]


def section_commands(page: str) -> dict[str, list[str]]:
    """Each route section's one try-it line (page SECTION_PAGES names), by heading."""
    openings = section_openings(page)
    text = (DOCS / page).read_text(encoding="utf-8")
    headings = re.findall(r"^## (.*)$", text, flags=re.MULTILINE)
    routes = [h for h in headings if h not in SECTION_PAGES[page]]
    assert [h for h in routes if h not in openings] == [], f"{page}: route sections without a try-it line"
    commands = {}
    for heading in routes:
        block = openings[heading]
        assert len(block.splitlines()) == 1, f"{page} {heading!r}: its try-it block is not one line"
        (commands[heading],) = parse(page, block).commands
    return commands


def test_every_route_of_stream_is_tried_on_a_page() -> None:
    commands = [command for page in ROUTE_PAGES for command in parse(page, opening_block(page)).commands]
    commands += [command for page in SECTION_PAGES for command in section_commands(page).values()]
    tried = {command[command.index("--protocol") + 1] for command in commands if "--protocol" in command}
    assert tried == set(protocols.NAMES)


@pytest.mark.parametrize("page", ROUTE_PAGES)
async def test_each_pages_try_it_command_works_as_written(page: str, tmp_path: Path) -> None:
    try_it = parse(page, opening_block(page))
    for out in await run(try_it, tmp_path, wav(tmp_path / "call.wav", 1.4)):
        kinds = [line.split()[1] for line in out.splitlines() if line.startswith("[")]
        assert kinds[0] == "session_started" and kinds[-1] == "session_ended", out
        assert "final" in kinds, out


@pytest.mark.parametrize("page", SECTION_PAGES)
async def test_each_route_sections_try_it_line_works_with_the_pages_worker(page: str, tmp_path: Path) -> None:
    """All of a page's section lines against one worker, started as the page's opening block
    starts it."""
    try_it = parse(page, opening_block(page))
    try_it.commands = list(section_commands(page).values())
    outputs = await run(try_it, tmp_path, wav(tmp_path / "call.wav", 1.4), together=True)
    for command, out in zip(try_it.commands, outputs, strict=True):
        kinds = [line.split()[1] for line in out.splitlines() if line.startswith("[")]
        assert kinds[:1] == ["session_started"] and kinds[-1:] == ["session_ended"], (command, out)
        assert "final" in kinds, (command, out)


async def test_the_failover_walk_shows_the_move_in_streams_output(tmp_path: Path) -> None:
    """docs/deepgram.md: Deepgram drops the call's connection, then refuses every handshake;
    the call moves to the fallback, and `stream` says so in its normal output."""
    try_it = parse("deepgram.md", block_after("deepgram.md", "### Failover, step by step"))
    (out,) = await run(try_it, tmp_path, wav(tmp_path / "call.wav", 4.2))
    lines = out.splitlines()
    moved = [line for line in lines if " provider_changed " in line]
    assert len(moved) == 1, out
    assert re.search(
        r"provider_changed deepgram -> mock \(handshake_refused\), transcribing from \d+\.\d\d s$", moved[0]
    )
    assert lines[-1].endswith(", on mock") and "final" in out
