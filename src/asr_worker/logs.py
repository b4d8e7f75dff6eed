"""Structured logs: one JSON object per line, with the call's interaction_id where there is one.

Secrets never reach a log line: the formatter replaces every registered secret value
wherever it appears (message, extra fields, tracebacks), as a last line of defence behind
code that never logs them in the first place.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from typing import Final, TextIO
from urllib.parse import quote, quote_plus

from .settings import Section, Setting, choice

_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Hide `value` in every log line, in each form a line may carry it: as it is, as JSON
    escapes it, and percent-encoded as a client may have sent it in a URL (upper- or lower-case
    hex, `+` or `%20` for a space)."""
    if len(value) < 4:
        return
    encoded = quote(value, safe="")
    forms = {value, json.dumps(value)[1:-1], encoded, quote_plus(value, safe="")}
    forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded))
    _secrets.update(form for form in forms if len(form) >= 4)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "********")
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, separators=(",", ":")))


@dataclass(frozen=True)
class LogOptions:
    level: str = "info"


SETTINGS: Final = Section(
    "logs",
    "logging",
    LogOptions,
    (
        Setting(
            "level",
            "ASR_LOG_LEVEL",
            "debug, info, warning or error",
            choice("debug", "info", "warning", "error"),
        ),
    ),
)


def configure(level: str = LogOptions.level, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would add a line per request; /metrics scrapes make that noise.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
