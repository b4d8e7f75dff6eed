"""Tenants and their keys: who may do what, to which calls.

A deployment may serve several customers (business units of one contact centre, or contact
centres on one platform). Each is a **tenant**; each API key belongs to one tenant and carries
scopes:

* `stream`: open calls and send their audio (the ingest socket, telephony and platform media
  streams, `/v1/realtime`), and read the events of the calls it streams;
* `watch`: read a tenant's calls' events (SSE, the live page) and their transcripts;
* `operate`: list a tenant's calls and act on them (pause, resume, end).

A call belongs to the tenant whose key opened it: the worker keys every call by (tenant,
interaction id), so the same interaction id under two tenants is two calls, and no key reaches
a call of another tenant by naming its id. The tenant always comes from the key, never from
what a client claims; only a key that `names_tenant` (the all-powerful `ASR_WORKER_TOKEN`, or
no authentication at all on a loopback development worker) may name the tenant of the calls it
opens, with `tenant_id` (default `default`).

`ASR_API_KEYS` lists the keys, inline or in a file: `KEY:TENANT:SCOPES` entries (scopes joined
with `+`, e.g. `k1:acme:stream+watch`), separated by commas or lines; in a file, `#` starts a
comment. A file is read again when it changes, so keys rotate without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from .core.ids import DEFAULT_TENANT
from .credentials import Secret, token_matches
from .errors import AccessDenied, BadRequest

_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_RELOAD_EVERY_S: Final = 2.0


class Scope(StrEnum):
    STREAM = "stream"
    WATCH = "watch"
    OPERATE = "operate"


EVERY_SCOPE: Final = frozenset(Scope)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a tenant, what it may do, and a key's fingerprint for logs."""

    tenant: str
    scopes: frozenset[Scope]
    key_id: str  # a short hash of the key, never the key: for logs, metrics and per-key caps
    names_tenant: bool = False  # it may name the tenant of the calls it opens (`tenant_id`)

    def may(self, scope: Scope) -> bool:
        return scope in self.scopes

    def tenants_seen(self, claimed: str | None) -> str | None:
        """Whose calls a listing shows: the key's tenant; for a key that names tenants, the one
        it claims, or every tenant's (None) when it claims none."""
        if (claimed is None or claimed == "") and self.names_tenant:
            return None
        return self.tenant_of_call(claimed)

    def tenant_of_call(self, claimed: str | None) -> str:
        """The tenant a call this principal opens belongs to: its key's, or, for a key that
        names tenants, the one it claims. BadRequest for a malformed claim; AccessDenied
        (forbidden) for a claim of another tenant than the key's."""
        if claimed is None or claimed == "":
            return self.tenant
        if not _ID.fullmatch(claimed):
            raise BadRequest(f"tenant_id must be 1-128 characters of A-Z a-z 0-9 . _ : - ({claimed[:40]!r})")
        if self.names_tenant or claimed == self.tenant:
            return claimed
        raise AccessDenied("forbidden", "tenant_id names another tenant than this key's: the key decides it")


# Who every request is when the worker asks for no key (a loopback development worker).
ANONYMOUS: Final = Principal(DEFAULT_TENANT, EVERY_SCOPE, "anonymous", names_tenant=True)


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class _Entry:
    key: bytes
    principal: Principal


