"""The SIPREC recording server's and the RTP receivers' settings (`ASR_SIPREC_*`).

The server is off until `ASR_SIPREC_PORT` names its SIP port. Only addresses in
`ASR_SIPREC_ALLOW` may send it INVITEs; each call's tenant is the one `ASR_SIPREC_TENANTS`
gives the sending address (the most specific network wins), `default` otherwise. Which stream
is the customer's (channel 0) and which the agent's (channel 1) follows `ASR_SIPREC_ROLES`
rules on the metadata's participants and the SDP's labels, else the offer's order.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from typing import Final

from ...core.ids import DEFAULT_TENANT, check_id
from ...errors import BadRequest
from ...settings import Section, Setting, int_range, seconds

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ROLE_CHANNELS: Final = {"customer": 0, "agent": 1}
RULE_KINDS: Final = ("name", "aor", "label")


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    @classmethod
    def parse(cls, text: str) -> PortRange:
        first, sep, last = text.strip().partition("-")
        try:
            lo, hi = int(first), int(last if sep else first)
        except ValueError:
            raise ValueError("must be a port range FIRST-LAST, e.g. 20000-20999") from None
        if not 1024 <= lo <= hi <= 65535 or hi - lo < 3:
            raise ValueError("must be a port range FIRST-LAST within 1024-65535 holding at least 4 ports")
        return cls(lo, hi)


@dataclass(frozen=True)
class RoleRule:
    """`ROLE=KIND:PATTERN`: a participant whose name or AoR, or a stream whose label, matches
    the pattern (shell-style `*` and `?`, case-insensitive) has that role."""

    role: str
    kind: str
    pattern: str

    def __str__(self) -> str:
        return f"{self.role}={self.kind}:{self.pattern}"

    def matches(self, kind: str, value: str | None) -> bool:
        return (
            kind == self.kind and value is not None and fnmatch.fnmatch(value.lower(), self.pattern.lower())
        )


def networks(text: str) -> tuple[Network, ...]:
    found: list[Network] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            found.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError("must be comma-separated networks such as 10.0.0.0/8 or 192.0.2.7/32") from None
    return tuple(found)


def tenant_networks(text: str) -> tuple[tuple[Network, str], ...]:
    found: list[tuple[Network, str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        cidr, sep, tenant = item.partition("=")
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=False)
            found.append((network, check_id(tenant.strip(), "tenant")))
        except (ValueError, BadRequest):
            raise ValueError("must be comma-separated CIDR=TENANT entries, e.g. 10.1.0.0/16=acme") from None
        if not sep:
            raise ValueError("must be comma-separated CIDR=TENANT entries, e.g. 10.1.0.0/16=acme")
    return tuple(found)


def role_rules(text: str) -> tuple[RoleRule, ...]:
    rules: list[RoleRule] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        role, _, rest = item.partition("=")
        kind, _, pattern = rest.partition(":")
        role, kind, pattern = role.strip().lower(), kind.strip().lower(), pattern.strip()
        if role not in ROLE_CHANNELS or kind not in RULE_KINDS or not pattern:
            raise ValueError(
                "must be comma-separated ROLE=KIND:PATTERN rules, ROLE customer or agent, KIND name, "
                "aor or label (e.g. agent=aor:sip:*@agents.example.com)"
            )
        rules.append(RoleRule(role, kind, pattern))
    return tuple(rules)


def header_name(text: str) -> str | None:
    value = text.strip()
    if not value:
        return None
    if not all(c.isascii() and (c.isalnum() or c in "-_.!%*+`'~") for c in value) or len(value) > 64:
        raise ValueError("must be a SIP header name, e.g. Session-ID or X-UCID")
    return value


def optional_port(text: str) -> int | None:
    value = text.strip()
    return None if value in ("", "off", "none") else int_range(0, 65535)(value)


def optional_path(text: str) -> str | None:
    return text.strip() or None


@dataclass(frozen=True)
class SiprecOptions:
    port: int | None = None  # SIP on UDP and TCP; None: the recording server is off
    rtp_ports: PortRange = PortRange(20000, 20999)
    allow: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"),)
    id_header: str | None = None
    tenants: tuple[tuple[Network, str], ...] = ()
    roles: tuple[RoleRule, ...] = ()
    max_calls: int = 200
    tls_port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    media_address: str | None = None  # written into SDP answers; default: where the INVITE came in
    jitter_ms: int = 60
    rtp_timeout_s: float = 30.0
    min_session_expires_s: int = 90

    def allowed(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self.allow)

    def tenant_of(self, address: str) -> str:
        """The tenant of calls from `address`: the most specific matching network's."""
        ip = _ip(address)
        best: tuple[int, str] | None = None
        for network, tenant in self.tenants:
            if ip is not None and ip in network and (best is None or network.prefixlen > best[0]):
                best = (network.prefixlen, tenant)
        return DEFAULT_TENANT if best is None else best[1]


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _joined(value: object) -> str:
    if isinstance(value, tuple):
        parts = [f"{v[0]}={v[1]}" if isinstance(v, tuple) else str(v) for v in value]
        return ",".join(parts) or "none"
    return "none" if value is None else str(value)


