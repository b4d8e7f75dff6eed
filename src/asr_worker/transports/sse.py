"""Server-Sent Events: a call's events (`GET /v1/calls/{interaction_id}/events`) and every
call's (`GET /v1/events`, what the live page reads), for browsers and `curl -N`.

Each event is `id: <seq>`, `event: <type>`, `data: <json>`. A call's stream first replays the
events the worker still keeps for it (the whole call so far, up to the hub's history) and
then follows it live; `Last-Event-ID` (or `?last_event_id=`, for clients that cannot set
headers) resumes after that `seq`. It ends after `session_ended`, and a reconnect after the
end gets 204 No Content, which tells an EventSource to stop retrying. A stream for a call
that has not started yet waits for it. A comment line keeps idle streams open through
proxies every `KEEPALIVE_S`. A reader too slow to keep up gets `events_dropped` in place of
what it lost (the hub's bounded queue), never an unbounded buffer.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from ..core.events import CallEvent, Event, EventsDropped, Refusal, SessionEnded
from ..core.ids import check_id
from ..errors import AccessDenied, BadRequest
from ..http.auth import Route, principal_of
from ..jsonwire import dumps_event
from ..runtime.hub import Subscription
from ..tenancy import Scope
from .common import call_named
from .host import CallHost, bind

KEEPALIVE_S: Final = 15.0
RETRY_MS: Final = 2000
DEFAULT_REPLAY: Final = 100  # per active call, on /v1/events
MAX_REPLAY: Final = 500
_HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not hold events back
}


def routes(host: CallHost) -> list[Route]:
    """A key with `watch` sees its tenant's calls; one that names tenants (the worker token)
    picks the tenant with `?tenant_id=` (default `default`)."""
    return [
        Route(
            "GET", "/v1/calls/{interaction_id}/events", bind(host, call_events), Scope.WATCH, long_lived=True
        ),
        Route("GET", "/v1/events", bind(host, all_events), Scope.WATCH, long_lived=True),
    ]


def format_event(event: Event, *, with_id: bool = True) -> bytes:
    """One event as an SSE block: `id` is a call event's seq (markers and refusals have none),
    `event` its type. JSON escapes newlines, so `data` is always one line."""
    head = f"event: {event.type}\n"
    if with_id and not isinstance(event, EventsDropped | Refusal):
        head = f"id: {event.seq}\n{head}"
    return f"{head}data: ".encode() + dumps_event(event) + b"\n\n"


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": "bad_request", "message": message}, status=400)


def _resume_after(request: web.Request) -> int | None:
    """The seq to resume after, from `Last-Event-ID` or `?last_event_id=`; BadRequest if junk."""
    value = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise BadRequest(f"Last-Event-ID must be an event seq (a whole number), not {text[:20]!r}")
    return int(text)


async def call_events(host: CallHost, request: web.Request) -> web.StreamResponse:
    try:
        interaction_id = check_id(request.match_info.get("interaction_id"), "interaction_id")
        call = call_named(host, principal_of(request), interaction_id, request.query.get("tenant_id"))
        after = _resume_after(request)
    except BadRequest as exc:
        return _bad_request(str(exc))
    except AccessDenied as exc:
        return web.json_response({"error": exc.code, "message": exc.message}, status=exc.status)
    kept = host.hub.recent(call)
    last = kept[-1] if kept else None
    if (
        after is not None
        and last is not None
        and isinstance(last, SessionEnded)
        and after >= last.seq
        and host.manager.get(call) is None
    ):
        return web.Response(status=204)  # the call is over and the client has seen all of it
    subscription = host.hub.subscribe(call, after_seq=0 if after is None else after)
    return await _stream(request, host, subscription, [], ends_with_call=True, with_ids=True)


async def all_events(host: CallHost, request: web.Request) -> web.StreamResponse:
    """Every call's events, live, after the last `replay` kept events of each active call (the
    page's view). No ids: seqs are per call, so a reconnect simply replays again."""
    replay_text = request.query.get("replay", str(DEFAULT_REPLAY)).strip()
    if not replay_text.isascii() or not replay_text.isdigit() or int(replay_text) > MAX_REPLAY:
        return _bad_request(f"replay must be a whole number from 0 to {MAX_REPLAY}")
    replay = int(replay_text)
    try:
        tenant = principal_of(request).tenants_seen(request.query.get("tenant_id"))
    except BadRequest as exc:
        return _bad_request(str(exc))
    except AccessDenied as exc:
        return web.json_response({"error": exc.code, "message": exc.message}, status=exc.status)
    # No await between reading the history and subscribing: nothing is missed or repeated.
    backlog: list[CallEvent] = []
    if replay:
        for runner in host.manager.sessions_of(tenant):
            backlog.extend(host.hub.recent(runner.key)[-replay:])
    subscription = host.hub.subscribe_tenant(tenant)
    return await _stream(request, host, subscription, backlog, ends_with_call=False, with_ids=False)


async def _stream(
    request: web.Request,
    host: CallHost,
    subscription: Subscription,
    backlog: list[CallEvent],
    *,
    ends_with_call: bool,
    with_ids: bool,
) -> web.StreamResponse:
    gauge = host.metrics.sse_streams.labels("call" if ends_with_call else "all")
    gauge.inc()
    response = web.StreamResponse(headers=_HEADERS)
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        for kept in backlog:
            await response.write(format_event(kept, with_id=with_ids))
        while True:
            try:
                event = await asyncio.wait_for(subscription.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if event is None:
                break  # the worker is shutting down
            await response.write(format_event(event, with_id=with_ids))
            if ends_with_call and isinstance(event, SessionEnded):
                break
    except ConnectionError:
        pass  # the client went away
    finally:
        subscription.close()
        gauge.dec()
    return response
