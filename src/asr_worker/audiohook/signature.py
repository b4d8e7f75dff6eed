"""AudioHook authentication: the `X-API-KEY` header and, for a key with a client secret, the
HTTP message signature (draft-ietf-httpbis-message-signatures, HMAC-SHA256) on the WebSocket
upgrade request.

`verify_signature` follows the reference implementation's verifier step by step (the same
checks in the same order, the same result codes, the signature base rebuilt from the parsed
fields); `authenticate` is its request authenticator: the covered components Genesys signs
are required, a signature is good for 10 s (`created`), 3 s of clock skew are allowed, the
nonce must be at least 22 characters and is refused the second time it is seen, the `keyid`
must be the `X-API-KEY`. A key configured without a client secret may connect unsigned.

`upgrade_headers` is the other side: the headers Genesys puts on its upgrade request, signed
as its reference client signs them, for a client that plays a call into the worker
(`asr-worker stream --protocol audiohook`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from . import sfv

_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

MAX_CLOCK_SKEW_S: Final = 3
MAX_SIGNATURE_AGE_S: Final = 10
# How long a used nonce is remembered: as long as a signature carrying it can be valid.
NONCE_TTL_S: Final = MAX_SIGNATURE_AGE_S + 2 * MAX_CLOCK_SKEW_S
MIN_NONCE_CHARS: Final = 22
REQUIRED_COMPONENTS: Final = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
_DERIVED: Final = (
    "@method",
    "@authority",
    "@scheme",
    "@target-uri",
    "@request-target",
    "@path",
    "@query",
    "@status",
)
_COMPONENT_PARAMS: Final = frozenset({"key", "name", "sf", "bs", "req"})


@dataclass(frozen=True, slots=True)
class VerifyResult:
    code: str  # VERIFIED, FAILED, UNSIGNED, EXPIRED, INVALID, PRECONDITION, UNSUPPORTED
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.code == "VERIFIED"


VERIFIED: Final = VerifyResult("VERIFIED")


def _fail(code: str, reason: str | None = None) -> VerifyResult:
    return VerifyResult(code, reason)


@dataclass(frozen=True, slots=True)
class SignatureParameters:
    alg: str | None = None
    created: int | None = None
    expires: int | None = None
    keyid: str | None = None
    nonce: str | None = None


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    key: bytes
    good: bool  # False: an unknown key, checked against a random one and failed regardless


KeyResolver = Callable[[SignatureParameters], "ResolvedKey | VerifyResult"]


def canonical(value: str) -> str:
    """A header field value as signed: trimmed, obsolete line folding replaced by a space."""
    out = value.strip()
    while "\r\n" in out:
        head, _, tail = out.partition("\r\n")
        out = head.rstrip(" \t") + " " + tail.lstrip(" \t")
    return out


def header_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Request headers by lower-cased name, repeated lines canonicalized and joined by `, `."""
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]}, {canonical(value)}" if key in out else canonical(value)
    return out


