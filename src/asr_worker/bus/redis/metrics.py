"""The bus's figures: counters each loop keeps of what it did, and their Prometheus export.

Each counter has one writer: intake counts calls taken, claimed, refused, abandoned and bad
announcements; the audio reader counts audio entries and bad ones; the writer counts events
written and dropped and calls finished, handed over and lost; the link counts outages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(slots=True)
class BusCounters:
    events_written: int = 0
    events_dropped: int = 0
    calls_taken: int = 0
    calls_claimed: int = 0
    calls_finished: int = 0
    calls_handed_over: int = 0
    calls_lost: int = 0
    calls_refused: int = 0
    calls_abandoned: int = 0
    audio_entries: int = 0
    bad_entries: int = 0
    bad_calls: int = 0


@dataclass(frozen=True, slots=True)
class BusGauges:
    """How the collector reads the bus's current state."""

    up: Callable[[], bool]
    events_queued: Callable[[], int]
    max_queued_events: int
    calls_owned: Callable[[], int]
    outages: Callable[[], int]


class BusCollector(Collector):
    def __init__(self, counters: BusCounters, gauges: BusGauges) -> None:
        self._counters = counters
        self._gauges = gauges

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        c, g = self._counters, self._gauges
        yield GaugeMetricFamily("asr_bus_up", "1 while the bus's Redis answers.", value=int(g.up()))
        yield GaugeMetricFamily(
            "asr_bus_events_queued",
            f"Events waiting for Redis (at most {g.max_queued_events}).",
            value=g.events_queued(),
        )
        yield GaugeMetricFamily(
            "asr_bus_calls_owned", "Calls this worker owns on the bus.", value=g.calls_owned()
        )
        counters = {
            "asr_bus_events_written": ("Events written to transcript streams.", c.events_written),
            "asr_bus_events_dropped": (
                "Events dropped: the queue was full, or Redis refused them.",
                c.events_dropped,
            ),
            "asr_bus_calls_finished": ("Calls ended and acknowledged by this worker.", c.calls_finished),
            "asr_bus_calls_handed_over": ("Calls handed to another worker at shutdown.", c.calls_handed_over),
            "asr_bus_calls_lost": (
                "Calls another worker claimed while this one still served them.",
                c.calls_lost,
            ),
            "asr_bus_calls_refused": ("Calls taken but handed back (no room, or a clash).", c.calls_refused),
            "asr_bus_calls_abandoned": (
                "Calls given up because more than ASR_MAX_TAKEOVERS workers died holding them.",
                c.calls_abandoned,
            ),
            "asr_bus_audio_entries": ("Audio entries read.", c.audio_entries),
            "asr_bus_bad_entries": ("Audio entries skipped as malformed.", c.bad_entries),
            "asr_bus_bad_calls": ("Call announcements skipped as malformed or duplicate.", c.bad_calls),
            "asr_bus_outages": ("Times Redis became unreachable.", g.outages()),
        }
        for name, (help_text, value) in counters.items():
            yield CounterMetricFamily(name, help_text, value=value)
        taken = CounterMetricFamily(
            "asr_bus_calls_taken", "Calls taken, new or claimed from a dead worker.", labels=["how"]
        )
        taken.add_metric(["new"], c.calls_taken)
        taken.add_metric(["claimed"], c.calls_claimed)
        yield taken
