"""The registry's view of the primary's health, which failback reads: up from the first
connection that opened after the last failure, and never while it takes no new calls."""

from __future__ import annotations

from asr_worker.providers.mock import MockOptions, MockProvider
from asr_worker.runtime.primary import PrimaryWatch


class GatedProvider(MockProvider):
    def __init__(self) -> None:
        super().__init__(MockOptions(), name="primary")
        self.taking = True

    def taking_new_calls(self) -> bool:
        return self.taking


def test_the_primary_is_up_from_its_first_connection_after_the_last_failure() -> None:
    watch = PrimaryWatch(GatedProvider())
    assert watch.up_since() is None  # nothing has shown it works yet
    watch.opened(10.0)
    watch.opened(12.0)
    assert watch.up_since() == 10.0
    watch.failed()
    assert watch.up_since() is None
    watch.opened(15.0)
    assert watch.up_since() == 15.0


def test_an_open_breaker_puts_it_down_until_a_connection_works_again() -> None:
    provider = GatedProvider()
    watch = PrimaryWatch(provider)
    watch.opened(1.0)
    provider.taking = False
    assert watch.up_since() is None
    provider.taking = True  # half-open: taking calls again, but none has worked yet
    assert watch.up_since() is None
    watch.opened(20.0)
    assert watch.up_since() == 20.0


def test_a_provider_without_an_admission_gate_is_judged_by_its_connections_alone() -> None:
    watch = PrimaryWatch(MockProvider(MockOptions()))
    watch.opened(3.0)
    assert watch.up_since() == 3.0
