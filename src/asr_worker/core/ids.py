"""The ids a call and its tenant go by, as every source must give them: the ingest socket's
path and query, telephony's start message, the bus's announcement and the CLI's flags."""

from __future__ import annotations

import re
from typing import Final

from ..errors import BadRequest

_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def check_id(value: str | None, name: str) -> str:
    if value is None or not _ID.fullmatch(value):
        shown = "missing" if value is None else repr(value[:40])
        raise BadRequest(f"{name} must be 1-128 characters of A-Z a-z 0-9 . _ : - ({shown})")
    return value


def check_optional_id(value: str | None, name: str) -> str | None:
    return None if value in (None, "") else check_id(value, name)
