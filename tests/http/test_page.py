"""The live page's files are served by the worker, with headers that keep call text inert."""

from __future__ import annotations

import aiohttp

from asr_worker.worker import Worker
from tests.conftest import base_url


async def test_the_page_and_its_assets_are_served(worker: Worker, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base_url(worker)}/") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        html = await response.text()
        assert 'src="static/app.js"' in html and 'href="static/style.css"' in html
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        async with http.get(f"{base_url(worker)}/static/{name}") as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith(kind)
    async with http.get(f"{base_url(worker)}/static/app.js") as response:
        script = await response.text()
        assert "innerHTML" not in script and "insertAdjacentHTML" not in script  # text goes in as text


async def test_only_the_pages_own_files_are_served(worker: Worker, http: aiohttp.ClientSession) -> None:
    for path in ("/static/index.html", "/static/..%2Fpage.py", "/static/nope.js", "/static/"):
        async with http.get(f"{base_url(worker)}{path}") as response:
            assert response.status == 404, path
