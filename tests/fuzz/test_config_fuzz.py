"""Fuzzing configuration: any environment gives Settings or one ConfigError line that names
the variable, is short, and never shows a secret (the Deepgram key, the worker token, the
password in REDIS_URL). The option parsers behind it (mock options, dg-server faults,
DEEPGRAM_PARAMS, the local model) raise only ValueError with a short message."""

from __future__ import annotations

from dataclasses import fields
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from asr_worker.config import OPTIONS, ConfigError, Settings, load_settings, parse_options
from asr_worker.dgserver.faults import Faults
from asr_worker.dgserver.settings import DG_OPTIONS
from asr_worker.providers.deepgram import parse_extra_params
from asr_worker.providers.mock import MockOptions
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
ENVIRONMENTS = st.dictionaries(st.sampled_from([opt.env for opt in OPTIONS]), VALUES, max_size=6).map(
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
    urlsplit(settings.redis_url).port  # noqa: B018 - a URL that passed has a usable port
    urlsplit(settings.deepgram_url).port  # noqa: B018


@examples(200)
@given(st.dictionaries(st.sampled_from([opt.env for opt in DG_OPTIONS]), VALUES, max_size=4))
@example({"DG_SERVER_FAULTS": "a" * 5000})
def test_any_dg_server_environment_is_settings_or_one_short_config_error(env: dict[str, str]) -> None:
    try:
        parse_options(DG_OPTIONS, env, None, "dg_")
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


@pytest.mark.parametrize("name", [opt.env for opt in OPTIONS if opt.secret])
def test_a_bad_secret_is_never_shown(name: str) -> None:
    # Secrets take any text, so the combination check is what can refuse them; it names the
    # variable, never the value.
    settings = load_settings({name: SECRET_KEY})
    assert SECRET_KEY not in repr(settings) and SECRET_KEY not in str(settings)
