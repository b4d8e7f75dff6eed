"""Buses: where calls come from and where their events go, besides this process's sockets."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import Bus

if TYPE_CHECKING:
    from ..config import Settings

# One line per bus; each module has `create(settings) -> Bus`.
BUSES: dict[str, str] = {
    "in_memory": "asr_worker.bus.in_memory",
    "redis_streams": "asr_worker.bus.redis",
}


def make_bus(settings: Settings) -> Bus:
    module = importlib.import_module(BUSES[settings.pubsub_adapter])
    bus: Bus = module.create(settings)
    return bus


__all__ = ["BUSES", "Bus", "make_bus"]
