"""`asr-worker dg-server`'s own settings (its listen address, key, idle timeout, faults). The
speech engine behind it is configured like the worker's (`ASR_PROVIDER`, `ASR_MOCK`, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .. import logs
from ..config import PROVIDER, PROVIDERS, provider_sections
from ..credentials import Secret
from ..settings import Section, Setting, host, int_range, seconds, secret
from ..transcripts import webhooks
from .faults import Faults

if TYPE_CHECKING:
    from ..settings import Options


@dataclass(frozen=True)
class DgServerSettings:
    host: str = "127.0.0.1"
    port: int = 3002
    api_key: Secret | None = None
    idle_timeout_s: float = 10.0
    faults: str = ""  # parsed afresh by each server: a Faults keeps its own random draws


def _faults(text: str) -> str:
    Faults.parse(text)  # a typo fails at start
    return text.strip()


SETTINGS: Final = Section(
    "dg-server",
    "dg-server",
    DgServerSettings,
    (
        Setting("host", "DG_SERVER_HOST", "listen address", host),
        Setting("port", "DG_SERVER_PORT", "listen port (0 picks a free one)", int_range(0, 65535)),
        Setting(
            "api_key",
            "DG_SERVER_API_KEY",
            "when set, clients must present this key (Authorization: Token KEY, or "
            "Sec-WebSocket-Protocol: token, KEY); when unset any key is taken",
            secret,
            secret=True,
        ),
        Setting(
            "idle_timeout_s",
            "DG_SERVER_IDLE_TIMEOUT_S",
            "close 1011 (NET-0001) after this long with neither audio nor a text message",
            seconds(0.1, 3600.0),
        ),
        Setting(
            "faults",
            "DG_SERVER_FAULTS",
            "fault injection, key=value,...: reject_status, reject_count, reject_percent, retry_after_s, "
            "handshake_delay_ms, drop_after_ms, close_1011_after_ms, close_1008_after_ms, stall_after_ms, "
            "fault_connections, fault_percent, reply_delay_ms, garbage_every, seed",
            _faults,
        ),
    ),
    flag_prefix="DG_SERVER_",
)

# What `asr-worker dg-server` takes: its own settings, a speech engine's (it serves Deepgram's
# protocol, so any provider but Deepgram itself), and the webhooks' (a stream's `callback` is
# signed and retried as the worker's webhooks are).
SECTIONS: Final[tuple[Section[Options], ...]] = (
    SETTINGS,
    PROVIDER,
    *provider_sections(name for name in PROVIDERS if name != "deepgram"),
    webhooks.SETTINGS,
    logs.SETTINGS,
)
