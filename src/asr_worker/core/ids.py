"""The ids a call and its tenant go by, as every source must give them: the ingest socket's
path and query, telephony's start message, the bus's announcement and the CLI's flags."""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from ..errors import BadRequest

_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# The tenant of a call whose key does not name one (a single-tenant deployment's calls).
DEFAULT_TENANT: Final = "default"
# In a watcher's key only: the call with this id in whichever tenant (no tenant is named `*`).
ANY_TENANT: Final = "*"


class CallKey(NamedTuple):
    """A call: its tenant and its interaction id. Every table of calls is keyed by both, so one
    interaction id under two tenants is two calls, and no key of one tenant reaches another's."""

    tenant: str
    interaction_id: str


def check_id(value: str | None, name: str) -> str:
    if value is None or not _ID.fullmatch(value):
        shown = "missing" if value is None else repr(value[:40])
        raise BadRequest(f"{name} must be 1-128 characters of A-Z a-z 0-9 . _ : - ({shown})")
    return value


def check_optional_id(value: str | None, name: str) -> str | None:
    return None if value in (None, "") else check_id(value, name)
