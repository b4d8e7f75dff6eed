"""Fuzzing configuration: any environment gives Settings or one ConfigError line that names
the variable, is short, and never shows a secret (the Deepgram key, the worker token, the
password in REDIS_URL). The option parsers behind it (mock options, dg-server faults,
DEEPGRAM_PARAMS, the local model) raise only ValueError with a short message. And the other
branch: every valid value of every variable parses to what it says, down to the options each
provider is built with."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from dataclasses import fields, replace
from typing import TypeVar
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from asr_worker.audiohook.signature import ApiKeys
from asr_worker.bus.redis import options as redis
from asr_worker.config import Settings, load_settings, rows_by_name, settings_with
from asr_worker.credentials import Secret
from asr_worker.dgserver import settings as dg_server
from asr_worker.dgserver.faults import Faults
from asr_worker.engine.model import KNOWN_SIZES, ModelChoice
from asr_worker.errors import ConfigError
from asr_worker.providers import deepgram
from asr_worker.providers.deepgram import parse_extra_params
from asr_worker.providers.local import COMPUTE_TYPES
from asr_worker.providers.mock import SETTINGS as MOCK
from asr_worker.providers.mock import MockOptions
from asr_worker.tenancy import ApiKeys as ApiKeysOfTenants
from asr_worker.transports.forks.vonage import SignatureSecrets
from asr_worker.transports.siprec.options import PortRange, RoleRule
from asr_worker.transports.twilio import AuthTokens
from tests.support.fuzz import TRICKY_STRINGS, bounded, examples

# A configuration error names the variable, quotes a short excerpt of the value (and of a bad
# key inside it) and lists what is allowed: longer than a parser's message, still bounded.
CONFIG_MESSAGE_CHARS = 400
SECRET_KEY = "dgkey-7d41c9e0"
SECRET_TOKEN = "wtok-55e2a91b"
REDIS_PASSWORD = "rpw-0c9d7e3f"

PLAUSIBLE = st.sampled_from(
    [
        "0",
        "1",
        "-1",
        "3001",
        "65536",
        "1e3",
        "0.05",
        "nan",
        "inf",
        "true",
        "no",
        "debug",
        "deepgram",
        "local",
        "mock",
        "redis_streams",
        "0.0.0.0",
        "::1",
        "localhost",
        "127.0.0.1 ",
        "ws://127.0.0.1:1/v1/listen",
        "wss://api.deepgram.com/v1/listen",
        "ws://[::1",
        "ws://h:99999/",
        "ws://h:port/",
        "http://h/",
        "wss://",
        f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        f"redis://:{REDIS_PASSWORD}@",
        f"redis://user:{REDIS_PASSWORD}@h:99999/0",
        f"redis://:{REDIS_PASSWORD}@[::1/0",
        "unix:///tmp/redis.sock",
        "word_ms=0",
        "word_ms=-5,hang_close=1",
        "word_ms=" + "9" * 5000,
        "x" * 100_000 + "=1",
        "smart_format=true&endpointing=500",
        "encoding=mulaw",
        "&&&",
        "a=1&a=%ff",
        "~nosuchuser-for-sure/model",
        "~",
        "a" * 5000,
        "base.en",
        "/",
        "en",
        "haw",
        "int8",
    ]
)
VALUES = st.one_of(PLAUSIBLE, st.text(max_size=30), TRICKY_STRINGS)
ROWS = rows_by_name()  # every setting of the worker, by its flag's name
ENVIRONMENTS = st.dictionaries(
    st.sampled_from([row.env for _, row in ROWS.values()]), VALUES, max_size=6
).map(
    lambda env: (
        {**env, "DEEPGRAM_API_KEY": SECRET_KEY, "ASR_WORKER_TOKEN": SECRET_TOKEN}
        if "DEEPGRAM_API_KEY" in env
        else env
    )
)


@examples(400)
@given(ENVIRONMENTS)
@example({"ASR_LOCAL_MODEL": "a" * 5000})  # OSError (file name too long) escaped
@example({"ASR_LOCAL_MODEL": "~nosuchuser-for-sure/model"})  # RuntimeError escaped
@example({"ASR_MOCK": "word_ms=0"})  # was taken: the mock's streams then looped forever
@example({"ASR_MOCK": "x" * 100_000 + "=1"})  # the error quoted the whole key
@example({"REDIS_URL": f"redis://:{REDIS_PASSWORD}@"})  # the error showed the password
@example({"REDIS_URL": "redis://h:99999/0"})  # a bad port passed, to fail at start
@example({"ASR_MOCK": "a" * 5000})
@example({"HOST": "a" * 5000})  # passed as a host, then quoted whole (found by the hunt profile)
@example({"ASR_MOCK": "00000000\x1f\x1f\x1f\x1f\x1f\U00018cd6\U0001da8c\U0001fbcb\U0002ebe1"})  # escapes
def test_any_environment_is_settings_or_one_short_config_error(env: dict[str, str]) -> None:
    # The known secrets this environment holds as secrets (the same text in another
    # variable, a model name say, is not one).
    hidden = []
    for name, secret in (
        ("DEEPGRAM_API_KEY", SECRET_KEY),
        ("ASR_WORKER_TOKEN", SECRET_TOKEN),
        ("REDIS_URL", REDIS_PASSWORD),
    ):
        others = [value for other, value in env.items() if other != name]
        if secret in env.get(name, "") and not any(secret in value for value in others):
            hidden.append(secret)
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        message = str(exc)
        bounded(message, CONFIG_MESSAGE_CHARS)
        assert "\n" not in message
        assert any(name in message for name in env) or "ASR_" in message or "HOST" in message
        for secret in hidden:
            assert secret not in message
        return
    assert isinstance(settings, Settings)
    for secret in hidden:
        assert secret not in repr(settings)
    urlsplit(settings.of(redis.SETTINGS).url).port  # noqa: B018 - a URL that passed has a usable port
    urlsplit(settings.of(deepgram.SETTINGS).url).port  # noqa: B018


@examples(200)
@given(st.dictionaries(st.sampled_from([row.env for row in dg_server.SETTINGS.rows]), VALUES, max_size=4))
@example({"DG_SERVER_FAULTS": "a" * 5000})
def test_any_dg_server_environment_is_settings_or_one_short_config_error(env: dict[str, str]) -> None:
    try:
        dg_server.SETTINGS.load(env)
    except ConfigError as exc:
        bounded(str(exc), CONFIG_MESSAGE_CHARS)


def _options(names: list[str]) -> st.SearchStrategy[str]:
    """`k=v,k=v` lists of known and unknown names, with plausible and hostile values."""
    item = st.tuples(
        st.sampled_from([*names, "volume", ""]) | st.text(max_size=8),
        st.sampled_from(["=", "", "=="]),
        st.sampled_from(["0", "1", "-1", "200", "true", " 7 ", "1_000", "²", "9" * 30]) | st.text(max_size=6),
    ).map("".join)
    return st.lists(item, max_size=5).map(",".join)


MOCK_FIELDS = [f.name for f in fields(MockOptions)]
FAULT_FIELDS = [f.name for f in fields(Faults) if f.init]


@examples(300)
@given(_options(MOCK_FIELDS))
@example("word_ms=0")
@example("word_ms=" + "9" * 5000)
def test_mock_options_are_options_a_stream_can_run_or_a_short_error(text: str) -> None:
    try:
        options = MockOptions.parse(text)
    except ValueError as exc:
        bounded(str(exc), CONFIG_MESSAGE_CHARS)
        return
    assert options.word_ms >= 1
    for name in MOCK_FIELDS:
        value = getattr(options, name)
        assert isinstance(value, bool) or (isinstance(value, int) and value >= 0)


@examples(300)
@given(_options(FAULT_FIELDS))
def test_faults_are_faults_or_a_short_error(text: str) -> None:
    try:
        faults = Faults.parse(text)
    except ValueError as exc:
        bounded(str(exc), CONFIG_MESSAGE_CHARS)
        return
    assert all(isinstance(getattr(faults, name), int) and getattr(faults, name) >= 0 for name in FAULT_FIELDS)


@examples(300)
@given(
    st.text(max_size=40)
    | TRICKY_STRINGS
    | st.lists(
        st.tuples(
            st.sampled_from(["smart_format", "endpointing", "encoding", "x", "", "%zz"]),
            st.text(max_size=8),
        ),
        max_size=4,
    ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))
)
def test_deepgram_params_are_pairs_or_a_short_error(text: str) -> None:
    try:
        pairs = parse_extra_params(text)
    except ValueError as exc:
        bounded(str(exc), CONFIG_MESSAGE_CHARS)
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs)
    assert not {k for k, _ in pairs} & {"encoding", "sample_rate", "channels", "multichannel"}


@pytest.mark.parametrize("name", [row.env for _, row in ROWS.values() if row.secret])
def test_a_bad_secret_is_never_shown(name: str) -> None:
    # A secret may be taken (then it is hidden in the settings' repr) or refused (a list of keys
    # without its shape): the error names the variable, never the value.
    try:
        settings = load_settings({name: SECRET_KEY})
    except ConfigError as exc:
        assert name in str(exc) and SECRET_KEY not in str(exc)
        return
    assert SECRET_KEY not in repr(settings) and SECRET_KEY not in str(settings)


# --- valid values parse to what they say ------------------------------------------------------

T = TypeVar("T")
Valid = st.SearchStrategy[tuple[str, object]]  # (the variable's text, the value it must give)


def _padded(text: str) -> st.SearchStrategy[str]:
    """The text as a user may write it: with spaces or tabs around it."""
    return st.tuples(st.sampled_from(["", " ", "\t"]), st.sampled_from(["", " ", " \t"])).map(
        lambda pads: pads[0] + text + pads[1]
    )


def _valid(values: st.SearchStrategy[T], text: Callable[[T], str] = str) -> Valid:
    return values.flatmap(lambda value: _padded(text(value)).map(lambda written: (written, value)))


def _whole(lo: int, hi: int) -> Valid:
    return _valid(st.integers(lo, hi))


def _seconds(lo: float, hi: float) -> Valid:
    return _valid(st.floats(lo, hi, allow_nan=False), repr)


def _choice(*allowed: str) -> Valid:
    """Any case is taken; the value is the lower-case name."""
    cased = st.sampled_from(allowed).flatmap(
        lambda name: st.sampled_from([(name, name), (name.upper(), name), (name.title(), name)])
    )
    return cased.flatmap(lambda pair: _padded(pair[0]).map(lambda written: (written, pair[1])))


def _secret(texts: st.SearchStrategy[str]) -> Valid:
    return texts.flatmap(lambda value: _padded(value).map(lambda written: (written, Secret(value))))


def _same(texts: st.SearchStrategy[str]) -> Valid:
    return _valid(texts, lambda text: text)


_NAME = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){0,2}", fullmatch=True)
_HOSTS = st.sampled_from(["127.0.0.1", "::1", "localhost", "0.0.0.0", "10.1.2.3"]) | _NAME
_SECRET_TEXT = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


def _url(*schemes: str) -> Valid:
    urls = st.builds(
        lambda scheme, host, port, path: f"{scheme}://{host}:{port}{path}",
        st.sampled_from(schemes),
        _NAME,
        st.integers(1, 65535),
        st.sampled_from(["", "/", "/v1/listen", "/0"]),
    )
    return _same(urls)


_DG_PAIRS = st.lists(
    st.tuples(
        st.sampled_from(["smart_format", "endpointing", "tag", "numerals", "keyterm"]),
        st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True),
    ),
    max_size=4,
)
_MOCK_FIELD_VALUES: dict[str, st.SearchStrategy[object]] = {
    f.name: st.booleans()
    if isinstance(f.default, bool)
    else st.integers(1 if f.name == "word_ms" else 0, 10**6)
    for f in fields(MockOptions)
}
_MOCK_VALUES: st.SearchStrategy[dict[str, object]] = st.fixed_dictionaries({}, optional=_MOCK_FIELD_VALUES)


def _params_text(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{key}={value}" for key, value in pairs)


def _mock_text(values: dict[str, object]) -> str:
    return ",".join(
        f"{key}={('true' if value else 'false') if isinstance(value, bool) else value}"
        for key, value in values.items()
    )


_AUDIOHOOK_KEYS = st.lists(
    st.tuples(st.from_regex(r"[A-Za-z0-9+/_=-]{1,30}", fullmatch=True), st.binary(max_size=40)),
    min_size=1,
    max_size=4,
    unique_by=lambda pair: pair[0],
)
_KEYTERMS = st.lists(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 .'-]{0,20}[A-Za-z0-9]", fullmatch=True), max_size=5, unique=True
)
_LANGUAGES = st.lists(st.sampled_from(["en-US", "es-ES", "de-DE", "fr-CA", "yue-HK"]), min_size=1, max_size=4)
_LOCAL_LANGUAGES = st.lists(st.sampled_from(["en", "es", "fr", "de", "pt-BR"]), max_size=4, unique=True)


_API_KEYS = st.lists(
    st.tuples(
        st.from_regex(r"[A-Za-z0-9_-]{8,30}", fullmatch=True),
        st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
        st.lists(st.sampled_from(["stream", "watch", "operate"]), min_size=1, max_size=3, unique=True),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda entry: entry[0],
)
_TWILIO = st.lists(
    st.tuples(
        st.from_regex(r"[a-f0-9]{32}", fullmatch=True), st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda entry: entry[0],
)


_VONAGE = st.lists(
    st.tuples(
        st.from_regex(r"[A-Za-z0-9]{32,48}", fullmatch=True),
        st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda entry: entry[0],
)
_CIDR_TEXTS = ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "127.0.0.1/32", "198.51.100.0/24"]
_CIDRS = st.lists(st.sampled_from(_CIDR_TEXTS), min_size=1, max_size=4)
_ID_TEXT = st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True)
_SIPREC_PORTS = st.integers(1024, 65532).flatmap(
    lambda lo: st.integers(lo + 3, 65535).flatmap(
        lambda hi: _padded(f"{lo}-{hi}").map(lambda written: (written, PortRange(lo, hi)))
    )
)
_ROLES = st.lists(
    st.builds(
        RoleRule,
        st.sampled_from(["customer", "agent"]),
        st.sampled_from(["name", "aor", "label"]),
        st.from_regex(r"[A-Za-z0-9*?@.:+-]{1,30}", fullmatch=True),
    ),
    min_size=1,
    max_size=3,
)


def _audiohook_text(keys: list[tuple[str, bytes]]) -> str:
    return ",".join(f"{key}:{base64.b64encode(secret).decode()}" if secret else key for key, secret in keys)


VALID: dict[str, Valid] = {
    "host": _same(_HOSTS),
    "port": _whole(0, 65535),
    "provider": _choice("deepgram", "local", "mock", "openai"),
    "deepgram_api_key": _secret(_SECRET_TEXT),
    "deepgram_url": _url("ws", "wss"),
    "deepgram_model": _same(st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True)),
    "deepgram_language": _same(st.sampled_from(["en-US", "de", "multi", "es-419"])),
    "deepgram_params": _DG_PAIRS.flatmap(
        lambda pairs: _padded(_params_text(pairs)).map(lambda written: (written, tuple(pairs)))
    ),
    "openai_api_key": _secret(_SECRET_TEXT),
    "openai_base_url": _url("https", "http", "wss", "ws"),
    "openai_transcribe_model": _same(st.from_regex(r"[a-z0-9-]{1,30}", fullmatch=True)),
    "pubsub_adapter": _choice("in_memory", "redis_streams"),
    "redis_url": _url("redis", "rediss"),
    "redis_cluster": st.sampled_from(
        [("1", True), ("true", True), (" On", True), ("0", False), ("no", False)]
    ),
    "worker_token": _secret(_SECRET_TEXT),
    "max_sessions": _whole(1, 1_000_000),
    "max_buffer_ms": _whole(1, 10_000),
    "keepalive_s": _seconds(0.1, 9.0),
    "session_grace_s": _seconds(0.0, 3600.0),
    "send_chunk_ms": _whole(1, 1000),
    "finalize_timeout_s": _seconds(0.1, 120.0),
    "max_retained_s": _seconds(1.0, 3600.0),
    "claim_idle_s": _seconds(1.0, 3600.0),
    "max_takeovers": _whole(0, 1000),
    "bus_read_interval_ms": _whole(0, 1000),
    "max_frames_per_s": _whole(0, 100_000),
    "max_sources_per_call": _whole(1, 1000),
    "max_buffered_audio_s": _seconds(1.0, 10_000_000.0),
    "max_message_bytes": _whole(1024, 64 << 20),
    "allow_unauthenticated": st.sampled_from(
        [
            ("1", True),
            ("true", True),
            (" YES", True),
            ("on", True),
            ("0", False),
            ("false", False),
            ("", False),
        ]
    ),
    "log_level": _choice("debug", "info", "warning", "error"),
    "mock": _MOCK_VALUES.flatmap(
        lambda values: _padded(_mock_text(values)).map(
            lambda written: (written, replace(MockOptions(), **values))  # type: ignore[arg-type]
        )
    ),
    "local_model": _valid(
        st.sampled_from(["", *sorted(KNOWN_SIZES)]).map(ModelChoice.parse), lambda c: c.size or ""
    ),
    "local_engine": _choice("auto", "moonshine", "whisper"),
    "local_capacity": _whole(0, 100_000),
    "local_compute_type": _choice(*COMPUTE_TYPES),
    "local_cpu_threads": _whole(0, 256),
    "local_num_workers": _whole(0, 256),
    "local_language": _choice("en", "de", "es", "haw", "yue", "zh", "multi", "detect")
    | _same(st.sampled_from(["es-419", "en-US", "pt-BR"])),
    "local_detect_languages": _LOCAL_LANGUAGES.flatmap(
        lambda codes: _padded(",".join(codes)).map(lambda written: (written, tuple(codes)))
    ),
    "local_endpointing_ms": _whole(32, 10_000),
    "local_keyterms": _KEYTERMS.flatmap(
        lambda terms: _padded(" , ".join(terms)).map(lambda written: (written, tuple(terms)))
    ),
    "local_context_chars": _whole(0, 1000),
    "fallback_provider": st.one_of(
        _choice("deepgram", "local", "mock"), st.sampled_from([("", ""), ("none", ""), (" None ", "")])
    ),
    "failover_after_s": _seconds(0.5, 3600.0),
    "failback_after_s": _seconds(0.0, 3600.0),
    "fallback_max_calls": _whole(0, 1_000_000),
    "audiohook_api_keys": _AUDIOHOOK_KEYS.flatmap(
        lambda keys: _padded(_audiohook_text(keys)).map(lambda written: (written, ApiKeys(dict(keys))))
    ),
    "audiohook_languages": _LANGUAGES.flatmap(
        lambda codes: _padded(",".join(codes)).map(lambda written: (written, tuple(codes)))
    ),
    "api_keys": _API_KEYS.flatmap(
        lambda entries: _padded(",".join(f"{k}:{t}:{'+'.join(sc)}" for k, t, sc in entries)).map(
            lambda written: (written, ApiKeysOfTenants.parse(written))
        )
    ),
    "head_timeout_s": _seconds(0.5, 300.0),
    "first_message_timeout_s": _seconds(0.5, 3600.0),
    "idle_timeout_s": _seconds(1.0, 3600.0),
    "max_connections_per_address": _whole(0, 1_000_000),
    "max_connections_per_key": _whole(1, 1_000_000),
    "fd_headroom": _whole(8, 100_000),
    "transcript_keep_s": _seconds(1.0, 30 * 86_400.0),
    "transcript_max_calls": _whole(1, 1_000_000),
    "transcript_max_bytes": _whole(1024, 1 << 40),
    "webhook_url": _url("http", "https"),
    "webhook_secret": _secret(
        st.binary(min_size=24, max_size=64).map(lambda key: "whsec_" + base64.b64encode(key).decode())
    ),
    "webhook_finals": st.sampled_from([("1", True), ("true", True), ("0", False), ("", False)]),
    "webhook_private_targets": _choice("allow", "deny"),
    "webhook_timeout_s": _seconds(0.1, 120.0),
    "webhook_max_attempts": _whole(1, 20),
    "webhook_backoff_s": _seconds(0.0, 60.0),
    "webhook_max_queued": _whole(1, 1_000_000),
    "redact": st.lists(
        st.sampled_from(["pci", "ssn", "numbers", "true", "aggressive_numbers"]), max_size=3, unique=True
    ).flatmap(
        lambda values: _padded(", ".join(values).upper()).map(
            lambda written: (written, tuple(sorted(values)))
        )
    ),
    "twilio_auth_tokens": _TWILIO.flatmap(
        lambda entries: _padded(",".join(f"{t}:{n}" for t, n in entries)).map(
            lambda written: (written, AuthTokens(dict(entries)))
        )
    ),
    "siprec_port": _whole(0, 65535),
    "siprec_rtp_ports": _SIPREC_PORTS,
    "siprec_allow": _CIDRS.flatmap(
        lambda cidrs: _padded(",".join(cidrs)).map(
            lambda written: (written, tuple(ipaddress.ip_network(c) for c in cidrs))
        )
    ),
    "siprec_id_header": _same(st.sampled_from(["Session-ID", "X-UCID", "X-Genesys-Id"])),
    "siprec_tenants": st.lists(
        st.tuples(st.sampled_from(_CIDR_TEXTS), _ID_TEXT), min_size=1, max_size=3
    ).flatmap(
        lambda pairs: _padded(",".join(f"{c}={t}" for c, t in pairs)).map(
            lambda written: (written, tuple((ipaddress.ip_network(c), t) for c, t in pairs))
        )
    ),
    "siprec_roles": _ROLES.flatmap(
        lambda rules: _padded(",".join(str(r) for r in rules)).map(lambda written: (written, tuple(rules)))
    ),
    "siprec_max_calls": _whole(1, 100_000),
    "siprec_tls_port": _whole(0, 65535),
    "siprec_tls_cert": _same(st.sampled_from(["/etc/asr-worker/sip.pem", "cert.pem"])),
    "siprec_tls_key": _same(st.sampled_from(["/etc/asr-worker/sip.key", "key.pem"])),
    "siprec_media_address": _same(_HOSTS),
    "siprec_jitter_ms": _whole(0, 1000),
    "siprec_rtp_timeout_s": _seconds(1.0, 86400.0),
    "siprec_min_se_s": _whole(90, 86400),
    "vonage_signature_secrets": _VONAGE.flatmap(
        lambda entries: _padded(",".join(f"{secret}:{t}" for secret, t in entries)).map(
            lambda written: (written, SignatureSecrets(dict(entries)))
        )
    ),
    "audiosocket_port": st.one_of(_whole(0, 65535), st.sampled_from([("none", None), (" off", None)])),
    "audiosocket_tenant": _ID_TEXT.flatmap(
        lambda tenant: _padded(tenant).map(lambda written: (written, tenant))
    ),
    "audiosocket_allow": _CIDRS.flatmap(
        lambda cidrs: _padded(",".join(cidrs)).map(
            lambda written: (written, tuple(ipaddress.ip_network(c) for c in cidrs))
        )
    ),
}


def test_every_option_has_valid_values_to_try() -> None:
    assert set(VALID) == set(ROWS)


@examples(200)
@given(st.fixed_dictionaries({}, optional=VALID))
def test_valid_values_parse_to_what_they_say(chosen: dict[str, tuple[str, object]]) -> None:
    for name, (written, value) in chosen.items():
        assert ROWS[name][1].parse(written) == value


@examples(200)
@given(st.fixed_dictionaries(VALID))
def test_a_whole_valid_environment_is_the_settings_it_says(chosen: dict[str, tuple[str, object]]) -> None:
    """Every variable set at once, a token and a key among them, so only the one combination
    of numbers, a fallback that is the provider itself, and an English-only engine (Moonshine,
    or a Whisper `.en` model) asked for another language, can be refused."""
    values = {field: value for field, (_, value) in chosen.items()}
    env = {row.env: chosen[name][0] for name, (_, row) in ROWS.items()}
    send_chunk_ms, max_buffer_ms = values["send_chunk_ms"], values["max_buffer_ms"]
    assert isinstance(send_chunk_ms, int) and isinstance(max_buffer_ms, int)
    if values["fallback_provider"] == values["provider"]:
        with pytest.raises(ConfigError, match=r"^ASR_FALLBACK_PROVIDER"):
            load_settings(env)
        return
    model = values["local_model"]
    english_only = (
        values["local_engine"] == "moonshine"
        or (isinstance(model, ModelChoice) and (model.size or "").endswith(".en"))
    ) and values["local_language"] not in ("en", "en-US")
    if english_only and "local" in (values["provider"], values["fallback_provider"]):
        with pytest.raises(ConfigError, match=r"^ASR_LOCAL_ENGINE=whisper \(or auto\) is required"):
            load_settings(env)
        return
    if send_chunk_ms > max_buffer_ms:
        with pytest.raises(ConfigError, match=r"^ASR_SEND_CHUNK_MS"):
            load_settings(env)
        return
    assert load_settings(env) == settings_with(**values)


@examples(200)
@given(_MOCK_VALUES)
def test_valid_mock_options_are_the_options_they_say(values: dict[str, object]) -> None:
    text = _mock_text(values)
    assert MockOptions.parse(text) == replace(MockOptions(), **values)  # type: ignore[arg-type]
    assert load_settings({"ASR_MOCK": f" {text} "}).of(MOCK) == MockOptions.parse(text)


@examples(200)
@given(_DG_PAIRS, _SECRET_TEXT)
def test_valid_deepgram_params_are_the_pairs_the_provider_sends(
    pairs: list[tuple[str, str]], key: str
) -> None:
    text = _params_text(pairs)
    assert parse_extra_params(text) == tuple(pairs)
    settings = load_settings({"ASR_PROVIDER": "deepgram", "DEEPGRAM_API_KEY": key, "DEEPGRAM_PARAMS": text})
    options = settings.of(deepgram.SETTINGS)
    assert options.extra_params == tuple(pairs) and options.api_key == Secret(key)


def test_a_cluster_is_named_by_a_node_address_not_a_socket_file() -> None:
    with pytest.raises(ConfigError, match=r"^REDIS_CLUSTER=true needs REDIS_URL"):
        load_settings({"REDIS_CLUSTER": "true", "REDIS_URL": "unix:///run/redis/redis.sock"})
    assert (
        load_settings({"REDIS_CLUSTER": "true", "REDIS_URL": "redis://10.0.0.5:7000"})
        .of(redis.SETTINGS)
        .cluster
    )
