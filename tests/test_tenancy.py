"""Tenants' keys: their forms, a key file read again when it changes, and what a key may do."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from asr_worker.credentials import Secret, presented_credentials
from asr_worker.errors import AccessDenied, BadRequest
from asr_worker.tenancy import ANONYMOUS, ApiKeys, Keyring, Scope


def test_inline_keys_name_their_tenant_and_scopes() -> None:
    keys = ApiKeys.parse(" k1:acme:stream+watch , k2:globex:operate ")
    assert keys is not None and len(keys) == 2
    found = keys.find(["nope", "k2"])
    assert found is not None and found.tenant == "globex" and found.scopes == {Scope.OPERATE}
    assert keys.find(["k3"]) is None
    assert "k1" not in repr(keys) and "k2" not in str(keys)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("k1:acme", "KEY:TENANT:SCOPES"),
        ("k1:ac me:stream", "the tenant"),
        ("k1:acme:listen", "scopes are stream, watch and operate"),
        ("k1:acme:", "names no scope"),
        ("k1:acme:stream,k1:globex:watch", "repeats a key"),
    ],
)
def test_a_bad_entry_says_what_is_wrong_without_its_key(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        ApiKeys.parse(text)
    assert "k1" not in str(refused.value)


def test_a_key_file_is_read_again_when_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys"
    path.write_text("# the contact centre's keys\nold-key:acme:stream  # rotated out next\n")
    keys = ApiKeys.parse(str(path))
    assert keys is not None and keys.find(["old-key"]) is not None
    path.write_text("new-key:acme:stream\n")
    stamp = time.time() + 5
    os.utime(path, (stamp, stamp))
    now = [time.monotonic() + 60]  # past the re-read interval
    monkeypatch.setattr("asr_worker.tenancy.time.monotonic", lambda: now[0])
    assert keys.find(["old-key"]) is None and keys.find(["new-key"]) is not None
    path.write_text("not an entry")  # a broken file keeps the keys it had
    os.utime(path, (stamp + 5, stamp + 5))
    now[0] += 60
    assert keys.find(["new-key"]) is not None


def test_the_worker_token_has_every_scope_and_may_name_the_tenant() -> None:
    ring = Keyring(Secret("tok-1"), ApiKeys.parse("k1:acme:watch"))
    token = ring.authorize(["tok-1"], Scope.OPERATE)
    assert token.tenant == "default" and token.tenant_of_call("globex") == "globex"
    watcher = ring.authorize(["k1"], Scope.WATCH)
    assert watcher.tenant_of_call(None) == "acme" and watcher.tenant_of_call("acme") == "acme"
    with pytest.raises(AccessDenied) as forbidden:
        watcher.tenant_of_call("globex")
    assert forbidden.value.status == 403
    with pytest.raises(AccessDenied) as scope:
        ring.authorize(["k1"], Scope.STREAM)
    assert scope.value.code == "forbidden" and "needs stream" in scope.value.message
    with pytest.raises(AccessDenied) as missing:
        ring.authorize([], Scope.WATCH)
    assert missing.value.status == 401
    with pytest.raises(BadRequest):
        token.tenant_of_call("bad tenant")


def test_without_any_key_every_request_is_the_anonymous_operator() -> None:
    ring = Keyring()
    assert ring.open and ring.authorize([], Scope.STREAM) is ANONYMOUS


def test_keys_come_in_every_form_a_client_sends_them() -> None:
    assert presented_credentials("GET", "Token k1", {}) == ["k1"]
    assert presented_credentials("GET", "", {}, "token, k2") == ["k2"]  # Deepgram's browser clients
    assert presented_credentials("GET", "", {}, "realtime, openai-insecure-api-key.k3") == ["k3"]
    assert presented_credentials("POST", "", {"token": "k4"}) == []  # ?token= is for GET
