"""`asr-worker dg-server`'s own settings (its listen address, key, idle timeout, faults). The
speech engine behind it is configured like the worker's (`ASR_PROVIDER`, `ASR_MOCK`, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..config import Option, _host, _int_range, _seconds, _secret
from ..credentials import Secret
from .faults import Faults


def _faults(text: str) -> str:
    Faults.parse(text)  # validated here so a typo fails at start
    return text.strip()


@dataclass(frozen=True)
class DgServerSettings:
    host: str = "127.0.0.1"
    port: int = 3002
    api_key: Secret | None = None
    idle_timeout_s: float = 10.0
    faults: str = ""


DG_OPTIONS: Final[tuple[Option, ...]] = (
    Option("host", "DG_SERVER_HOST", "listen address", _host),
    Option("port", "DG_SERVER_PORT", "listen port (0 picks a free one)", _int_range(0, 65535)),
    Option(
        "api_key",
        "DG_SERVER_API_KEY",
        "when set, clients must present this key (Authorization: Token KEY, or "
        "Sec-WebSocket-Protocol: token, KEY); when unset any key is taken",
        _secret,
        secret=True,
    ),
    Option(
        "idle_timeout_s",
        "DG_SERVER_IDLE_TIMEOUT_S",
        "close 1011 (NET-0001) after this long with neither audio nor a text message",
        _seconds(0.1, 3600.0),
    ),
    Option(
        "faults",
        "DG_SERVER_FAULTS",
        "fault injection, key=value,...: reject_status, reject_count, reject_percent, retry_after_s, "
        "handshake_delay_ms, drop_after_ms, close_1011_after_ms, close_1008_after_ms, stall_after_ms, "
        "fault_connections, fault_percent, reply_delay_ms, garbage_every, seed",
        _faults,
    ),
)
