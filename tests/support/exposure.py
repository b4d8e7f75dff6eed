"""Looking for secrets where they could leak: every log record (DEBUG and up, through the
worker's JSON formatter, configured as `asr-worker serve` configures it), and every answer a
client or operator can read (events, SSE, /health, /metrics, /v1/sessions, error messages,
reprs, tracebacks).

The formatter replaces registered secrets with `********` as a last line of defence; these
tests use values nobody registered, and also fail on that marker in logs, so they prove the
code never emits a secret in the first place, not merely that the net caught it.
"""

from __future__ import annotations

import io
import json
import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp

from asr_worker import logs
from asr_worker.worker import Worker

REDACTED = "********"


@contextmanager
def json_logs() -> Iterator[io.StringIO]:
    """All log records, DEBUG and up, as `logs.configure("debug")` writes them (JSON lines),
    into a buffer; the previous logging set-up is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    access = logging.getLogger("aiohttp.access")
    saved_access = access.level
    buffer = io.StringIO()
    logs.configure("debug", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        access.setLevel(saved_access)


def exception_text(exc: BaseException) -> str:
    """An exception as anyone could ever print it: str, repr, and the formatted traceback of
    it and of every exception chained to it (suppressed context included)."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), *traceback.format_exception(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@dataclass
class Exposure:
    """Texts a secret must never appear in, by where they came from."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, value: object) -> None:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        self.texts[where] = self.texts.get(where, "") + text + "\n"

    async def read_worker(
        self, http: aiohttp.ClientSession, worker: Worker, token: str | None = None
    ) -> None:
        """What an operator reads: /health, /metrics, /v1/sessions."""
        base = f"http://127.0.0.1:{worker.port}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for path in ("/health", "/metrics", "/v1/sessions"):
            async with http.get(base + path, headers=headers) as response:
                self.add(path, f"{response.status} {dict(response.headers)} {await response.text()}")

    def assert_hidden(self, *secrets: str, logs_clean: bool = True) -> None:
        """No secret (nor its first ten characters) anywhere; with `logs_clean`, no redaction
        marker in the logs either (the formatter had nothing to hide)."""
        assert self.texts, "nothing was collected"
        for where, text in self.texts.items():
            for secret in secrets:
                assert secret not in text, f"a secret leaked into {where}"
                assert secret[:10] not in text, f"the start of a secret leaked into {where}"
            if logs_clean and where == "logs":
                assert REDACTED not in text, "the log formatter had to hide a secret: its source leaks"
