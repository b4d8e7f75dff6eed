"""Providers: adding one is one module with `create(settings) -> Provider` and one line here."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import (
    BackgroundProvider,
    InstrumentedProvider,
    Provider,
    ProviderHealth,
    ProviderStream,
    StreamRequest,
)

if TYPE_CHECKING:
    from ..config import Settings

PROVIDERS: dict[str, str] = {
    "mock": "asr_worker.providers.mock",
    "deepgram": "asr_worker.providers.deepgram",
    "local": "asr_worker.providers.local",
}


def make_provider(settings: Settings) -> Provider:
    module = importlib.import_module(PROVIDERS[settings.provider])
    provider: Provider = module.create(settings)
    return provider


__all__ = [
    "PROVIDERS",
    "BackgroundProvider",
    "InstrumentedProvider",
    "Provider",
    "ProviderHealth",
    "ProviderStream",
    "StreamRequest",
    "make_provider",
]
