"""`asr-worker transcribe FILE...`: files through the same session pipeline as a live call.

No HTTP: a `SessionManager` with the configured provider (the local engine by default), one
session per file, fed as fast as the engine keeps up (or at 1x with `--realtime`), ended, and
its events printed. Feeding runs at most `LOOKAHEAD_S` of audio ahead of the finals, so a long
file never fills the session's replay buffer or the engine's queue. The bound is wider than the
most audio a provider holds before its next final (the local engine: an utterance of up to
15 s, the lead-in before it and a held blip), or feeding and finals would wait on each other.

Output: each final as a line on stdout, as `stream` prints it (`final   ch0    1.24-2.80
how can I help`). On a terminal, the interim of the utterance being heard is shown on a status
line (stderr) that it keeps overwriting, with a progress bar; off a terminal, stdout gets only
finals (a clean transcript) and stderr only what else happened to a call, one line each in the
same form (an error, a move to the fallback provider). `--json` prints every event as a JSON
line instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import Final, TextIO

from ..config import Settings, make_fallback, make_provider
from ..core import failover, session_types
from ..core.clock import SystemClock
from ..core.events import CallError, CallEvent, SessionEnded, SessionStarted, Transcript
from ..core.ids import DEFAULT_TENANT, CallKey
from ..jsonwire import dumps_event_text
from ..metrics import LiveTotals, WorkerMetrics
from ..providers import BackgroundProvider, Provider
from ..runtime.manager import CallLimits, SessionManager
from . import printer
from .audio_files import AudioFile

LOOKAHEAD_S: Final = 30.0  # within ASR_MAX_RETAINED_S's default of 60 s
FAST_CHUNK_S: Final = 0.1
REALTIME_CHUNK_S: Final = 0.02
_READY_TIMEOUT_S: Final = 300.0
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")


@dataclass
class FileResult:
    name: str
    duration_s: float
    covered_s: float = 0.0  # how far finals have covered the file
    fed_s: float = 0.0  # how far the file has been played into the session
    finals: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ended: SessionEnded | None = None
    progressed: asyncio.Event = field(default_factory=asyncio.Event)  # a final or the end arrived

    @property
    def ok(self) -> bool:
        return self.ended is not None and self.ended.reason == "end" and not self.errors


class Display:
    """Where events go: JSON lines, or finals on stdout plus a live status line on a terminal."""

    def __init__(self, out: TextIO, err: TextIO, *, as_json: bool) -> None:
        self.out = out
        self.err = err
        self.as_json = as_json
        self.live = err.isatty() and not as_json
        self._status = ""
        self._interim = ""
        self.broken = False

    def _print(self, text: str, stream: TextIO) -> None:
        """A reader that went away (`| head`) ends the output, not the transcription."""
        if self.broken:
            return
        try:
            print(text, file=stream, flush=True)
        except BrokenPipeError:
            self.broken = True
            with contextlib.suppress(OSError, ValueError):  # no second error at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())

    def event(self, result: FileResult, event: CallEvent, many: bool) -> None:
        """Finals on stdout, in `stream`'s lines (`tools/printer.py`: the file's name in front
        when there are several), the utterance being heard on the status line, and what else
        happens to the call (an error, a move to the fallback provider) on stderr; a file's
        start and end are no news."""
        if self.as_json:
            self._print(dumps_event_text(event), self.out)
            return
        if isinstance(event, Transcript):
            if not event.is_final:
                channel = f"ch{event.channel} " if event.channel else ""
                self._interim = f"{channel}{event.text}"
                return
            self._interim = ""
        elif isinstance(event, SessionStarted | SessionEnded):
            return
        line = printer.describe(event.wire(), call=result.name if many else "")
        if line is not None:
            self._clear()
            self._print(line, self.out if isinstance(event, Transcript) else self.err)

    def progress(self, result: FileResult) -> None:
        if not self.live:
            return
        width = shutil.get_terminal_size((80, 20)).columns
        # What has been played: finals come an utterance at a time, so by them alone a real-time
        # run would sit at 0% and then jump.
        done_s = max(result.covered_s, result.fed_s)
        fraction = min(1.0, done_s / result.duration_s) if result.duration_s else 1.0
        filled = round(fraction * 20)
        bar = f"{result.name[:24]} [{'#' * filled}{'.' * (20 - filled)}] {fraction * 100:3.0f}% "
        line = (bar + self._interim)[: max(10, width - 1)]
        if line != self._status:
            self.err.write("\r\x1b[K" + line)
            self.err.flush()
            self._status = line

    def done(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self.live and self._status:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._status = ""


async def transcribe_files(
    files: list[AudioFile],
    settings: Settings,
    *,
    realtime: bool = False,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    provider: Provider | None = None,
) -> list[FileResult]:
    provider = provider or make_provider(settings)
    display = Display(out, err, as_json=as_json)
    results: dict[str, FileResult] = {}
    many = len(files) > 1

    def publish(event: CallEvent) -> None:
        result = results.get(event.interaction_id)
        if result is None:
            return
        if isinstance(event, Transcript) and event.is_final:
            result.covered_s = max(result.covered_s, event.end)
            if event.text:
                result.finals.append(event.text)
        elif isinstance(event, CallError):
            result.errors.append(f"{event.code}: {event.message}")
        elif isinstance(event, SessionEnded):
            result.ended = event
        result.progressed.set()
        display.event(result, event, many)
        display.progress(result)

    fallback = make_fallback(settings) if provider.name == settings.provider else None
    manager = SessionManager(
        provider=provider,
        fallback=fallback,
        failover=settings.of(failover.SETTINGS),
        config=settings.of(session_types.SETTINGS),
        limits=CallLimits(max_sessions=max(1, len(files))),
        publish=publish,
        metrics=WorkerMetrics(LiveTotals, provider.name),
        clock=SystemClock(),
        realtime=realtime,
    )
    async with asyncio.TaskGroup() as tg:
        background: list[asyncio.Task[None]] = []
        for each in [provider] if fallback is None else [provider, fallback]:
            if isinstance(each, BackgroundProvider):
                background.append(tg.create_task(each.run()))
        try:
            await _wait_ready(provider)
            async with manager:
                for index, audio in enumerate(files):
                    call_id = _call_id(audio, index)
                    result = results[call_id] = FileResult(audio.path.name, audio.duration_s)
                    await _feed(manager, call_id, audio, result, display, realtime)
        finally:
            display.done()
            for task in background:
                task.cancel()
    return [results[k] for k in results]


async def _wait_ready(provider: Provider) -> None:
    async with asyncio.timeout(_READY_TIMEOUT_S):
        while not (health := provider.health()).ready:
            if not health.ok:
                raise RuntimeError(health.detail)
            await asyncio.sleep(0.05)


async def _feed(
    manager: SessionManager,
    call_id: str,
    audio: AudioFile,
    result: FileResult,
    display: Display,
    realtime: bool,
) -> None:
    source = manager.join(CallKey(DEFAULT_TENANT, call_id), audio.fmt)
    done = source.runner.done
    loop = asyncio.get_running_loop()
    chunk_s = REALTIME_CHUNK_S if realtime else FAST_CHUNK_S
    step = max(audio.fmt.frame_bytes, audio.fmt.bytes_for(chunk_s))
    started = loop.time()
    try:
        for n, i in enumerate(range(0, len(audio.data), step)):
            if done.is_set():
                break
            source.feed(audio.data[i : i + step])
            fed_s = result.fed_s = min(audio.duration_s, audio.fmt.seconds(i + step))
            if realtime:
                await asyncio.sleep(max(0.0, started + (n + 1) * chunk_s - loop.time()))
            else:
                await asyncio.sleep(0)
                while fed_s - result.covered_s > LOOKAHEAD_S and result.ended is None:
                    result.progressed.clear()
                    await result.progressed.wait()
            display.progress(result)
        source.end("end")
        await done.wait()
    finally:
        source.leave()


def _call_id(audio: AudioFile, index: int) -> str:
    stem = _ID_UNSAFE.sub("_", audio.path.stem)[:100] or "file"
    return f"{stem}.{index + 1}"
