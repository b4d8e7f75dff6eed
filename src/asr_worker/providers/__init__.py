"""Providers: each is one module with its own options (a frozen dataclass it parses and owns)
and `create(options) -> Provider`; `config.make_provider` picks one from the settings.

The providers know nothing of the worker's settings, so configuration reads them without
a provider ever reading configuration back.
"""

from __future__ import annotations

from .base import (
    BackgroundProvider,
    InstrumentedProvider,
    Provider,
    ProviderHealth,
    ProviderStream,
    StreamRequest,
)

__all__ = [
    "BackgroundProvider",
    "InstrumentedProvider",
    "Provider",
    "ProviderHealth",
    "ProviderStream",
    "StreamRequest",
]
