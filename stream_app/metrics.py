"""The contract's Prometheus metrics (§4) on a dedicated registry, one set per worker process."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from stream_app.domain.events import REJECT_REASONS
from stream_app.domain.model import EVENT_TYPES

# Standard answer-speed bounds; every queue's service-level threshold is added to them.
ANSWER_SPEED_BUCKETS: tuple[float, ...] = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)


@dataclass
class Metrics:
    registry: CollectorRegistry
    events: Tally  # counted on every event
    rejected: Counter
    duplicates: Counter
    late: Counter
    evicted: Counter
    answer_speed: Histogram
    stream_time: Gauge

    @classmethod
    def create(cls, thresholds: list[float]) -> Metrics:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series only add noise to a wallboard's scrape
        registry = CollectorRegistry(auto_describe=True)
        buckets = sorted({*ANSWER_SPEED_BUCKETS, *thresholds})
        metrics = cls(
            registry=registry,
            events=Tally(
                "callcenter_events",
                "Valid call events processed, by type.",
                "type",
                EVENT_TYPES,
                registry,
            ),
            rejected=Counter(
                "callcenter_events_rejected",
                "Input records rejected to the dead-letter topic, by reason.",
                ["reason"],
                registry=registry,
            ),
            duplicates=Counter(
                "callcenter_events_duplicate",
                "Events ignored because their event_id was seen.",
                registry=registry,
            ),
            late=Counter(
                "callcenter_events_late",
                "Events older than the retention of the window state (sent to the dead-letter topic).",
                registry=registry,
            ),
            evicted=Counter(
                "callcenter_calls_evicted",
                "Calls that went silent past CALL_TTL_HOURS and left the call table unfinished.",
                registry=registry,
            ),
            answer_speed=Histogram(
                "callcenter_answer_speed_seconds",
                "Answer speed of answered calls (IVR excluded), by queue.",
                ["queue"],
                buckets=buckets,
                registry=registry,
            ),
            stream_time=Gauge(
                "callcenter_stream_time_seconds",
                "Stream time of this worker: the newest event time seen (moved on by the wall clock on a live feed).",
                registry=registry,
            ),
        )
        # Every fixed label value exists from the start: a rate over a reason never seen is 0, not absent.
        for reason in sorted(REJECT_REASONS):
            metrics.rejected.labels(reason=reason)
        return metrics


class Tally(Collector):
    """A counter by one label kept in a plain dict: the stages count every event, and a
    prometheus_client counter takes a lock per increment (counts come from one thread, the
    event loop's, and so do scrapes). Every value given exists from the start, at 0."""

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        values: Iterable[str],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.counts: dict[str, int] = dict.fromkeys(values, 0)
        registry.register(self)

    def inc(self, value: str) -> None:
        self.counts[value] = self.counts.get(value, 0) + 1

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=[self.label])

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in list(self.counts.items()):
            family.add_metric([value], float(count))
        yield family


