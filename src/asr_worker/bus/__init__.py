"""Buses: where calls come from and where their events go, besides this process's sockets.

`PUBSUB_ADAPTER` picks one from `BUSES`, the one registry: each entry names a module that
registers itself as `KIND` (its settings and how to build it), so a new bus is a module and
a line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Final

from ..settings import Section, Setting, choice
from .base import Bus, BusKind

BUSES: Final = {
    "in_memory": "asr_worker.bus.in_memory",
    "redis_streams": "asr_worker.bus.redis",
}


@dataclass(frozen=True)
class BusChoice:
    adapter: str = "in_memory"


SETTINGS: Final = Section(
    "bus",
    "bus",
    BusChoice,
    (Setting("adapter", "PUBSUB_ADAPTER", "bus: " + ", ".join(BUSES), choice(*BUSES)),),
)


def bus_kind(adapter: str) -> BusKind:
    kind = importlib.import_module(BUSES[adapter]).KIND
    if not isinstance(kind, BusKind):
        raise TypeError(f"{BUSES[adapter]}.KIND is not a BusKind")
    return kind


__all__ = ["BUSES", "SETTINGS", "Bus", "BusChoice", "BusKind", "bus_kind"]
