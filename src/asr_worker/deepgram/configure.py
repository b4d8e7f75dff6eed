"""Deepgram's `Configure` on `/v1/listen`: a live stream's settings changed mid-stream (new
keyterms, formatting features on or off), and the server's two answers to it. The message is
spoken by clients and parsed by a server; its own module, beside the stream's protocol, since
a stream's messages are otherwise audio and three fixed controls."""

from __future__ import annotations

from dataclasses import dataclass

from .. import jsonwire
from ..core.call_options import FORMAT_FLAGS
from ..core.keyterms import check_keyterms
from ..errors import ProtocolError
from .protocol import CONFIGURE


@dataclass(frozen=True, slots=True)
class Configure:
    """A `Configure` message: `keyterms` to replace the stream's (None: keep them; empty:
    clear them), and formatting features to turn on or off."""

    keyterms: tuple[str, ...] | None
    features: tuple[tuple[str, bool], ...]


def parse_configure(text: str) -> Configure:
    """A client's `Configure`. Raises ProtocolError for one that is not Deepgram's shape (an
    unknown field or feature, a keyterm that is not a string), ParamError for keyterms beyond
    the limits (Deepgram's CONFIGURE_KEYTERM_LIMIT_EXCEEDED)."""
    try:
        message = jsonwire.loads(text)
    except ValueError:
        raise ProtocolError("not_json", "a Configure message must be a JSON object") from None
    if not isinstance(message, dict) or message.get("type") != CONFIGURE:
        raise ProtocolError("not_configure", "not a Configure message")
    unknown = sorted(set(message) - {"type", "keyterms", "features"})
    if unknown:
        raise ProtocolError("bad_fields", f"Configure has no field {unknown[0][:40]!r}")
    raw_terms = message.get("keyterms")
    keyterms: tuple[str, ...] | None = None
    if raw_terms is not None:
        if not isinstance(raw_terms, list) or not all(isinstance(t, str) for t in raw_terms):
            raise ProtocolError("bad_fields", "Configure keyterms must be an array of strings")
        keyterms = check_keyterms([str(t) for t in raw_terms], "keyterms")
    raw_features = message.get("features")
    features: list[tuple[str, bool]] = []
    if raw_features is not None:
        if not isinstance(raw_features, dict):
            raise ProtocolError("bad_fields", "Configure features must be an object of booleans")
        for name, on in raw_features.items():
            if name not in FORMAT_FLAGS:
                raise ProtocolError(
                    "bad_fields",
                    f"Configure feature {str(name)[:40]!r} is not one of {', '.join(FORMAT_FLAGS)}",
                )
            if not isinstance(on, bool):
                raise ProtocolError("bad_fields", f"Configure feature {name} must be true or false")
            features.append((name, on))
    return Configure(keyterms, tuple(features))


def configure_success(request_id: str, keyterms: tuple[str, ...] | None) -> dict[str, object]:
    """Deepgram's answer to a Configure it applied; `keyterms` when it replaced them."""
    out: dict[str, object] = {"type": "ConfigureSuccess", "request_id": request_id}
    if keyterms is not None:
        out["keyterms"] = list(keyterms)
    return out


def configure_failure(request_id: str, code: str, description: str) -> dict[str, object]:
    """Deepgram's answer to a Configure it did not apply (the stream keeps its settings):
    CONFIGURE_KEYTERMS_NOT_SUPPORTED, CONFIGURE_KEYTERM_LIMIT_EXCEEDED, CONFIGURE_ALREADY_PENDING
    or CONFIGURE_INTERNAL_ERROR."""
    return {"type": "ConfigureFailure", "request_id": request_id, "code": code, "description": description}
