"""Typed application keys shared by the HTTP app and the transports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..worker import Worker

WORKER: web.AppKey[Worker] = web.AppKey("worker")
