"""The series a streaming provider keeps about its connections (handshakes, closes, protocol
garbage, server errors, stalls, calls failed fast, the circuit breaker), named after it:
`asr_deepgram_handshakes_total`, `asr_openai_handshakes_total`, ... Each provider's are in a
registry of their own that the worker's registry collects (`register_metrics`), so two workers
in one process do not clash."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ConnectionMetrics:
    def __init__(
        self,
        prefix: str,
        peer: str,
        breaker_state: Callable[[], float],
        *,
        error_label: str,
        stall_help: str,
    ) -> None:
        """`prefix` names the series (`asr_{prefix}_...`), `peer` the server in their help
        text; `error_label` is the label of the server's error messages (their variant or
        type); `stall_help` says what a stall is for this protocol."""
        reg = self.registry = CollectorRegistry(auto_describe=True)
        self.handshakes = Counter(
            f"asr_{prefix}_handshakes",
            f"Handshakes with {peer} by outcome: the HTTP status, or network/timeout.",
            ["status"],
            registry=reg,
        )
        self.handshake_seconds = Histogram(
            f"asr_{prefix}_handshake_seconds",
            f"Time to open a connection to {peer} (successful handshakes).",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=reg,
        )
        self.closes = Counter(
            f"asr_{prefix}_closes",
            f"Connections to {peer} that ended, by close code (1006: no close frame).",
            ["code"],
            registry=reg,
        )
        self.garbage = Counter(
            f"asr_{prefix}_garbage_messages",
            f"Messages from {peer} that were not valid protocol and were skipped, by kind.",
            ["kind"],
            registry=reg,
        )
        self.server_errors = Counter(
            f"asr_{prefix}_server_errors",
            f"Error messages {peer} sent, by {error_label}.",
            [error_label],
            registry=reg,
        )
        self.stalls = Counter(f"asr_{prefix}_stalls", stall_help, registry=reg)
        self.failed_fast = Counter(
            f"asr_{prefix}_calls_failed_fast",
            "New calls failed at once because the circuit breaker was open.",
            registry=reg,
        )
        circuit = Gauge(
            f"asr_{prefix}_circuit_state",
            "The circuit breaker shared by all calls: 0 closed, 1 open, 2 half-open.",
            registry=reg,
        )
        circuit.set_function(breaker_state)
