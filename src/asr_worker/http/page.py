"""`GET /`: the live page, plain HTML, CSS and JavaScript served from the package (no build).

The page lists the active calls (`/v1/sessions`), shows each call's transcript as it arrives
(one `EventSource` on `/v1/events`) and the health figures (`/health`). It writes every piece
of text with `textContent`, and the Content-Security-Policy allows no inline script, so text
from a call can never become markup or code. A `?token=` on the page's URL is passed on to
every request it makes.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

from .auth import OPEN, Route

_FILES: Final = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}
_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


def routes() -> list[Route]:
    """The page's shell and assets hold no call data: everything it shows comes from the API,
    which wants a key with `watch` (the page carries it as `?token=`)."""
    return [Route("GET", "/", index, OPEN), Route("GET", "/static/{name}", static, OPEN)]


def _file(name: str) -> web.Response:
    body = resources.files("asr_worker.http").joinpath("static", name).read_bytes()
    return web.Response(body=body, content_type=_FILES[name], charset="utf-8", headers=_HEADERS)


async def index(request: web.Request) -> web.Response:
    return _file("index.html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _FILES or name == "index.html":
        raise web.HTTPNotFound(text="no such file")
    return _file(name)
