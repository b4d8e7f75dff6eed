"""SIPREC and RTP metrics: SIP messages and refusals counted as they happen; RTP packet
outcomes summed at scrape time from the live calls' receivers plus the ended calls' totals
(a packet is never a metric update of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import TYPE_CHECKING

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...metrics import WorkerMetrics
from .media import CallMedia, PacketCounts
from .rtp import RtpStats

if TYPE_CHECKING:
    from .server import SiprecServer

PLATFORM = "siprec"


class SiprecMetrics(Collector):
    def __init__(self, server: SiprecServer, metrics: WorkerMetrics) -> None:
        self._server = server
        self._worker = metrics
        self._ended = RtpStats()
        self._dropped = PacketCounts()
        self._accounted: dict[int, tuple[int, float]] = {}  # id(media) -> (filled samples, pending s)
        reg = metrics.registry
        self.messages = Counter(
            "asr_siprec_messages",
            "SIP messages received by the recording server, by method (`response`, `invalid`).",
            ["method"],
            registry=reg,
        )
        self.refused = Counter(
            "asr_siprec_invites_refused",
            "INVITEs the recording server refused, by reason.",
            ["reason"],
            registry=reg,
        )
        reg.register(self)

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        server = self._server
        yield GaugeMetricFamily(
            "asr_siprec_calls_active", "SIPREC calls being recorded.", value=len(server.calls)
        )
        yield GaugeMetricFamily(
            "asr_rtp_external_calls_active", "externalMedia RTP calls.", value=len(server.external)
        )
        yield GaugeMetricFamily(
            "asr_rtp_ports_in_use", "RTP ports bound, of the pool.", value=server.ports.in_use
        )
        yield GaugeMetricFamily(
            "asr_rtp_ports_capacity", "RTP ports in the pool.", value=server.ports.capacity
        )
        live = [c.media for c in server.calls.values() if c.media is not None] + list(
            server.external.values()
        )
        stats = RtpStats()
        _add(stats, self._ended)
        dropped = PacketCounts(**vars(self._dropped))
        held = 0
        for media in live:
            _add(stats, media.stats())
            for name in vars(dropped):
                setattr(dropped, name, getattr(dropped, name) + getattr(media.counts, name))
            held += sum(leg.receiver.held_packets for leg in media.legs.values())
        packets = CounterMetricFamily(
            "asr_rtp_packets", "RTP packets received on recorded streams, by outcome.", labels=["outcome"]
        )
        for name in (
            "packets",
            "duplicates",
            "late",
            "lost",
            "reordered",
            "unknown_payload",
            "comfort_noise",
            "stale_ssrc",
        ):
            packets.add_metric(["received" if name == "packets" else name], getattr(stats, name))
        for name, value in vars(dropped).items():
            packets.add_metric([name], value)
        yield packets
        yield CounterMetricFamily(
            "asr_rtp_silence_filled_seconds",
            "Silence put in place of lost packets and suppressed silence, seconds.",
            value=stats.filled_samples / 8000,
        )
        yield CounterMetricFamily(
            "asr_rtp_ssrc_changes", "RTP streams whose source changed.", value=stats.ssrc_changes
        )
        yield CounterMetricFamily(
            "asr_rtp_dtmf_digits", "Key presses read from RTP (RFC 4733).", value=stats.digits
        )
        yield GaugeMetricFamily(
            "asr_rtp_held_packets",
            "Packets waiting for a missing one before them (bounded per stream).",
            value=held,
        )

    def account(self, media: CallMedia) -> None:
        """Move a call's interleaver figures into the telephony metrics (platform `siprec`)."""
        interleaver = media.interleaver
        if interleaver is None:
            return
        filled_before, pending_before = self._accounted.get(id(media), (0, 0.0))
        filled = interleaver.stats.silence_filled_samples
        pending_s = interleaver.pending_ms / 1000
        if filled > filled_before:
            self._worker.telephony_silence.labels(PLATFORM).inc(
                (filled - filled_before) / media.fmt.sample_rate
            )
        if pending_s != pending_before:
            self._worker.telephony_pending.labels(PLATFORM).inc(pending_s - pending_before)
        self._accounted[id(media)] = (filled, pending_s)

    def ended(self, media: CallMedia) -> None:
        """A call's media ended: its totals stay in the counters."""
        _add(self._ended, media.stats())
        for name in vars(self._dropped):
            setattr(self._dropped, name, getattr(self._dropped, name) + getattr(media.counts, name))
        _, pending = self._accounted.pop(id(media), (0, 0.0))
        if pending:
            self._worker.telephony_pending.labels(PLATFORM).dec(pending)


def _add(total: RtpStats, stats: RtpStats) -> None:
    for item in fields(RtpStats):
        setattr(total, item.name, getattr(total, item.name) + getattr(stats, item.name))