def verify_signature(
    headers: Mapping[str, str],
    key_resolver: KeyResolver,
    *,
    now: float,
    required: Iterable[str] = (),
    max_age_s: int | None = None,
    derived: Callable[[str], str | None] = lambda name: None,
) -> VerifyResult:
    """Check the request's signature as the reference verifier does."""
    try:
        inputs = sfv.parse_dictionary(headers.get("signature-input", ""))
    except sfv.SfvError:
        return _fail("INVALID", 'Failed to parse "signature-input" header field')
    try:
        signatures = sfv.parse_dictionary(headers.get("signature", ""))
    except sfv.SfvError:
        return _fail("INVALID", 'Failed to parse "signature" header field')
    if not inputs:
        if not signatures:
            return _fail("UNSIGNED", 'No "signature" and "signature-input" header fields')
        return _fail("INVALID", 'Found "signature" but no "signature-input" header field')
    if not signatures:
        return _fail("INVALID", 'Found "signature-input" but no "signature" header field')

    label, base = next(iter(inputs.items()))  # no selector: the first signature
    for each_label, each_base in inputs.items():
        signature_item = signatures.get(each_label)
        if signature_item is None:
            return _fail("INVALID", f"Signature with label {sfv.serialize_bare(each_label)} not found")
        if not isinstance(signature_item, sfv.Item) or not isinstance(signature_item.value, bytes):
            return _fail("INVALID", '"signature" header field value is not a byte sequence')
        if not isinstance(each_base, sfv.InnerList):
            return _fail("INVALID", '"signature-input" member value must be an Inner List')
        for component in each_base.items:
            if not isinstance(component.value, str) or isinstance(component.value, sfv.Token):
                return _fail("INVALID", '"signature-input" is not an Inner List of Strings')
            if any(not _string_param(k, v) for k, v in component.params):
                return _fail("INVALID", f"Invalid signature component: {sfv.serialize_item(component)}")
        if not each_base.params:
            return _fail("INVALID", '"signature-input" has no parameters')
        failure = _parameters(each_base.params)[1]
        if failure is not None:
            return failure
    assert isinstance(base, sfv.InnerList)
    signature_value = signatures[label]
    assert isinstance(signature_value, sfv.Item) and isinstance(signature_value.value, bytes)
    signature = signature_value.value
    parameters = _parameters(base.params)[0]

    if parameters.created or parameters.expires or max_age_s:
        if parameters.created and parameters.created > now + MAX_CLOCK_SKEW_S:
            return _fail("PRECONDITION", 'Invalid "created" parameter value (time in the future)')
        if parameters.expires and parameters.expires < now + MAX_CLOCK_SKEW_S:
            return _fail("EXPIRED")
        if max_age_s:
            if not parameters.created:
                return _fail(
                    "PRECONDITION", 'Cannot determine signature age (no "created" signature parameter)'
                )
            if parameters.created + max_age_s < now + MAX_CLOCK_SKEW_S:
                return _fail("EXPIRED")

    remaining = set(required)
    included: set[str] = set()
    lines: list[str] = []
    for component in base.items:
        name = str(component.value)
        encoded = sfv.serialize_item(component)
        if name.startswith("@"):
            if name == "@signature-params":
                return _fail("INVALID", 'The "@signature-params" MUST NOT be listed in covered components.')
            if name == "@query-params":
                return _fail("UNSUPPORTED", f"Derived component {encoded} is not yet supported.")
            if name not in _DERIVED:
                return _fail("INVALID", f"Unknown derived component ({encoded}) in signature base.")
            if component.params:
                if any(k == "req" and v for k, v in component.params):
                    return _fail(
                        "UNSUPPORTED", f"Related request indicator (req) not yet supported ({encoded})."
                    )
                return _fail(
                    "INVALID", f"Derived component ({encoded}) does not support component parameters."
                )
            if encoded in included:
                return _fail("INVALID", f"Duplicate {encoded} component reference")
            value = derived(name) or (headers.get("host") if name == "@authority" else None)
            if not value:
                return _fail("PRECONDITION", f"Cannot resolve reference to {encoded} component")
        else:
            if name == "signature":
                return _fail("UNSUPPORTED", f"Reference to component {encoded} is not yet supported.")
            if component.params:
                return _fail("INVALID", f"Invalid component parameter(s) for component: {encoded}")
            field = headers.get(name)
            if not field:
                return _fail("PRECONDITION", f"Header field {sfv.serialize_bare(name)} not present")
            value = field
        lines.append(f"{encoded}: {value}")
        included.add(encoded)
        remaining.discard(name)
    if remaining:
        missing = ",".join(sfv.serialize_bare(n) for n in sorted(remaining))
        return _fail("PRECONDITION", f"Signature does not cover some of the required component(s): {missing}")
    lines.append(f'"@signature-params": {sfv.serialize_inner_list(base)}')
    data = "\n".join(lines).encode()

    resolved = key_resolver(parameters)
    if isinstance(resolved, VerifyResult):
        return resolved
    alg = parameters.alg or "hmac-sha256"
    computed = hmac.new(resolved.key, data, hashlib.sha256).digest()
    matches = hmac.compare_digest(signature, computed)
    if alg != "hmac-sha256":
        return _fail("UNSUPPORTED", f"Signature algorithm {sfv.serialize_bare(alg)} is not supported")
    if matches and resolved.good:
        return VERIFIED
    return _fail("FAILED", "Signatures do not match")


