"""The worker's own histogram renders as Prometheus expects: cumulative buckets, +Inf, sum."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from asr_worker.metrics import LoopHistogram


def test_loop_histogram_renders_cumulative_buckets_count_and_sum() -> None:
    registry = CollectorRegistry()
    histogram = LoopHistogram("asr_test_seconds", "A test.", (0.01, 0.1, 1.0))
    registry.register(histogram)
    for value in (0.005, 0.01, 0.05, 0.5, 3.0):
        histogram.observe(value)
    text = generate_latest(registry).decode()
    assert 'asr_test_seconds_bucket{le="0.01"} 2.0' in text  # a bound holds values equal to it
    assert 'asr_test_seconds_bucket{le="0.1"} 3.0' in text
    assert 'asr_test_seconds_bucket{le="1.0"} 4.0' in text
    assert 'asr_test_seconds_bucket{le="+Inf"} 5.0' in text
    assert "asr_test_seconds_count 5.0" in text
    assert "asr_test_seconds_sum 3.565" in text
    assert "# TYPE asr_test_seconds histogram" in text
