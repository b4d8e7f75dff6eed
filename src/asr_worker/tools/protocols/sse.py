"""A call's events over Server-Sent Events (`GET /v1/calls/{ID}/events`), for the routes that
return none on their own socket (Twilio, Exotel): opened before the call starts, so the
stream has every event from `session_started` on, and over after `session_ended`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import aiohttp

from .base import CallSpec, Received


def events_url(call: CallSpec) -> str:
    parts = urlsplit(call.url)
    scheme = "https" if parts.scheme == "wss" else "http"
    query = urlencode({"tenant_id": call.tenant_id}) if call.tenant_id else ""
    path = f"/v1/calls/{quote(call.interaction_id, safe='')}/events"
    return urlunsplit((scheme, parts.netloc, path, query, ""))


@asynccontextmanager
async def call_events(http: aiohttp.ClientSession, call: CallSpec) -> AsyncIterator[AsyncIterator[Received]]:
    """The call's event stream, subscribed (its response head has come) when the block starts.
    Raises aiohttp.ClientResponseError for a refusal (401 without a key with `watch` scope)."""
    key = call.keys.watch_key
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with http.get(events_url(call), headers=headers, timeout=timeout) as response:
        response.raise_for_status()
        yield _events(response.content)


async def _events(content: aiohttp.StreamReader) -> AsyncIterator[Received]:
    """Each `data:` block as one event (the worker writes one JSON line per event)."""
    data: list[str] = []
    async for raw in content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            text = "\n".join(data)
            data = []
            event = json.loads(text)
            if isinstance(event, dict):
                yield Received(text, [event])