def _parameters(params: sfv.Params) -> tuple[SignatureParameters, VerifyResult | None]:
    values: dict[str, object] = {}
    for key, value in params:
        if key in ("alg", "keyid", "nonce"):
            if not isinstance(value, str) or isinstance(value, sfv.Token):
                return SignatureParameters(), _fail("INVALID", f'"signature-input": "{key}" must be a String')
        elif key in ("created", "expires"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return SignatureParameters(), _fail(
                    "INVALID", f'"signature-input": "{key}" must be an Integer'
                )
        else:
            return SignatureParameters(), _fail("INVALID", f'"signature-input": unknown parameter "{key}"')
        values[key] = value
    return SignatureParameters(**values), None  # type: ignore[arg-type]


# --- the keys and the request authenticator ---------------------------------------------------


class ApiKeys:
    """`ASR_AUDIOHOOK_API_KEYS`: API keys, each with its client secret (empty: none) and the
    Genesys organization it is bound to, if any. Never printed: repr and str say only how many
    there are."""

    __slots__ = ("_organizations", "_secrets")

    def __init__(self, secrets: Mapping[str, bytes], organizations: Mapping[str, str] | None = None) -> None:
        self._secrets = dict(secrets)
        self._organizations = dict(organizations or {})

    @classmethod
    def parse(cls, text: str) -> ApiKeys | None:
        """Comma-separated `KEY`, `KEY:BASE64_CLIENT_SECRET`, and either followed by
        `:ORGANIZATION_ID` (a Genesys organization's UUID) to bind the key to that
        organization; None when empty."""
        secrets: dict[str, bytes] = {}
        organizations: dict[str, str] = {}
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            key, *rest = (part.strip() for part in entry.split(":"))
            if not key or any(c.isspace() for c in key) or not key.isprintable() or len(rest) > 2:
                raise ValueError(
                    "must be comma-separated KEY, KEY:BASE64_CLIENT_SECRET or KEY:BASE64_CLIENT_SECRET:"
                    "ORGANIZATION_ID entries (KEY::ORGANIZATION_ID without a secret)"
                )
            if rest and _UUID.fullmatch(rest[-1]):  # base64 has no `-`: a UUID is the organization
                organizations[key] = rest.pop().lower()
            secret = rest[0] if rest else None
            try:
                decoded = base64.b64decode(secret, validate=True) if secret else b""
            except (binascii.Error, ValueError):
                raise ValueError("has a client secret that is not base64") from None
            if secret is not None and not decoded and key not in organizations:
                raise ValueError("has an empty client secret after `:`")
            secrets[key] = decoded
        return cls(secrets, organizations) if secrets else None

    def organization(self, key: str) -> str | None:
        """The Genesys organization `key` is bound to (its sessions must name it), if any."""
        return self._organizations.get(key)

    def secret(self, key: str) -> bytes | None:
        """The key's client secret (b"" for none), or None for a key that is not configured.
        Every configured key is compared, in constant time each."""
        found: bytes | None = None
        want = key.encode("utf-8", "surrogatepass")
        for known, secret in self._secrets.items():
            if hmac.compare_digest(want, known.encode()):
                found = secret
        return found

    def __len__(self) -> int:
        return len(self._secrets)

    def revealed(self) -> tuple[str, ...]:
        """Every key and client secret (as configured, base64), for the log formatter to hide."""
        texts = list(self._secrets)
        texts += [base64.b64encode(secret).decode() for secret in self._secrets.values() if secret]
        return tuple(texts)

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self._secrets)} hidden>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ApiKeys)
            and other._secrets == self._secrets
            and other._organizations == self._organizations
        )

    def __hash__(self) -> int:
        return hash((frozenset(self._secrets.items()), frozenset(self._organizations.items())))


class NonceCache:
    """Nonces seen in the signatures of the last `MAX_SIGNATURE_AGE_S` + skew seconds; a
    second request with one of them is a replay. Bounded: past `limit` live entries, new
    signed requests are refused rather than the cache grown."""

    def __init__(self, limit: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> when it may be forgotten
        self.limit = limit

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, nonce: str, now: float) -> str | None:
        """None when the nonce is new (it is recorded); else why the request is refused."""
        horizon = now - 1.0
        while self._seen and next(iter(self._seen.values())) < horizon:
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return "nonce already used (a replayed request)"
        if len(self._seen) >= self.limit:
            return "too many signed requests in the signature window; try again"
        self._seen[nonce] = now + NONCE_TTL_S
        return None


