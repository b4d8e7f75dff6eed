"""Settings: how a part of the service says what it can be configured with.

Each part (the session core, each provider, each bus, the HTTP edge, AudioHook, the local
engine, dg-server) owns a frozen dataclass of its options, which holds the one default of
each, and declares beside it a `Section`: one `Setting` row per option, naming its
environment variable, its help and how its text is parsed into the dataclass's type. This
module is the machinery every section shares: the value parsers, loading a section (flags
over environment over defaults, a bad value failing with one line that names the variable),
and putting a section's flags on a command line. It knows no part; `config.py` assembles the
sections a command takes.

    SETTINGS = Section("redis", "Redis bus", RedisOptions, (
        Setting("url", "REDIS_URL", "Redis for the redis_streams bus", url("redis", "rediss", "unix")),
        ...
    ))

A row's flag is its variable without the section's prefix (`ASR_` for the worker's, so
`ASR_MAX_SESSIONS` is `--max-sessions`), in lower case with dashes. A row's `field` may reach
into a nested options dataclass (`vad.min_silence_ms`), or be empty: then the variable's value
is the whole options object (`ASR_MOCK`, a list of the mock provider's options).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, TypeVar
from urllib.parse import urlencode, urlsplit

from .credentials import Secret
from .errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from _typeshed import DataclassInstance as Options  # what a section's options are: a dataclass

__all__ = [
    "Options",
    "Section",
    "Setting",
    "boolean",
    "choice",
    "field_value",
    "hide_password",
    "host",
    "int_range",
    "is_loopback",
    "replace_field",
    "seconds",
    "secret",
    "show",
    "term_list",
    "text",
    "url",
]


T_co = TypeVar("T_co", bound="DataclassInstance", covariant=True)
D = TypeVar("D", bound="DataclassInstance")
Parser = Callable[[str], object]


@dataclass(frozen=True)
class Setting:
    """One configurable option: where its text comes from and how it is read."""

    field: str  # the options field it sets ("a.b" reaches into a nested dataclass; "": the whole)
    env: str
    help: str
    parse: Parser
    secret: bool = False  # its value is never shown, not even in an error
    switch: bool = False  # a flag without a value (--allow-unauthenticated)
    show: Callable[[object], str] | None = None  # how its default reads in --help, if not plainly


@dataclass(frozen=True)
class Section(Generic[T_co]):
    """A part's settings: its options dataclass and one row per configurable field."""

    name: str  # unique across the service: the key a command names it by
    title: str  # the heading of its flags in --help and of its table on the configuration page
    options: type[T_co]  # a frozen dataclass whose every field has a default: `options()` is them all
    rows: tuple[Setting, ...]
    flag_prefix: str = "ASR_"  # stripped from a row's variable to make its flag

    def __post_init__(self) -> None:
        defaults = self.options()
        for row in self.rows:
            if row.field:
                field_value(defaults, row.field)  # a row naming no field fails here, at import

    def flag(self, row: Setting) -> str:
        return "--" + row.env.removeprefix(self.flag_prefix).lower().replace("_", "-")

    def dest(self, row: Setting) -> str:
        return f"{self.name}:{row.field or '*'}"

    def default(self, row: Setting) -> object:
        """The row's default, read from the options dataclass (its one home)."""
        defaults = self.options()
        return field_value(defaults, row.field) if row.field else None

    def shown_default(self, row: Setting) -> str:
        value = self.default(row)
        return row.show(value) if row.show is not None else show(value)

    def pick(self, value: object) -> T_co:
        """`value` as this section's options (a registry holds several parts' options as objects)."""
        if not isinstance(value, self.options):
            raise TypeError(
                f"{self.name} options must be {self.options.__name__}, not {type(value).__name__}"
            )
        return value

    def load(self, env: Mapping[str, str], flags: argparse.Namespace | None = None) -> T_co:
        """Flags over environment over defaults; ConfigError names what is wrong."""
        options = self.options()
        for row in self.rows:
            raw = getattr(flags, self.dest(row), None) if flags is not None else None
            source = self.flag(row)
            if raw is None:
                raw = env.get(row.env)
                source = row.env
            if raw is None:
                continue
            try:
                value = row.parse(raw)
            except ValueError as exc:
                shown = "(hidden)" if row.secret else repr(hide_password(raw)[:60])
                raise ConfigError(f"{source} {exc}, not {shown}") from None
            options = replace_field(options, row.field, value) if row.field else self.pick(value)
        return options

    def add_arguments(self, parser: argparse.ArgumentParser, title: str | None = None) -> None:
        """One flag per row; its help names the variable and the default."""
        group = parser.add_argument_group(title or self.title)
        for row in self.rows:
            if row.switch:
                group.add_argument(
                    self.flag(row),
                    dest=self.dest(row),
                    action="store_const",
                    const="1",
                    default=None,
                    help=f"{row.help} [env {row.env}=1]",
                )
                continue
            group.add_argument(
                self.flag(row),
                dest=self.dest(row),
                default=None,
                metavar=row.env,
                help=f"{row.help} [env {row.env}; default {self.shown_default(row)}]",
            )


def field_value(options: object, path: str) -> object:
    """The value at `path` (dotted into nested dataclasses); a whole-options path ("") is the options."""
    if not path:
        return options
    value = options
    for name in path.split("."):
        if not dataclasses.is_dataclass(value) or name not in {f.name for f in dataclasses.fields(value)}:
            raise TypeError(f"{type(options).__name__} has no option {path!r}")
        value = getattr(value, name)
    return value


def replace_field(options: D, path: str, value: object) -> D:
    """`options` with the field at `path` (dotted into nested dataclasses) set to `value`."""
    head, _, rest = path.partition(".")
    if rest:
        inner = getattr(options, head)
        if not dataclasses.is_dataclass(inner) or isinstance(inner, type):
            raise TypeError(f"{head} is not a nested options dataclass")
        value = replace_field(inner, rest, value)
    return dataclasses.replace(options, **{head: value})


def show(value: object) -> str:
    """A default as --help and the configuration page show it."""
    if value is None or value in ("", ()):
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        if all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return urlencode(list(value))
        return ",".join(str(v) for v in value)
    return str(value)


# --- parsers: text -> value, raising ValueError that says what is allowed ----------------------


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"must be a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be a whole number from {lo} to {hi}")
        return value

    return parse


def seconds(lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"must be a number of seconds from {lo:g} to {hi:g}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be a number of seconds from {lo:g} to {hi:g}")
        return value

    return parse


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


def host(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 253 or not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError("must be a host name or IP address")
    return value


def url(*schemes: str) -> Callable[[str], str]:
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


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def secret(text: str) -> Secret | None:
    value = text.strip()
    return Secret(value) if value else None


def text(value: str) -> str:
    return value.strip()


def term_list(text: str) -> tuple[str, ...]:
    """Comma-separated words or phrases, blanks dropped, each kept once."""
    return tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


def hide_password(url: str) -> str:
    """A URL as it may be shown: whatever stands before an `@` (user and password) hidden."""
    return _USERINFO.sub("//********@", url)


_USERINFO: Final = re.compile(r"//[^@]*@")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