class ApiKeys:
    """`ASR_API_KEYS`: tenants' keys, inline or from a file that is read again when it changes.
    Never printed: repr and str say only how many there are."""

    __slots__ = ("_checked_at", "_entries", "_mtime_ns", "_path")

    def __init__(self, entries: Iterable[_Entry] = (), path: Path | None = None) -> None:
        self._entries = tuple(entries)
        self._path = path
        self._mtime_ns = _mtime_ns(path) if path is not None else 0
        self._checked_at = time.monotonic()

    @classmethod
    def parse(cls, text: str) -> ApiKeys | None:
        """An inline list, or the path of a file holding one; None when empty. ValueError says
        what is wrong without quoting a key."""
        value = text.strip()
        if not value:
            return None
        # A file's path, or entries (which always hold two colons).
        path = Path(value).expanduser() if value.startswith(("/", "./", "~")) or ":" not in value else None
        if path is not None:
            try:
                content = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"names a file that cannot be read ({type(exc).__name__})") from None
            return cls(_parse_entries(content, lines=True), path)
        return cls(_parse_entries(value, lines=False))

    def find(self, presented: Sequence[str]) -> Principal | None:
        """The principal of the first configured key among `presented`, comparing every key
        with every presented credential in constant time each (no early exit)."""
        self._reload_if_changed()
        found: Principal | None = None
        candidates = [p.encode("utf-8", "surrogatepass") for p in presented]
        for entry in self._entries:
            for candidate in candidates:
                if hmac.compare_digest(entry.key, candidate) and found is None:
                    found = entry.principal
        return found

    def tenant_of(self, key: str) -> str | None:
        """The tenant `key` belongs to, if it is one of these keys (AudioHook binds its keys so)."""
        principal = self.find([key])
        return None if principal is None else principal.tenant

    def revealed(self) -> tuple[str, ...]:
        return tuple(entry.key.decode("utf-8", "surrogatepass") for entry in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        source = f", from {self._path.name}" if self._path is not None else ""
        return f"ApiKeys(<{len(self._entries)} hidden>{source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKeys) and other._entries == self._entries and other._path == self._path

    def __hash__(self) -> int:
        return hash((self._entries, self._path))

    def _reload_if_changed(self) -> None:
        """A key file is read again when its modification time changes (looked at no more than
        every two seconds); a file that became unreadable or invalid keeps the keys it had."""
        path = self._path
        now = time.monotonic()
        if path is None or now - self._checked_at < _RELOAD_EVERY_S:
            return
        self._checked_at = now
        mtime = _mtime_ns(path)
        if mtime == self._mtime_ns:
            return
        try:
            entries = _parse_entries(path.read_text(encoding="utf-8"), lines=True)
        except (OSError, UnicodeDecodeError, ValueError):
            return
        self._entries, self._mtime_ns = tuple(entries), mtime


def _mtime_ns(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _parse_entries(text: str, *, lines: bool) -> list[_Entry]:
    raw = [line.split("#", 1)[0] for line in text.splitlines()] if lines else [text]
    items = [item.strip() for chunk in raw for item in chunk.split(",") if item.strip()]
    entries: list[_Entry] = []
    seen: set[str] = set()
    for number, item in enumerate(items, 1):
        key, sep1, rest = item.partition(":")
        tenant, sep2, scopes_text = rest.partition(":")
        where = f"entry {number}"
        if not (sep1 and sep2) or not key or any(c.isspace() or not c.isprintable() for c in key):
            raise ValueError(
                f"{where} must be KEY:TENANT:SCOPES (scopes from stream, watch, operate, joined by +)"
            )
        if not _ID.fullmatch(tenant):
            raise ValueError(f"{where}: the tenant must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        try:
            scopes = frozenset(Scope(s.strip().lower()) for s in scopes_text.split("+") if s.strip())
        except ValueError:
            raise ValueError(f"{where}: scopes are stream, watch and operate, joined by +") from None
        if not scopes:
            raise ValueError(f"{where} names no scope (stream, watch, operate)")
        if key in seen:
            raise ValueError(f"{where} repeats a key")
        seen.add(key)
        entries.append(
            _Entry(key.encode("utf-8", "surrogatepass"), Principal(tenant, scopes, fingerprint(key)))
        )
    return entries


class Keyring:
    """Everything a request may authenticate with: the tenants' keys and the worker token."""

    def __init__(self, token: Secret | None = None, keys: ApiKeys | None = None) -> None:
        self._token = token
        self._token_principal = (
            None
            if token is None
            else Principal(DEFAULT_TENANT, EVERY_SCOPE, fingerprint(token.reveal()), names_tenant=True)
        )
        self._keys = keys

    @property
    def open(self) -> bool:
        """No key is configured: every request is `ANONYMOUS` (a loopback development worker)."""
        return self._token is None and not self._keys

    def authenticate(self, presented: Sequence[str]) -> Principal | None:
        """The principal the presented credentials name, or None; constant time per key."""
        if self.open:
            return ANONYMOUS
        found = self._keys.find(presented) if self._keys else None
        token, as_token = self._token, self._token_principal
        if token is not None and as_token is not None and token_matches(token, presented) and found is None:
            found = as_token
        return found

    def authorize(self, presented: Sequence[str], scope: Scope) -> Principal:
        """The principal, if it may do `scope`; AccessDenied (401 or 403) saying why if not."""
        principal = self.authorize_any(presented)
        if not principal.may(scope):
            have = "+".join(sorted(principal.scopes))
            raise AccessDenied("forbidden", f"this key's scopes are {have}; this needs {scope}")
        return principal

    def authorize_any(self, presented: Sequence[str]) -> Principal:
        """The principal of any valid key; AccessDenied (401) if none."""
        principal = self.authenticate(presented)
        if principal is None:
            reason = "a key is required" if not presented else "the key is not valid"
            raise AccessDenied(
                "unauthorized",
                f"{reason}: send Authorization: Bearer KEY (or Token KEY), HTTP Basic with the key as "
                "the password, or ?token=KEY on a WebSocket or EventSource",
            )
        return principal

    @property
    def keys(self) -> ApiKeys | None:
        return self._keys