def authenticate(
    headers: Mapping[str, str], request_target: str, keys: ApiKeys, nonces: NonceCache, now: float
) -> VerifyResult:
    """The upgrade request's credentials, checked as the reference's authenticator does, plus
    nonce replay. `headers` as `header_fields` gives them."""
    api_key = headers.get("x-api-key")
    if not api_key:
        return _fail("PRECONDITION", 'Missing "X-API-KEY" header field')

    def resolve(parameters: SignatureParameters) -> ResolvedKey | VerifyResult:
        if not parameters.nonce:
            return _fail("PRECONDITION", 'Missing "nonce" signature parameter')
        if len(parameters.nonce) < MIN_NONCE_CHARS:
            return _fail("PRECONDITION", 'Provided "nonce" signature parameter is too small')
        if parameters.keyid != api_key:
            return _fail("PRECONDITION", "X-API-KEY header field and signature keyid mismatch")
        secret = keys.secret(api_key)
        if secret is None:
            return ResolvedKey(os.urandom(32), good=False)
        return ResolvedKey(secret, good=True)

    result = verify_signature(
        headers,
        resolve,
        now=now,
        required=REQUIRED_COMPONENTS,
        max_age_s=MAX_SIGNATURE_AGE_S,
        derived=lambda name: request_target if name == "@request-target" else None,
    )
    if result.code == "UNSIGNED":
        # Unsigned is fine for a known key without a client secret.
        return VERIFIED if keys.secret(api_key) == b"" else result
    if result.ok:
        nonce = signed_nonce(headers)
        refusal = nonces.admit(nonce, now) if nonce else None
        if refusal is not None:
            return _fail("FAILED", refusal)
    return result


def signed_nonce(headers: Mapping[str, str]) -> str | None:
    """The nonce of a request's signature, if it is signed (an unsigned request has none)."""
    if not headers.get("signature-input"):
        return None
    try:
        inputs = sfv.parse_dictionary(headers["signature-input"])
    except sfv.SfvError:
        return None
    base = next(iter(inputs.values()), None)
    nonce = dict(base.params).get("nonce") if base is not None else None
    return nonce if isinstance(nonce, str) else None


def _string_param(key: str, value: sfv.BareItem) -> bool:
    """The reference verifier's component-parameter check: a known name with a String value
    (it validates every one with the `key` parameter's rule, so `;sf` and `;req` fail here)."""
    return key in _COMPONENT_PARAMS and isinstance(value, str) and not isinstance(value, sfv.Token)


# --- signing (the client's side) ---------------------------------------------------------------


def upgrade_headers(
    api_key: str,
    *,
    session_id: str,
    organization_id: str,
    correlation_id: str | None = None,
    secret: bytes | None = None,
    authority: str = "",
    target: str = "/v1/audiohook",
    created: int | None = None,
    expires: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The upgrade request's AudioHook headers, with `Signature-Input` and `Signature` over
    them when there is a client `secret` (`authority` and `target`: the `Host` and the path
    the request goes to, as the server sees them)."""
    headers = {
        "Audiohook-Organization-Id": organization_id,
        "Audiohook-Session-Id": session_id,
        "Audiohook-Correlation-Id": correlation_id or str(uuid.uuid4()),
        "X-API-KEY": api_key,
    }
    if secret is not None:
        headers.update(
            sign(
                headers,
                secret,
                authority=authority,
                target=target,
                created=created,
                expires=expires,
                nonce=nonce,
            )
        )
    return headers


def sign(
    headers: Mapping[str, str],
    secret: bytes,
    *,
    authority: str,
    target: str,
    created: int | None = None,
    expires: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """`Signature-Input` and `Signature` (label `sig1`, HMAC-SHA256) over the components Genesys
    signs, in its order, with `keyid` the API key; `created` now, `expires` 30 s later and a
    random 24-character nonce unless given."""
    values = {
        "@request-target": target,
        "@authority": authority,
        "audiohook-organization-id": headers["Audiohook-Organization-Id"],
        "audiohook-session-id": headers["Audiohook-Session-Id"],
        "audiohook-correlation-id": headers["Audiohook-Correlation-Id"],
        "x-api-key": headers["X-API-KEY"],
    }
    created = int(time.time()) if created is None else created
    expires = created + 30 if expires is None else expires
    nonce = base64.b64encode(os.urandom(18)).decode() if nonce is None else nonce
    names = " ".join(f'"{name}"' for name in REQUIRED_COMPONENTS)
    params = (
        f'({names});keyid="{headers["X-API-KEY"]}";nonce="{nonce}";alg="hmac-sha256";'
        f"created={created};expires={expires}"
    )
    base = "\n".join(
        [*(f'"{name}": {values[name]}' for name in REQUIRED_COMPONENTS), f'"@signature-params": {params}']
    )
    digest = hmac.new(secret, base.encode(), hashlib.sha256).digest()
    return {"Signature-Input": f"sig1={params}", "Signature": f"sig1=:{base64.b64encode(digest).decode()}:"}
