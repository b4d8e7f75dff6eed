"""The routes `asr-worker stream --protocol NAME` plays a call into: each is the module of that
name here, defining `PROTOCOL`, a `base.RouteProtocol`. A new route is its module and one line
in `NAMES`. Modules are imported when a call needs one, so the command line stays quick."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .base import RouteProtocol

NAMES: Final = (
    "ingest",
    "twilio",
    "exotel",
    "audiohook",
    "realtime",
    "deepgram",
    "siprec",
    "freeswitch",
    "jambonz",
    "jambonz_stt",
    "vonage",
    "telnyx",
    "plivo",
    "signalwire",
    "asterisk",
    "audiosocket",
)


def load(name: str) -> RouteProtocol:
    """The protocol `name` names; ValueError for one there is none of."""
    if name not in NAMES:
        raise ValueError(f"--protocol must be one of {', '.join(NAMES)}, not {name!r}")
    protocol: RouteProtocol = importlib.import_module(f"{__name__}.{name}").PROTOCOL
    return protocol
