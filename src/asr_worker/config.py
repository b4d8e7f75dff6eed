"""Configuration, assembled: which sections each command takes, the checks across them, and
the providers they name.

Every part declares its own settings beside its options dataclass (`settings.Section`: one row
per option with its variable, its help and its parser; the dataclass holds the default). This
module only puts them together:

* `PROVIDERS`, the provider registry (one line per provider: its module registers itself as
  `KIND`, its settings and how to build it), as `bus.BUSES` is the bus registry;
* the sections a worker takes (`WORKER_SECTIONS`), which `--help` and the configuration page
  are made from, and `load`, which reads them (flags over environment over defaults) into one
  `Settings` and checks what no single part can check alone;
* building the providers the settings name.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

from . import logs, transcripts
from .bus import BUSES, bus_kind
from .bus import SETTINGS as BUS
from .bus.redis import options as redis
from .core import failover, redact
from .core import session_types as session
from .credentials import Secrets
from .errors import ConfigError
from .http import options as http
from .providers.base import Provider, ProviderKind
from .runtime import manager as calls
from .settings import Section, Setting, choice, field_value, is_loopback, replace_field
from .transports import audiohook, siprec, twilio
from .transports.forks import audiosocket, vonage

if TYPE_CHECKING:
    from .settings import Options

T = TypeVar("T", bound="Options")

PROVIDERS: Final = {
    "deepgram": "asr_worker.providers.deepgram",
    "local": "asr_worker.providers.local",
    "mock": "asr_worker.providers.mock",
    "openai": "asr_worker.providers.openai",
}


@dataclass(frozen=True)
class ProviderChoice:
    name: str = "local"


PROVIDER: Final = Section(
    "provider",
    "speech provider",
    ProviderChoice,
    (Setting("name", "ASR_PROVIDER", "speech provider: " + ", ".join(PROVIDERS), choice(*PROVIDERS)),),
)


def provider_kind(name: str) -> ProviderKind:
    kind = importlib.import_module(PROVIDERS[name]).KIND
    if not isinstance(kind, ProviderKind):
        raise TypeError(f"{PROVIDERS[name]}.KIND is not a ProviderKind")
    return kind


def provider_sections(names: Iterable[str] = PROVIDERS) -> tuple[Section[Options], ...]:
    return tuple(provider_kind(name).settings for name in names)


# What the speech pipeline takes wherever it runs (serve, transcribe): a provider, a fallback,
# the session's timing, the providers' own options, logging.
ENGINE_SECTIONS: Final[tuple[Section[Options], ...]] = (
    PROVIDER,
    failover.SETTINGS,
    session.SETTINGS,
    *provider_sections(),
    logs.SETTINGS,
    redact.SETTINGS,
)

WORKER_SECTIONS: Final[tuple[Section[Options], ...]] = (
    http.SETTINGS,
    calls.SETTINGS,
    *ENGINE_SECTIONS[:3],
    BUS,
    *(bus_kind(name).settings for name in BUSES),
    audiohook.SETTINGS,
    twilio.SETTINGS,
    siprec.SETTINGS,
    transcripts.SETTINGS,
    transcripts.WEBHOOK_SETTINGS,
    vonage.SETTINGS,
    audiosocket.SETTINGS,
    *ENGINE_SECTIONS[3:],
)


class Settings:
    """Every section's options; `of(SECTION)` hands a part its own. A section not loaded (one
    the command does not take) is its defaults."""

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[tuple[Section[Options], object]] = ()) -> None:
        self._values: dict[str, tuple[Section[Options], object]] = {
            section.name: (section, section.pick(value)) for section, value in values
        }

    def of(self, section: Section[T]) -> T:
        found = self._values.get(section.name)
        return section.options() if found is None else section.pick(found[1])

    def loaded(self, section: Section[Options]) -> bool:
        """The section was read (its command takes it), not only its defaults."""
        return section.name in self._values

    def replace(self, section: Section[T], options: T) -> Settings:
        changed = Settings()
        changed._values = {**self._values, section.name: (section, section.pick(options))}
        return changed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        sections = [s for s, _ in (*self._values.values(), *other._values.values())]
        return all(self.of(section) == other.of(section) for section in sections)

    def __hash__(self) -> int:
        raise TypeError("Settings are not hashable: equal by value, and their options may not be")

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{name}={value!r}' for name, (_, value) in self._values.items())})"

    @property
    def provider(self) -> str:
        return self.of(PROVIDER).name

    @property
    def fallback(self) -> str:
        return self.of(failover.SETTINGS).fallback


def load_settings(
    env: Mapping[str, str],
    flags: argparse.Namespace | None = None,
    sections: Sequence[Section[Options]] = WORKER_SECTIONS,
) -> Settings:
    """The sections a command takes, flags over environment over defaults, checked together."""
    settings = Settings((section, section.load(env, flags)) for section in sections)
    check(settings)
    return settings


def settings_with(base: Settings | None = None, /, **values: object) -> Settings:
    """Settings made in code (tests, benchmarks, programs that embed the worker), each value by
    its flag's name (`max_sessions=2` is `--max-sessions 2`), already of its option's type;
    not checked, as `load` checks what comes from outside."""
    settings = base or Settings()
    rows = rows_by_name()
    for name, value in values.items():
        found = rows.get(name)
        if found is None:
            raise TypeError(f"no setting is called {name}")
        section, row = found
        options = settings.of(section)
        settings = settings.replace(
            section, replace_field(options, row.field, value) if row.field else section.pick(value)
        )
    return settings


def rows_by_name() -> dict[str, tuple[Section[Options], Setting]]:
    return {
        section.flag(row).removeprefix("--").replace("-", "_"): (section, row)
        for section in WORKER_SECTIONS
        for row in section.rows
    }


def check(settings: Settings) -> None:
    """What no single part can check alone; ConfigError names the variable."""
    primary, fallback = settings.provider, settings.fallback
    if fallback and fallback not in PROVIDERS:
        raise ConfigError(f"ASR_FALLBACK_PROVIDER must be one of {', '.join(PROVIDERS)}, not {fallback!r}")
    if fallback and fallback == primary:
        raise ConfigError(f"ASR_FALLBACK_PROVIDER {fallback} is ASR_PROVIDER itself; name another provider")
    for variable, name in (("ASR_PROVIDER", primary), ("ASR_FALLBACK_PROVIDER", fallback)):
        kind = provider_kind(name) if name else None
        if kind is not None and settings.loaded(kind.settings):  # a command may not take it at all
            missing = kind.missing(settings.of(kind.settings))
            if missing is not None:
                need, why = missing
                raise ConfigError(f"{need} is required when {variable}={name} {why}")
    listener = settings.of(http.SETTINGS)
    keyless = listener.worker_token is None and not listener.api_keys
    if keyless and not listener.allow_unauthenticated and not is_loopback(listener.host):
        raise ConfigError(
            f"HOST {listener.host[:60]} is not a loopback address and ASR_WORKER_TOKEN is not set (nor "
            "ASR_API_KEYS): set keys, or pass --allow-unauthenticated (ASR_ALLOW_UNAUTHENTICATED=1) to "
            "serve without them on purpose"
        )
    webhooks = settings.of(transcripts.WEBHOOK_SETTINGS)
    if webhooks.url is not None and webhooks.secret is None:
        raise ConfigError(
            "ASR_WEBHOOK_URL needs ASR_WEBHOOK_SECRET: every webhook is signed (whsec_ and the base64 "
            "of 24 to 64 random bytes)"
        )
    shared = settings.of(redis.SETTINGS)
    if shared.cluster and shared.url.startswith("unix:"):
        raise ConfigError(
            "REDIS_CLUSTER=true needs REDIS_URL to name a cluster node as redis:// or rediss://"
        )
    timing = settings.of(session.SETTINGS)
    if timing.send_chunk_ms > timing.max_buffer_ms:
        raise ConfigError(
            f"ASR_SEND_CHUNK_MS ({timing.send_chunk_ms}) must not exceed ASR_MAX_BUFFER_MS "
            f"({timing.max_buffer_ms})"
        )


def secrets(settings: Settings, section: Section[Options]) -> list[str]:
    """The secret texts a section's settings hold (keys, tokens), for the log formatter to hide."""
    options = settings.of(section)
    found: list[str] = []
    for row in section.rows:
        value = field_value(options, row.field) if row.secret else None
        if isinstance(value, Secrets):
            found += value.revealed()
    return found


# --- what the settings build -------------------------------------------------------------------


def make_provider(settings: Settings, name: str | None = None) -> Provider:
    """The provider `ASR_PROVIDER` names (or `name`: the fallback), built from its own options."""
    kind = provider_kind(name or settings.provider)
    return kind.create(settings.of(kind.settings))


def make_fallback(settings: Settings) -> Provider | None:
    """The provider `ASR_FALLBACK_PROVIDER` names, if any."""
    return make_provider(settings, settings.fallback) if settings.fallback else None