class FaustRelay(Collector):
    """Faust's sensor families, its millisecond histograms converted to seconds (base units).

    Faust observes every latency in milliseconds (its `Monitor.ms_since`), under names that end
    in `_ms` (the events' runtime) or carry no unit at all (`producer_send_latency`,
    `consumer_commit_latency`, …). Both are relayed as `<name>_seconds` (`_ms` dropped), bounds
    and sums divided by 1000, so a dashboard reads them like every other duration.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if not family.name.endswith(("_ms", "_latency")):
                yield family
                continue
            name = family.name.removesuffix("_ms") + "_seconds"
            doc = family.documentation.removesuffix(" in ms")
            converted = Metric(name, doc + " (seconds)", family.type)
            for sample in family.samples:
                labels = dict(sample.labels)
                value = sample.value
                if "le" in labels and labels["le"] != "+Inf":
                    labels["le"] = repr(float(labels["le"]) / 1000)
                if sample.name.endswith("_sum"):
                    value = value / 1000
                suffix = sample.name[len(family.name) :]
                converted.add_sample(
                    name + suffix, labels, value, sample.timestamp, sample.exemplar
                )
            yield converted


M = TypeVar("M", bound=MetricWrapperBase)


class LabelsOnce(Generic[M]):
    """A labelled metric whose children are looked up once per label values.

    Faust's sensor calls `labels(...)` on several metrics for every record in and out, and the
    calls stage counts every event by type; the lookup (label values turned to strings, a lock)
    costs more than the count itself. Removing labels (Faust does on a rebalance) forgets what
    was looked up."""

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._children: dict[Any, M] = {}

    def labels(self, *values: Any, **named: Any) -> M:
        key = values or tuple(named.items())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._metric.labels(*values, **named)
        return child

    def remove(self, *values: Any) -> None:
        self._children.clear()
        self._metric.remove(*values)

    def clear(self) -> None:
        self._children.clear()
        self._metric.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric, name)


def look_up_labels_once(metrics: Any) -> Any:
    """Faust's `FaustMetrics` (a named tuple) with every labelled metric in `LabelsOnce`."""
    return metrics._replace(
        **{
            name: LabelsOnce(metric)
            for name, metric in metrics._asdict().items()
            if isinstance(metric, MetricWrapperBase) and metric._labelnames
        }
    )


def stream_label_once(label: Callable[[Any], str]) -> Callable[[Any], str]:
    """Faust's sensor names a stream's label afresh for every event (a regular expression and
    three string operations); a stream's label never changes."""
    return functools.cache(label)


class TalliedMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor, counting each record and event in plain integers and adding
    the counts to its metrics when they are collected (a scrape), not one by one.

    Faust calls the sensor twice per record in and once per record out: the Prometheus
    sensor's counter increments and label lookups, with its base monitor's bookkeeping, cost
    about a twentieth of the month's CPU (bench/RESULTS.md). The same families are exported;
    only the in-flight gauges (`active_messages`, `total_active_events`) are taken as of the
    scrape, and Faust's events-runtime histogram stays empty, as it did (no event of these
    streams is acked by the stream)."""

    def __init__(self, metrics: FaustMetrics, **kwargs: Any) -> None:
        super().__init__(metrics, **kwargs)
        self._received: dict[TP, list[int]] = {}  # per partition: [records, last offset]
        self._events: dict[Any, int] = {}  # per stream
        self._acked = 0

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        seen = self._received.get(tp)
        if seen is None:
            self._received[tp] = [1, offset]
        else:
            seen[0] += 1
            seen[1] = offset

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> None:
        self._events[stream] = self._events.get(stream, 0) + 1

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        pass

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        self._acked += 1

    def publish(self) -> None:
        """Add what was counted since the last call to the metrics (and the base monitor)."""
        received, self._received = self._received, {}
        events, self._events = self._events, {}
        acked, self._acked = self._acked, 0
        metrics = self._metrics
        total = 0
        for tp, (count, offset) in received.items():
            total += count
            metrics.messages_received_per_topics.labels(topic=tp.topic).inc(count)
            metrics.messages_received_per_topics_partition.labels(
                topic=tp.topic, partition=tp.partition
            ).set(offset)
            self.messages_received_by_topic[tp.topic] += count
            self.tp_read_offsets[tp] = offset
        metrics.messages_received.inc(total)
        self.messages_received_total += total
        self.messages_active += total - acked
        metrics.active_messages.set(self.messages_active)
        for stream, count in events.items():
            label = f"stream.{self._stream_label(stream)}.events"
            metrics.total_events_per_stream.labels(stream=label).inc(count)
            metrics.total_events.inc(count)
            self.events_total += count


class PublishingRegistry(CollectorRegistry):
    """A registry that runs `before_collect` first (a `TalliedMonitor`'s `publish`), so every
    reader of it (/metrics, Faust's /metrics/faust) sees the counts up to now."""

    def __init__(self, *, auto_describe: bool = True) -> None:
        super().__init__(auto_describe=auto_describe)
        self.before_collect: Callable[[], None] = lambda: None

    def collect(self) -> Iterator[Metric]:
        self.before_collect()
        yield from super().collect()
