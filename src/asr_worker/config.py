"""Configuration: every setting is an environment variable and a command-line flag.

One table (`OPTIONS`) names each setting once: its variable, its flag, its default, how to
parse it and what it means. The CLI builds `--help` from it, and `load_settings` reads flags
over environment over defaults, failing with one line that names the variable.

The settings also build what they configure: each provider's own options (`make_provider`)
and the session's (`session_config`). Configuration imports the providers and asks each one's
own parser to validate its variables at start; no provider imports configuration.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from .audiohook.signature import ApiKeys
from .core.session_types import SessionConfig
from .credentials import Secret

if TYPE_CHECKING:
    from .providers.base import Provider
    from .providers.deepgram import DeepgramOptions
    from .providers.local import LocalOptions
    from .providers.openai import OpenAIOptions


class ConfigError(ValueError):
    """An invalid setting; the message names the variable and says what is allowed."""


PROVIDERS: Final = ("deepgram", "local", "mock", "openai")
BUSES: Final = ("in_memory", "redis_streams")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 3001
    provider: str = "local"
    deepgram_api_key: Secret | None = None
    deepgram_url: str = "wss://api.deepgram.com/v1/listen"
    deepgram_model: str = "nova-3"
    deepgram_language: str = "en-US"
    deepgram_params: str = ""
    openai_api_key: Secret | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_transcribe_model: str = "gpt-4o-transcribe"
    pubsub_adapter: str = "in_memory"
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)  # may hold a password
    redis_cluster: bool = False
    worker_token: Secret | None = None
    max_sessions: int = 1000
    max_buffer_ms: int = 100
    keepalive_s: float = 3.0
    session_grace_s: float = 10.0
    send_chunk_ms: int = 50
    finalize_timeout_s: float = 5.0
    max_retained_s: float = 60.0
    claim_idle_s: float = 15.0
    max_takeovers: int = 3
    bus_read_interval_ms: int = 40
    max_frames_per_s: int = 500
    max_sources_per_call: int = 8
    max_buffered_audio_s: float = 3600.0
    max_message_bytes: int = 1 << 20
    allow_unauthenticated: bool = False
    log_level: str = "info"
    mock: str = ""
    local_model: str = ""
    local_compute_type: str = "int8"
    local_cpu_threads: int = 1
    local_num_workers: int = 0
    local_language: str = "en"
    local_endpointing_ms: int = 450
    local_keyterms: str = ""
    local_context_chars: int = 0
    fallback_provider: str = ""
    failover_after_s: float = 10.0
    failback_after_s: float = 0.0
    fallback_max_calls: int = 32
    audiohook_api_keys: ApiKeys | None = None
    audiohook_languages: str = "en-US"  # comma-separated


# --- parsers: text -> value, raising ValueError with what is allowed --------------------------


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"must be a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be a whole number from {lo} to {hi}")
        return value

    return parse


def _seconds(lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"must be a number of seconds from {lo:g} to {hi:g}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be a number of seconds from {lo:g} to {hi:g}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


def _host(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 253 or not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError("must be a host name or IP address")
    return value


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        try:
            parts = urlsplit(value)
            where = parts.path if parts.scheme == "unix" else parts.hostname  # a socket file, or a host
            valid = parts.scheme in schemes and bool(where) and parts.port != 0
        except ValueError:  # a bad port or IPv6 address
            valid = False
        if not valid:
            raise ValueError(f"must be a {' or '.join(s + '://' for s in schemes)} URL")
        return value

    return parse


def hide_password(url: str) -> str:
    """A URL as it may be shown: whatever stands before an `@` (user and password) hidden."""
    return _USERINFO.sub("//********@", url)


_USERINFO: Final = re.compile(r"//[^@]*@")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _secret(text: str) -> Secret | None:
    value = text.strip()
    return Secret(value) if value else None


def _audiohook_keys(text: str) -> ApiKeys | None:
    return ApiKeys.parse(text)


_LANGUAGE_CODE: Final = re.compile(r"^[a-z]{2,3}-[A-Za-z]{2,3}$")


def language_codes(text: str) -> tuple[str, ...]:
    """`ASR_AUDIOHOOK_LANGUAGES` as a tuple of codes."""
    return tuple(code.strip() for code in text.split(",") if code.strip())


def _language_codes(text: str) -> str:
    codes = language_codes(text)
    if not codes or any(_LANGUAGE_CODE.match(code) is None for code in codes):
        raise ValueError("must be comma-separated language codes such as en-US,es-ES")
    return ",".join(codes)


def keyterm_list(text: str) -> tuple[str, ...]:
    """`ASR_LOCAL_KEYTERMS`: comma-separated terms, blanks dropped, each kept once."""
    return tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


def _keyterms(text: str) -> str:
    terms = keyterm_list(text)
    if sum(len(t) + 2 for t in terms) > 500:
        raise ValueError("must be at most 500 characters of terms (Whisper's prompt is short)")
    return ", ".join(terms)


def _text(text: str) -> str:
    return text.strip()


def _mock_options(text: str) -> str:
    from .providers.mock import MockOptions  # validated here so a typo fails at start

    MockOptions.parse(text)
    return text.strip()


def _local_model(text: str) -> str:
    from .engine.model import ModelChoice  # validated here so a typo fails at start

    ModelChoice.parse(text)
    return text.strip()


# CTranslate2's compute types (https://opennmt.net/CTranslate2/quantization.html).
COMPUTE_TYPES: Final = (
    "default",
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)


def _language(text: str) -> str:
    value = text.strip().lower()
    if not (2 <= len(value) <= 3 and value.isalpha()) and value not in ("haw", "yue"):
        raise ValueError("must be a Whisper language code such as en, de or es")
    return value


def _deepgram_params(text: str) -> str:
    from .providers.deepgram import parse_extra_params  # validated here so a typo fails at start

    parse_extra_params(text)
    return text.strip()


def _fallback_choice(text: str) -> str:
    value = text.strip().lower()
    if value in ("", "none"):
        return ""
    return _choice(*PROVIDERS)(value)


@dataclass(frozen=True)
class Option:
    field: str
    env: str
    help: str
    parse: Callable[[str], object]
    secret: bool = False
    switch: bool = False  # a flag without a value (--allow-unauthenticated)

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


OPTIONS: Final[tuple[Option, ...]] = (
    Option("host", "HOST", "listen address", _host),
    Option("port", "PORT", "listen port (0 picks a free one)", _int_range(0, 65535)),
    Option("provider", "ASR_PROVIDER", "speech provider: " + ", ".join(PROVIDERS), _choice(*PROVIDERS)),
    Option("deepgram_api_key", "DEEPGRAM_API_KEY", "Deepgram API key (never logged)", _secret, secret=True),
    Option("deepgram_url", "DEEPGRAM_URL", "Deepgram live endpoint", _url("ws", "wss")),
    Option("deepgram_model", "DEEPGRAM_MODEL", "Deepgram model", _text),
    Option("deepgram_language", "DEEPGRAM_LANGUAGE", "Deepgram language", _text),
    Option(
        "deepgram_params",
        "DEEPGRAM_PARAMS",
        "extra Deepgram query parameters, e.g. smart_format=true&endpointing=500",
        _deepgram_params,
    ),
    Option("openai_api_key", "OPENAI_API_KEY", "OpenAI API key (never logged)", _secret, secret=True),
    Option(
        "openai_base_url",
        "OPENAI_BASE_URL",
        "OpenAI-compatible API base; the openai provider streams to its /realtime?intent=transcription",
        _url("https", "http", "wss", "ws"),
    ),
    Option(
        "openai_transcribe_model",
        "OPENAI_TRANSCRIBE_MODEL",
        "transcription model for the openai provider",
        _text,
    ),
    Option("pubsub_adapter", "PUBSUB_ADAPTER", "bus: " + ", ".join(BUSES), _choice(*BUSES)),
    Option("redis_url", "REDIS_URL", "Redis for the redis_streams bus", _url("redis", "rediss", "unix")),
    Option(
        "redis_cluster",
        "REDIS_CLUSTER",
        "REDIS_URL names a node of a Redis Cluster; per-call keys carry the call's id as a hash tag, {ID}",
        _bool,
    ),
    Option(
        "worker_token",
        "ASR_WORKER_TOKEN",
        "bearer token required on every endpoint but /health and /metrics",
        _secret,
        secret=True,
    ),
    Option(
        "max_sessions",
        "ASR_MAX_SESSIONS",
        "most concurrent calls; more are refused",
        _int_range(1, 1_000_000),
    ),
    Option(
        "max_buffer_ms",
        "ASR_MAX_BUFFER_MS",
        "longest any audio waits in the worker before it is sent",
        _int_range(1, 10_000),
    ),
    Option(
        "keepalive_s",
        "ASR_KEEPALIVE_S",
        "send a KeepAlive after this many seconds without audio",
        _seconds(0.1, 9.0),
    ),
    Option(
        "session_grace_s",
        "ASR_SESSION_GRACE_S",
        "wait this long for a source to come back before finalizing",
        _seconds(0.0, 3600.0),
    ),
    Option(
        "send_chunk_ms",
        "ASR_SEND_CHUNK_MS",
        "send as soon as this much audio is waiting",
        _int_range(1, 1000),
    ),
    Option(
        "finalize_timeout_s",
        "ASR_FINALIZE_TIMEOUT_S",
        "wait for a provider's last results at call end; a final covering more restarts it (twice at most)",
        _seconds(0.1, 120.0),
    ),
    Option(
        "max_retained_s",
        "ASR_MAX_RETAINED_S",
        "most audio a call keeps for replay while its provider is away",
        _seconds(1.0, 3600.0),
    ),
    Option(
        "claim_idle_s",
        "ASR_CLAIM_IDLE_S",
        "take over a dead worker's calls after this many idle seconds",
        _seconds(1.0, 3600.0),
    ),
    Option(
        "max_takeovers",
        "ASR_MAX_TAKEOVERS",
        "give a call up (ack it, error and session_ended) once more than this many workers died holding it",
        _int_range(0, 1000),
    ),
    Option(
        "bus_read_interval_ms",
        "ASR_BUS_READ_INTERVAL_MS",
        "read calls' audio from Redis at most this often: longer costs the worker and Redis less, "
        "and adds up to that much latency",
        _int_range(0, 1000),
    ),
    Option(
        "max_frames_per_s",
        "ASR_MAX_FRAMES_PER_S",
        "most audio messages a second per call; the excess is dropped with an error (0 = no limit)",
        _int_range(0, 100_000),
    ),
    Option(
        "max_sources_per_call",
        "ASR_MAX_SOURCES_PER_CALL",
        "most sockets feeding one call",
        _int_range(1, 1000),
    ),
    Option(
        "max_buffered_audio_s",
        "ASR_MAX_BUFFERED_AUDIO_S",
        "new calls are refused while the worker holds more audio than this, seconds",
        _seconds(1.0, 10_000_000.0),
    ),
    Option(
        "max_message_bytes",
        "ASR_MAX_MESSAGE_BYTES",
        "largest WebSocket message taken",
        _int_range(1024, 64 << 20),
    ),
    Option(
        "allow_unauthenticated",
        "ASR_ALLOW_UNAUTHENTICATED",
        "serve on a non-loopback address without ASR_WORKER_TOKEN (say so on purpose)",
        _bool,
        switch=True,
    ),
    Option(
        "log_level",
        "ASR_LOG_LEVEL",
        "debug, info, warning or error",
        _choice("debug", "info", "warning", "error"),
    ),
    Option(
        "mock",
        "ASR_MOCK",
        "mock provider options, e.g. word_ms=200,drop_after_ms=3000 (tests)",
        _mock_options,
    ),
    Option(
        "fallback_provider",
        "ASR_FALLBACK_PROVIDER",
        "a second provider a call moves to, mid-call, when its primary cannot carry it: "
        + ", ".join(PROVIDERS)
        + " (none: no failover)",
        _fallback_choice,
    ),
    Option(
        "failover_after_s",
        "ASR_FAILOVER_AFTER_S",
        "how long a call may go without a working connection to its primary before it moves to the fallback",
        _seconds(0.5, 3600.0),
    ),
    Option(
        "failback_after_s",
        "ASR_FAILBACK_AFTER_S",
        "a call that moved to the fallback returns to its primary, once, at an utterance boundary, "
        "after the primary has carried new connections for this long (0: it stays on the fallback)",
        _seconds(0.0, 3600.0),
    ),
    Option(
        "fallback_max_calls",
        "ASR_FALLBACK_MAX_CALLS",
        "most calls the fallback provider carries at once; calls beyond it wait for their primary",
        _int_range(1, 1_000_000),
    ),
    Option(
        "local_model",
        "ASR_LOCAL_MODEL",
        "local engine model: empty for the packaged Whisper base, a faster-whisper model "
        "directory, or a size such as small.en (downloaded by faster-whisper)",
        _local_model,
    ),
    Option(
        "local_compute_type",
        "ASR_LOCAL_COMPUTE_TYPE",
        "local engine CTranslate2 compute type: " + ", ".join(COMPUTE_TYPES),
        _choice(*COMPUTE_TYPES),
    ),
    Option(
        "local_cpu_threads",
        "ASR_LOCAL_CPU_THREADS",
        "local engine threads per decode (faster-whisper's cpu_threads; 0 = CTranslate2's default)",
        _int_range(0, 256),
    ),
    Option(
        "local_num_workers",
        "ASR_LOCAL_NUM_WORKERS",
        "local engine decodes in parallel (faster-whisper's num_workers; 0 = one per core)",
        _int_range(0, 256),
    ),
    Option(
        "local_language",
        "ASR_LOCAL_LANGUAGE",
        "local engine language (a Whisper language code)",
        _language,
    ),
    Option(
        "local_endpointing_ms",
        "ASR_LOCAL_ENDPOINTING_MS",
        "local engine: silence that ends an utterance with a speech_final result (Deepgram's `endpointing`)",
        _int_range(32, 10_000),
    ),
    Option(
        "local_keyterms",
        "ASR_LOCAL_KEYTERMS",
        "local engine: comma-separated words or phrases calls are expected to use (product, agent and "
        "place names), given to Whisper as context; a call adds its own with Deepgram's keyterm/keywords",
        _keyterms,
    ),
    Option(
        "local_context_chars",
        "ASR_LOCAL_CONTEXT_CHARS",
        "local engine: characters of a call's recent finals each decode is prompted with (0: none; "
        "measured worse on short utterances, see docs/local-engine.md)",
        _int_range(0, 1000),
    ),
    Option(
        "audiohook_api_keys",
        "ASR_AUDIOHOOK_API_KEYS",
        "Genesys AudioHook credentials: comma-separated KEY or KEY:BASE64_CLIENT_SECRET (several for "
        "rotation; never logged); unset: /v1/audiohook is closed",
        _audiohook_keys,
        secret=True,
    ),
    Option(
        "audiohook_languages",
        "ASR_AUDIOHOOK_LANGUAGES",
        "languages /v1/audiohook reports to Genesys (supportedLanguages), comma-separated",
        _language_codes,
    ),
)


def add_arguments(
    parser: argparse.ArgumentParser,
    options: Sequence[Option] = OPTIONS,
    defaults: object | None = None,
    *,
    title: str = "configuration (flag, or environment variable)",
    dest_prefix: str = "cfg_",
    exclude: Collection[str] = (),
) -> None:
    """One flag per option; its help names the variable and the default."""
    defaults = Settings() if defaults is None else defaults
    group = parser.add_argument_group(title)
    for opt in options:
        if opt.field in exclude:
            continue
        default = getattr(defaults, opt.field)
        shown = "none" if default is None or default == "" else default
        if opt.switch:
            group.add_argument(
                opt.flag,
                dest=f"cfg_{opt.field}",
                action="store_const",
                const="1",
                default=None,
                help=f"{opt.help} [env {opt.env}=1]",
            )
            continue
        group.add_argument(
            opt.flag,
            dest=f"{dest_prefix}{opt.field}",
            default=None,
            metavar=opt.env,
            help=f"{opt.help} [env {opt.env}; default {shown}]",
        )


def parse_options(
    options: Sequence[Option],
    env: Mapping[str, str],
    flags: argparse.Namespace | None = None,
    dest_prefix: str = "cfg_",
) -> dict[str, object]:
    """Flags over environment over defaults: {field: parsed value} for the options given."""
    values: dict[str, object] = {}
    for opt in options:
        raw = getattr(flags, f"{dest_prefix}{opt.field}", None) if flags is not None else None
        source = opt.flag
        if raw is None:
            raw = env.get(opt.env)
            source = opt.env
        if raw is None:
            continue
        try:
            values[opt.field] = opt.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if opt.secret else repr(hide_password(raw)[:60])
            raise ConfigError(f"{source} {exc}, not {shown}") from None
    return values


def load_settings(env: Mapping[str, str], flags: argparse.Namespace | None = None) -> Settings:
    settings = Settings(**parse_options(OPTIONS, env, flags))  # type: ignore[arg-type]
    _check_combination(settings)
    return settings


def _check_combination(s: Settings) -> None:
    for variable, name in (("ASR_PROVIDER", s.provider), ("ASR_FALLBACK_PROVIDER", s.fallback_provider)):
        if name == "deepgram" and s.deepgram_api_key is None and _is_deepgram_cloud(s.deepgram_url):
            raise ConfigError(f"DEEPGRAM_API_KEY is required when {variable}=deepgram uses api.deepgram.com")
        if name == "openai" and s.openai_api_key is None and _is_openai_cloud(s.openai_base_url):
            raise ConfigError(f"OPENAI_API_KEY is required when {variable}=openai uses api.openai.com")
    if s.worker_token is None and not s.allow_unauthenticated and not is_loopback(s.host):
        raise ConfigError(
            f"HOST {s.host[:60]} is not a loopback address and ASR_WORKER_TOKEN is not set: set a token, "
            "or pass --allow-unauthenticated (ASR_ALLOW_UNAUTHENTICATED=1) to serve without one on purpose"
        )
    if s.fallback_provider and s.fallback_provider == s.provider:
        raise ConfigError(
            f"ASR_FALLBACK_PROVIDER {s.fallback_provider} is ASR_PROVIDER itself; name another provider"
        )
    if s.redis_cluster and s.redis_url.startswith("unix:"):
        raise ConfigError(
            "REDIS_CLUSTER=true needs REDIS_URL to name a cluster node as redis:// or rediss://"
        )
    if s.send_chunk_ms > s.max_buffer_ms:
        raise ConfigError(
            f"ASR_SEND_CHUNK_MS ({s.send_chunk_ms}) must not exceed ASR_MAX_BUFFER_MS ({s.max_buffer_ms})"
        )


def _is_deepgram_cloud(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "deepgram.com" or host.endswith(".deepgram.com")


def _is_openai_cloud(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "openai.com" or host.endswith(".openai.com")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- what the settings build -------------------------------------------------------------------
# The providers' modules are imported on demand: a worker loads only the provider it runs.


def make_provider(settings: Settings, name: str | None = None) -> Provider:
    """The provider `ASR_PROVIDER` names (or `name`: the fallback), built from its own options."""
    name = name or settings.provider
    if name == "mock":
        from .providers import mock

        return mock.create(mock.MockOptions.parse(settings.mock))
    if name == "deepgram":
        from .providers import deepgram

        return deepgram.create(deepgram_options(settings))
    if name == "openai":
        from .providers import openai

        return openai.create(openai_options(settings))
    from .providers import local

    return local.create(local_options(settings))


def make_fallback(settings: Settings) -> Provider | None:
    """The provider `ASR_FALLBACK_PROVIDER` names, if any."""
    return make_provider(settings, settings.fallback_provider) if settings.fallback_provider else None


def deepgram_options(settings: Settings) -> DeepgramOptions:
    from .providers.deepgram import DeepgramOptions, parse_extra_params

    return DeepgramOptions(
        url=settings.deepgram_url,
        api_key=settings.deepgram_api_key,
        model=settings.deepgram_model,
        language=settings.deepgram_language,
        extra_params=parse_extra_params(settings.deepgram_params),
    )


def openai_options(settings: Settings) -> OpenAIOptions:
    from .providers.openai import OpenAIOptions

    return OpenAIOptions(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        model=settings.openai_transcribe_model,
    )


def local_options(settings: Settings) -> LocalOptions:
    """Raises ValueError naming `ASR_LOCAL_MODEL` for a model that is not there (settings
    built in code, which `load_settings` did not check)."""
    from .engine.model import ModelChoice
    from .engine.vad import VadConfig
    from .providers.local import LocalOptions

    try:
        model = ModelChoice.parse(settings.local_model)
    except ValueError as exc:
        raise ValueError(f"ASR_LOCAL_MODEL {exc}") from None
    return LocalOptions(
        model=model,
        compute_type=settings.local_compute_type,
        cpu_threads=settings.local_cpu_threads,
        num_workers=settings.local_num_workers or max(1, os.cpu_count() or 1),
        language=settings.local_language,
        vad=VadConfig(min_silence_ms=settings.local_endpointing_ms),
        keyterms=keyterm_list(settings.local_keyterms),
        context_chars=settings.local_context_chars,
    )


def session_config(settings: Settings) -> SessionConfig:
    return SessionConfig(
        max_buffer_ms=settings.max_buffer_ms,
        send_chunk_ms=settings.send_chunk_ms,
        keepalive_s=settings.keepalive_s,
        grace_s=settings.session_grace_s,
        finalize_timeout_s=settings.finalize_timeout_s,
        max_retained_s=settings.max_retained_s,
        max_frames_per_s=settings.max_frames_per_s,
    )