SETTINGS: Final = Section(
    "siprec",
    "SIPREC recording server and RTP",
    SiprecOptions,
    (
        Setting(
            "port",
            "ASR_SIPREC_PORT",
            "the SIPREC recording server's SIP port, UDP and TCP, on HOST (0 picks a free one); none: off",
            optional_port,
        ),
        Setting(
            "rtp_ports",
            "ASR_SIPREC_RTP_PORTS",
            "the RTP port range SIPREC streams and externalMedia calls are answered on",
            PortRange.parse,
            show=str,
        ),
        Setting(
            "allow",
            "ASR_SIPREC_ALLOW",
            "addresses (comma-separated CIDRs) that may send INVITEs; others get 403",
            networks,
            show=_joined,
        ),
        Setting(
            "id_header",
            "ASR_SIPREC_ID_HEADER",
            "a SIP header of the INVITE naming the interaction id (e.g. Session-ID, X-UCID); without "
            "it (or when the INVITE lacks it) the metadata's session id, then the Call-ID",
            header_name,
        ),
        Setting(
            "tenants",
            "ASR_SIPREC_TENANTS",
            "whose calls each SBC sends: comma-separated CIDR=TENANT (the most specific wins); "
            "other allowed addresses' calls are the tenant default's",
            tenant_networks,
            show=_joined,
        ),
        Setting(
            "roles",
            "ASR_SIPREC_ROLES",
            "which stream is the customer's (channel 0) and the agent's (channel 1): comma-separated "
            "ROLE=KIND:PATTERN with KIND name, aor or label; unmatched streams take the offer's order",
            role_rules,
            show=_joined,
        ),
        Setting(
            "max_calls",
            "ASR_SIPREC_MAX_CALLS",
            "most concurrent SIPREC calls; more get 503",
            int_range(1, 100_000),
        ),
        Setting(
            "tls_port",
            "ASR_SIPREC_TLS_PORT",
            "SIP over TLS on this port too, with ASR_SIPREC_TLS_CERT and ASR_SIPREC_TLS_KEY",
            optional_port,
        ),
        Setting("tls_cert", "ASR_SIPREC_TLS_CERT", "the SIP TLS certificate chain (PEM file)", optional_path),
        Setting("tls_key", "ASR_SIPREC_TLS_KEY", "the SIP TLS private key (PEM file)", optional_path),
        Setting(
            "media_address",
            "ASR_SIPREC_MEDIA_ADDRESS",
            "the address SDP answers and externalMedia give for RTP (behind NAT: the public one); "
            "default: the address the request came in on",
            lambda text: text.strip() or None,
        ),
        Setting(
            "jitter_ms",
            "ASR_SIPREC_JITTER_MS",
            "how long a packet after a gap waits for the missing ones before they count as lost",
            int_range(0, 1000),
        ),
        Setting(
            "rtp_timeout_s",
            "ASR_SIPREC_RTP_TIMEOUT_S",
            "a call none of whose streams sent RTP for this long (and not on hold) ends",
            seconds(1.0, 86400.0),
        ),
        Setting(
            "min_session_expires_s",
            "ASR_SIPREC_MIN_SE_S",
            "the shortest session timer accepted (RFC 4028 Min-SE); shorter gets 422",
            int_range(90, 86400),
        ),
    ),
)
