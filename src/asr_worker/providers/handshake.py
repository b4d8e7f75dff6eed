"""Opening a provider's WebSocket, and sorting what can go wrong in the handshake.

Both remote providers (Deepgram, OpenAI Realtime) connect the same way: the key in a header,
no compression (audio does not deflate; compressing it only costs CPU), their own timeouts
and pings, a bounded receive queue. What went wrong comes back as a value rather than as the
library's exception, so that nothing of that exception (the server's response, which may echo
the request's headers) stays chained to the `ProviderError` a provider builds from it, and
each provider maps it to its own errors, messages and metrics:

* `Refused`: the server answered the upgrade with an HTTP status (its response, to read);
* `Unreachable`: no usable answer, with `kind` "timeout", "network" or "bad_url" and a short
  description (not yet scrubbed of the key: the provider does that).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.http11 import Response

from .. import __version__

_MAX_MESSAGE_BYTES = 1 << 22


class SocketTiming(Protocol):
    """The timing settings both providers' options carry."""

    @property
    def open_timeout_s(self) -> float: ...
    @property
    def ping_interval_s(self) -> float | None: ...
    @property
    def ping_timeout_s(self) -> float | None: ...
    @property
    def close_timeout_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Refused:
    response: Response


@dataclass(frozen=True, slots=True)
class Unreachable:
    kind: Literal["timeout", "network", "bad_url"]
    detail: str


async def open_websocket(
    url: str,
    headers: list[tuple[str, str]],
    timing: SocketTiming,
    *,
    max_queue: int,
    logger: logging.Logger,
    connection: type[ClientConnection] = ClientConnection,
) -> ClientConnection | Refused | Unreachable:
    """The open connection, or why there is none. `max_queue`: messages read ahead of the
    stream (websockets then stops reading the socket, so the bound holds)."""
    try:
        return await connect(
            url,
            additional_headers=headers,
            user_agent_header=f"asr-worker/{__version__}",
            compression=None,
            open_timeout=timing.open_timeout_s,
            ping_interval=timing.ping_interval_s,
            ping_timeout=timing.ping_timeout_s,
            close_timeout=timing.close_timeout_s,
            max_size=_MAX_MESSAGE_BYTES,
            max_queue=max_queue,
            logger=logger,
            create_connection=connection,
        )
    except InvalidStatus as exc:
        return Refused(exc.response)
    except InvalidURI:
        return Unreachable("bad_url", "not a usable WebSocket URL")
    except TimeoutError:
        return Unreachable("timeout", f"no handshake within {timing.open_timeout_s:g} s")
    except (OSError, InvalidHandshake, ConnectionClosed) as exc:
        return Unreachable("network", describe_network_error(exc))


def describe_network_error(exc: BaseException) -> str:
    """An OS error's own words, else the exception's type and the start of its message."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {str(exc)[:200]}"
