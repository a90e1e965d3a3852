"""Faust's sensor relayed on /metrics: every millisecond histogram in seconds, under a unit name."""

from __future__ import annotations

from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry

from stream_app.metrics import FaustRelay, LabelsOnce, look_up_labels_once, stream_label_once


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


def test_labels_looked_up_once_count_the_same_and_forget_removed_series() -> None:
    registry = CollectorRegistry(auto_describe=True)
    faust = look_up_labels_once(FaustMetrics.create(registry, "faust"))
    received = faust.messages_received_per_topics_partition
    assert isinstance(received, LabelsOnce)
    for _ in range(3):
        received.labels(topic="t", partition=1).inc()
    received.labels(topic="t", partition=2).inc()
    assert (
        registry.get_sample_value(
            "faust_messages_received_per_topics_partition", {"topic": "t", "partition": "1"}
        )
        == 3
    )
    # Faust clears a partition's series on a rebalance: counting again starts a new one.
    faust.clear_topic_related_metrics()
    received.labels(topic="t", partition=1).inc()
    assert (
        registry.get_sample_value(
            "faust_messages_received_per_topics_partition", {"topic": "t", "partition": "1"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "faust_messages_received_per_topics_partition", {"topic": "t", "partition": "2"}
        )
        is None
    )
    assert not isinstance(faust.messages_received, LabelsOnce)  # no labels: left as it is


def test_a_streams_label_is_named_once_and_stays_its_own() -> None:
    named: list[str] = []

    def label(stream: str) -> str:
        named.append(stream)
        return stream.upper()

    once = stream_label_once(label)
    assert [once("calls"), once("queues"), once("calls"), once("calls")] == [
        "CALLS",
        "QUEUES",
        "CALLS",
        "CALLS",
    ]
    assert named == ["calls", "queues"]
