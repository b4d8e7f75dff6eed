"""Errors: one home for every error the service names to someone.

Each is a `CodedError`: a stable `code` for programs (an `error` event's code, a close reason,
a metric label, a refusal body) and a `message` for people that says what was wrong and never
holds a secret. The families:

* `BadRequest` and its kinds: what a client sent cannot be taken (a call id, an audio format,
  a parameter, a protocol message). They are ValueErrors, as parsers raise them.
* `ProtocolViolation`: what a *server* the worker talks to sent is not valid protocol (a
  provider's message); counted by `kind` and skipped.
* `SessionRefused`: a call or source the worker will not take now (at capacity, draining, ending).
* `ProviderError`: a provider refused or lost a stream; `retryable` is the session's decision.
* `ConfigError`, `StartError`: a setting, or a part that cannot start at all; the one line a
  command prints before it exits 2.

Each boundary maps its library's exceptions to these in one place, as httpcore's
`_exceptions.py` does: websockets' (handshakes, closes) in `providers/handshake.py` and
`providers/remote.py`; aiohttp's socket failures in `transports/common.py`; redis-py's in
`bus/redis/wire.py`; file and codec errors in `tools/audio_files.py`.
"""

from __future__ import annotations


class CodedError(Exception):
    """An error with a stable `code` and a `message` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BadRequest(CodedError, ValueError):
    """Input a client sent that the worker cannot take; the message is safe to show it."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(code, message)


class ParamError(BadRequest):
    """A request parameter (a query's, a custom parameter, an options field) that cannot be
    taken; the message names it."""


class AudioFormatError(BadRequest):
    """An audio format a client asked for that the worker cannot take; the message says why."""


class ProtocolError(BadRequest):
    """A peer's message that breaks its protocol's rules (an AudioHook message, a Realtime
    event, a telephony platform's message, an ingest control message). `code` is the protocol's
    own where it has one; `param` and `event_id` say where, for protocols that report them
    (OpenAI's Realtime error event)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        event_id: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message, code)
        self.param, self.event_id, self.type = param, event_id, type


class ProtocolViolation(CodedError, ValueError):
    """A message from a server the worker is a client of that is not valid protocol: `kind`
    is short and stable (a metric label), `detail` is for the log."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(kind, f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


class SessionRefused(CodedError):
    """A call or source the worker will not take now: `code` is stable (`capacity`,
    `draining`, `session_ending`, ...), `message` says what to do."""


class AccessDenied(CodedError):
    """A request without a valid key (`unauthorized`, HTTP 401) or with one that may not do
    what it asks (`forbidden`, HTTP 403); the message says which key form or scope is needed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = 401 if code == "unauthorized" else 403


class ProviderError(CodedError):
    """A provider refused or lost a stream.

    `retryable` says whether the same call may try again (network faults, 1011, 5xx, 429) or
    must fail (bad key, bad request, no credit). `code` is short and stable for metrics;
    `message` is for people and never contains a secret. `outage` says the provider is failing
    for every call, not only this one (its circuit breaker is open): a call with a fallback
    provider moves there at once (`core/failover.py`).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        outage: bool = False,
    ) -> None:
        super().__init__(code, message)
        self.retryable = retryable
        self.status = status
        self.outage = outage

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConfigError(CodedError, ValueError):
    """An invalid setting; the message names the variable and says what is allowed."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_config", message)


class StartError(CodedError):
    """A part that cannot start at all (a model that does not load): no call could be served,
    so the command stops with this message as its one line."""

    def __init__(self, message: str) -> None:
        super().__init__("cannot_start", message)


class ModelError(StartError):
    """The local engine's model cannot be found, assembled or trusted; the message says what
    to do."""
