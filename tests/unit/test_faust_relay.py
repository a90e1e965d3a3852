"""Faust's sensor relayed on /metrics: every millisecond histogram in seconds, under a unit name."""

from __future__ import annotations

from typing import Any, cast

from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CollectorRegistry

from stream_app.metrics import (
    FaustRelay,
    LabelsOnce,
    PublishingRegistry,
    TalliedMonitor,
    look_up_labels_once,
    stream_label_once,
)


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


class FakeTask:
    pass


class FakeStream:
    shortlabel = "Stream: Topic: t"
    task_owner = FakeTask()


class FakeMessage:
    time_in: float | None = None


def families_of(registry: CollectorRegistry, names: set[str]) -> dict[str, set[Any]]:
    found: dict[str, set[Any]] = {}
    for family in registry.collect():
        if family.name not in names:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                labels = tuple(sorted(sample.labels.items()))
                found.setdefault(family.name, set()).add((sample.name, labels, sample.value))
    return found


def test_the_tallied_sensor_exports_what_faust_s_own_would() -> None:
    """The same calls on Faust's Prometheus sensor and on the tallied one: the same figures,
    the tallied one's as of each collection, counted once."""
    counted = {
        "faust_messages_received",
        "faust_active_messages",
        "faust_messages_received_per_topic",
        "faust_messages_received_per_topics_partition",
        "faust_total_events",
        "faust_total_events_per_stream",
    }
    faust_registry = CollectorRegistry(auto_describe=True)
    faust = PrometheusMonitor(FaustMetrics.create(faust_registry, "faust"))
    registry = PublishingRegistry(auto_describe=True)
    tallied = TalliedMonitor(FaustMetrics.create(registry, "faust"))
    registry.before_collect = tallied.publish
    stream = FakeStream()

    def traffic(monitor: PrometheusMonitor, offsets: list[tuple[int, int]], acked: int) -> None:
        for partition, offset in offsets:
            message: Any = FakeMessage()
            monitor.on_message_in(TP("t", partition), offset, message)
            state = monitor.on_stream_event_in(
                TP("t", partition), offset, cast(Any, stream), cast(Any, None)
            )
            monitor.on_stream_event_out(
                TP("t", partition), offset, cast(Any, stream), cast(Any, None), state
            )
        for _ in range(acked):
            monitor.on_message_out(TP("t", 0), 0, FakeMessage())  # type: ignore[arg-type]

    for offsets, acked in (([(0, 5), (0, 6), (1, 9)], 1), ([], 0), ([(1, 10), (2, 0)], 3)):
        traffic(faust, offsets, acked)
        traffic(tallied, offsets, acked)
        expected = families_of(faust_registry, counted)
        assert families_of(registry, counted) == expected
        assert set(expected) == counted
    assert tallied.messages_received_total == 5 and tallied.events_total == 5
