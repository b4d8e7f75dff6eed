"""Prometheus metrics, one registry per worker (so tests can run several workers in a process).

Counters that change on every audio frame are not bumped per frame: sessions count them in
plain integers (`SessionStats`) and the collector sums live sessions plus the totals of ended
ones at scrape time. Histograms are observed where the thing happens (a send, a result).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# `_created` series double the output and no dashboard uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 5.0)


@dataclass(slots=True)
class LiveTotals:
    """What the collector reads at scrape time; the session manager fills it in."""

    sessions_active: int = 0
    sources_active: int = 0
    connections_active: int = 0
    buffered_audio_s: float = 0.0
    unsent_audio_s: float = 0.0
    session_timers_pending: int = 0
    calls_by_provider: dict[str, int] = field(default_factory=dict)  # live calls, by current provider
    connections_by_provider: dict[str, int] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)


# name -> help, for the counters summed from SessionStats.
SESSION_COUNTERS: dict[str, str] = {
    "asr_audio_in_seconds": "Audio received from sources, seconds.",
    "asr_audio_out_seconds": "Audio sent to the provider, seconds, replays included.",
    "asr_audio_replayed_seconds": "Audio re-sent to a new provider connection after a drop, seconds.",
    "asr_audio_dropped_seconds": "Audio dropped because the retained buffer was full, seconds.",
    "asr_audio_frames_in": "Audio messages received from sources.",
    "asr_audio_frames_rejected": "Audio messages refused (not whole samples, after end).",
    "asr_audio_frames_rate_limited": (
        "Audio messages dropped because a call sent more than ASR_MAX_FRAMES_PER_S."
    ),
    "asr_provider_connections_created": "Provider connections opened.",
    "asr_provider_connections_reused": (
        "Audio messages that found their call's provider connection already open or opening."
    ),
    "asr_provider_connections_reconnected": "Provider connections opened to replace a dropped one.",
    "asr_provider_keepalives": "Keep-alive messages sent to the provider.",
    "asr_transcripts_interim": "Interim results received.",
    "asr_transcripts_final": "Final results received.",
    "asr_words_deduplicated": "Words dropped because a replayed stream repeated already-final words.",
    "asr_audio_paused_seconds": "Audio received while its call was paused, seconds: never sent on.",
    "asr_redactions": "Card numbers, expiry dates, security codes, SSNs and numbers redacted from finals.",
}


class WorkerMetrics:
    def __init__(self, live: Callable[[], LiveTotals], provider: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.provider = provider
        reg = self.registry
        # What every Prometheus client exposes by default (process_cpu_seconds_total,
        # process_resident_memory_bytes, python_gc_*, python_info): dashboards expect them.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            reg.register(collector)
        self.sessions_started = Counter("asr_sessions_started", "Sessions started.", registry=reg)
        self.sessions_ended = Counter(
            "asr_sessions_ended", "Sessions ended, by reason.", ["reason"], registry=reg
        )
        self.sessions_refused = Counter(
            "asr_sessions_refused", "Sessions or sources refused, by reason.", ["reason"], registry=reg
        )
        self.call_controls = Counter(
            "asr_call_controls",
            "Pause and resume requests to /v1/calls/{id}/pause|resume, by action and whether they "
            "changed the call.",
            ["action", "changed"],
            registry=reg,
        )
        self.connections_failed = Counter(
            "asr_provider_connections_failed",
            "Provider connections that failed to open or dropped, by reason.",
            ["provider", "reason"],
            registry=reg,
        )
        self.build_info = Gauge(
            "asr_build_info",
            "1, labelled with the version and how many modules run compiled (mypyc; 0: interpreted).",
            ["version", "compiled_modules"],
            registry=reg,
        )
        self.failovers = Counter(
            "asr_failovers",
            "Calls moved from their provider to the fallback provider (and back, reason "
            "primary_recovered), by from, to and reason.",
            ["from", "to", "reason"],
            registry=reg,
        )
        self.errors = Counter("asr_errors", "Error events emitted, by code.", ["code"], registry=reg)
        # Observed on every send (thousands a second): the event loop's own histograms.
        self.forward_wait = LoopHistogram(
            "asr_forward_wait_seconds",
            "How long audio waited in the worker before it was sent to the provider.",
            _LATENCY_BUCKETS,
        )
        self.send_gap = LoopHistogram(
            "asr_send_gap_seconds",
            "Time between consecutive audio sends on one provider connection.",
            _LATENCY_BUCKETS,
        )
        reg.register(self.forward_wait)
        reg.register(self.send_gap)
        self.transcript_latency = Histogram(
            "asr_transcript_latency_seconds",
            "From the arrival of the audio a result ends at to the result's event.",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        # Its two children, looked up once: `labels` costs a lock and a dict per call.
        self.final_latency = self.transcript_latency.labels("final")
        self.interim_latency = self.transcript_latency.labels("interim")
        self.events_published = Counter("asr_events_published", "Events published.", registry=reg)
        # Telephony media streams and event streams (transports/telephony.py, transports/sse.py).
        self.telephony_messages = Counter(
            "asr_telephony_messages",
            "Telephony media-stream messages received, by platform and event (`invalid` if unparsable).",
            ["platform", "event"],
            registry=reg,
        )
        self.telephony_silence = Counter(
            "asr_telephony_silence_filled_seconds",
            "Silence inserted to keep two telephony tracks aligned (gaps, a lagging track), seconds.",
            ["platform"],
            registry=reg,
        )
        self.telephony_pending = Gauge(
            "asr_telephony_interleave_pending_seconds",
            "Audio of a leading track waiting for the other track, summed over calls, seconds.",
            ["platform"],
            registry=reg,
        )
        self.telephony_reordered = Counter(
            "asr_telephony_frames_reordered",
            "Media messages that came out of order (platforms that reorder by chunk), by what became "
            "of them: `held` (put back in place), `late` (after their turn: passed on at once), "
            "`skipped` (never came), `duplicate` (dropped).",
            ["platform", "outcome"],
            registry=reg,
        )
        self.realtime_events = Counter(
            "asr_realtime_client_events",
            "OpenAI Realtime client events received on /v1/realtime, by type (`invalid` if refused).",
            ["type"],
            registry=reg,
        )
        self.realtime_outbox = Gauge(
            "asr_realtime_outbox_events",
            "Server events waiting to be sent on /v1/realtime sockets, summed over sockets.",
            registry=reg,
        )
        # Genesys AudioHook (transports/audiohook.py).
        self.audiohook_messages = Counter(
            "asr_audiohook_messages",
            "AudioHook text messages received, by type (`invalid` if unusable).",
            ["type"],
            registry=reg,
        )
        self.audiohook_refused = Counter(
            "asr_audiohook_refused",
            "AudioHook connections refused or disconnected by the worker, by reason.",
            ["reason"],
            registry=reg,
        )
        self.audiohook_nonces = Gauge(
            "asr_audiohook_nonces",
            "Signature nonces remembered to refuse replays (bounded).",
            registry=reg,
        )
        self.audiohook_rtt = Histogram(
            "asr_audiohook_rtt_seconds",
            "Round trips AudioHook clients measured with ping/pong and reported in their next ping.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=reg,
        )
        self.audiohook_paused_audio = Counter(
            "asr_audiohook_paused_audio_seconds",
            "AudioHook audio that arrived while its stream was paused, not sent on, seconds.",
            registry=reg,
        )
        self.sse_streams = Gauge(
            "asr_sse_streams_active", "Open Server-Sent Events streams.", ["path"], registry=reg
        )
        reg.register(_LiveCollector(live, provider))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LoopHistogram(Collector):
    """A histogram observed only from the event loop's thread, so it takes no lock: a bisect
    and two additions per observation, where prometheus_client's takes a lock each time, and
    the worker observes one for every send (thousands a second)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = tuple(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(repr, self._bounds), "+Inf"), self._counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        yield HistogramMetricFamily(self._name, self._documentation, buckets=buckets, sum_value=self._sum)


