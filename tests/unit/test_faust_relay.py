"""Faust's sensor relayed on /metrics: every millisecond histogram in seconds, under a unit name."""

from __future__ import annotations

from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry

from stream_app.metrics import FaustRelay


def test_faust_latencies_are_relayed_in_seconds_under_seconds_names() -> None:
    registry = CollectorRegistry(auto_describe=True)
    faust = FaustMetrics.create(registry, "faust")
    faust.producer_send_latency.observe(12)  # Faust observes milliseconds
    faust.consumer_commit_latency.observe(300)
    families = {family.name: family for family in FaustRelay(registry).collect()}
    histograms = {name for name, family in families.items() if family.type == "histogram"}
    assert histograms == {
        "faust_events_runtime_seconds",
        "faust_producer_send_latency_seconds",
        "faust_producer_error_send_latency_seconds",
        "faust_assign_latency_seconds",
        "faust_rebalance_done_consumer_latency_seconds",
        "faust_rebalance_done_latency_seconds",
        "faust_http_latency_seconds",
        "faust_consumer_commit_latency_seconds",
    }
    send = {
        (s.name, s.labels.get("le")): s.value
        for s in families["faust_producer_send_latency_seconds"].samples
    }
    assert send[("faust_producer_send_latency_seconds_sum", None)] == 0.012
    assert send[("faust_producer_send_latency_seconds_bucket", "0.01")] == 0
    assert send[("faust_producer_send_latency_seconds_bucket", "0.025")] == 1
    commit = families["faust_consumer_commit_latency_seconds"].samples
    assert {s.name: s.value for s in commit}["faust_consumer_commit_latency_seconds_sum"] == 0.3
    # Counters and gauges pass unchanged.
    assert "faust_topic_partition_end_offset" in families
