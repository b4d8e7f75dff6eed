"""The build: a pure-Python package whose hot path is also compiled, with mypyc.

The modules in `COMPILED` run for every audio frame and every transcript: the session core
and the events it makes, the ingest frame splitter, Deepgram's message parser and the timer
wheel. They need nothing but the standard library, orjson and websockets (the build
requirements in pyproject.toml, for their types). mypyc compiles their typed source to C
extensions, which Python imports in place of the .py files, and the worker spends about a
fifth less CPU at 500 calls (README, "Performance").

An editable install (`pip install -e .`, what scripts/serve.sh and scripts/test.sh run) builds
them next to their sources; `asr_worker.compiled` reports which ones a process runs, and which
are older than their source. Where this machine cannot compile them (no C compiler or Python
headers), or with `ASR_WORKER_COMPILE=0`, the install goes on without them and the same modules
run interpreted: slower, otherwise the same (scripts/test.sh runs their tests both ways).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMPILED = [
    "src/asr_worker/core/actions.py",
    "src/asr_worker/core/audio.py",
    "src/asr_worker/core/backoff.py",
    "src/asr_worker/core/call_options.py",
    "src/asr_worker/core/call_time.py",
    "src/asr_worker/core/dedup.py",
    "src/asr_worker/core/end_wait.py",
    "src/asr_worker/core/events.py",
    "src/asr_worker/core/failover.py",
    "src/asr_worker/core/formatting.py",
    "src/asr_worker/core/forwarding.py",
    "src/asr_worker/core/keyterms.py",
    "src/asr_worker/core/latency.py",
    "src/asr_worker/core/pause.py",
    "src/asr_worker/core/provider_events.py",
    "src/asr_worker/core/rate_limit.py",
    "src/asr_worker/core/redact.py",
    "src/asr_worker/core/replay.py",
    "src/asr_worker/core/results.py",
    "src/asr_worker/core/search.py",
    "src/asr_worker/core/session.py",
    "src/asr_worker/core/session_types.py",
    "src/asr_worker/core/spoken_numbers.py",
    "src/asr_worker/wsframes.py",
    "src/asr_worker/deepgram/protocol.py",
    "src/asr_worker/runtime/wakeup.py",
]


def _say(message: str) -> None:
    print(f"asr-worker build: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Build the compiled modules if this machine can; if it cannot, install without them.
    All or none: mypyc's modules share one library, so a half-built set would not import."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            for path in self.get_outputs():
                if os.path.exists(path):
                    os.remove(path)
            _say(f"compiling failed ({exc}); the modules run interpreted")


def ext_modules() -> list[Extension]:
    if os.environ.get("ASR_WORKER_COMPILE", "1") == "0":
        _say("ASR_WORKER_COMPILE=0: the modules run interpreted")
        return []
    try:
        from mypyc.build import mypycify

        return list(mypycify(COMPILED, opt_level="3"))
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error it cannot compile
        _say(f"mypyc could not translate the modules ({exc!r}); they run interpreted")
        return []


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