class _LiveCollector(Collector):
    def __init__(self, live: Callable[[], LiveTotals], provider: str) -> None:
        self._live = live
        self._provider = provider

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        live = self._live()
        yield GaugeMetricFamily(
            "asr_sessions_active", "Calls with a live session.", value=live.sessions_active
        )
        yield GaugeMetricFamily(
            "asr_sources_active", "Audio sources attached to sessions.", value=live.sources_active
        )
        conns = GaugeMetricFamily(
            "asr_provider_connections_active", "Open provider connections.", labels=["provider"]
        )
        by_provider = {self._provider: 0, **live.connections_by_provider}
        for name, count in sorted(by_provider.items()):
            conns.add_metric([name], count)
        yield conns
        calls = GaugeMetricFamily(
            "asr_provider_calls_active",
            "Live calls by the provider that carries them (the fallback's after a failover).",
            labels=["provider"],
        )
        for name, count in sorted(live.calls_by_provider.items()):
            calls.add_metric([name], count)
        yield calls
        yield GaugeMetricFamily(
            "asr_audio_buffered_seconds",
            "Audio held by sessions (unsent, or sent but not yet covered by a final), seconds.",
            value=live.buffered_audio_s,
        )
        yield GaugeMetricFamily(
            "asr_audio_unsent_seconds",
            "Audio received but not yet sent to a provider, seconds.",
            value=live.unsent_audio_s,
        )
        yield GaugeMetricFamily(
            "asr_session_timers_pending",
            "Sleeping sessions waiting on the shared timer wheel for their next deadline.",
            value=live.session_timers_pending,
        )
        for name, help_text in SESSION_COUNTERS.items():
            if name.startswith("asr_provider_"):
                family = CounterMetricFamily(name, help_text, labels=["provider"])
                family.add_metric([self._provider], live.counters.get(name, 0.0))
            else:
                family = CounterMetricFamily(name, help_text, value=live.counters.get(name, 0.0))
            yield family
