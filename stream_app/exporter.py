"""GET /metrics: the contract's per-queue gauges, read from the tables this worker owns at scrape time.

Reading at scrape time makes two promises true by construction: a queue is exported only by
the worker that owns its partition now (never two after a rebalance), and a mean or ratio over
zero calls has no sample at all (never 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext

import faust
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream_app.domain.figures import Figures
from stream_app.domain.live import queue_now
from stream_app.domain.queues import QueueStage
from stream_app.domain.sla import SlaConfig

# (metric name, help, how to read it from a window's figures)
WINDOW_GAUGES: tuple[tuple[str, str, str], ...] = (
    (
        "callcenter_asa_seconds",
        "Average speed of answer: mean answer speed of answered calls, IVR excluded.",
        "asa_seconds",
    ),
    ("callcenter_awt_seconds", "Average queue wait of answered calls.", "awt_seconds"),
    (
        "callcenter_aht_seconds",
        "Average handle time (answer to end of after-call work).",
        "aht_seconds",
    ),
    (
        "callcenter_service_level_ratio",
        "Answered within the service-level threshold / offered.",
        "service_level",
    ),
    ("callcenter_abandon_ratio", "(Abandoned - short abandoned) / offered.", "abandon_rate"),
    ("callcenter_calls_offered", "Answered + abandoned - short abandoned.", "offered"),
    ("callcenter_calls_answered", "Answered calls.", "answered"),
    ("callcenter_calls_abandoned", "Abandoned calls, short abandons included.", "abandoned"),
    (
        "callcenter_calls_flowed_out",
        "Calls that left the queue unanswered by queue_left.",
        "flowed_out",
    ),
    (
        "callcenter_longest_wait_seconds",
        "Largest answer speed or time to abandon.",
        "longest_wait_seconds",
    ),
)

SLA_GAUGES: tuple[tuple[str, str, str], ...] = (
    (
        "callcenter_sla_target_service_level_ratio",
        "Service-level target of the queue (SLA_CONFIG).",
        "target_service_level",
    ),
    (
        "callcenter_sla_target_asa_seconds",
        "ASA target of the queue (SLA_CONFIG).",
        "target_asa_seconds",
    ),
    (
        "callcenter_sla_target_abandon_ratio",
        "Abandon-rate target of the queue (SLA_CONFIG).",
        "target_abandon_rate",
    ),
    (
        "callcenter_sla_max_oldest_waiting_seconds",
        "Limit on the oldest waiting call (SLA_CONFIG).",
        "max_oldest_waiting_seconds",
    ),
    (
        "callcenter_sla_max_calls_waiting",
        "Limit on calls waiting (SLA_CONFIG).",
        "max_calls_waiting",
    ),
    (
        "callcenter_sla_max_occupancy_ratio",
        "Limit on the agents' occupancy (SLA_CONFIG).",
        "max_occupancy",
    ),
    (
        "callcenter_sla_service_level_threshold_seconds",
        "Answer speed that counts as within service level.",
        "service_level_seconds",
    ),
)


def read(figures: Figures, attribute: str) -> float | None:
    value = getattr(figures, attribute)
    return None if value is None else float(value)


class QueueCollector(Collector):
    def __init__(
        self,
        app: faust.App,
        stage: QueueStage,
        stream_now: Callable[[], int | None],
        sla: SlaConfig,
        topic: str,
        reading: Callable[[int], AbstractContextManager[None]] = lambda _: nullcontext(),
    ) -> None:
        self.app = app
        self.stage = stage
        self.stream_now = stream_now
        self.sla = sla
        self.topic = topic
        self.reading = reading  # reads scoped to one partition's state (BufferedStore.reading)
        self._partition_of: dict[str, int] = {}

    def owns(self, queue: str, partition: int) -> None:
        self._partition_of[queue] = partition

    def disown(self, partition: int) -> None:
        for queue in [q for q, p in self._partition_of.items() if p == partition]:
            del self._partition_of[queue]

    def queues_on(self, partition: int) -> list[str]:
        return [q for q, p in self._partition_of.items() if p == partition]

    def owned_queues(self) -> list[str]:
        actives = {
            tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.topic
        }
        return sorted(q for q, p in self._partition_of.items() if p in actives)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families are built at scrape time from the owned queues

    def collect(self) -> Iterator[Metric]:
        window_families = {
            attr: GaugeMetricFamily(name, doc, labels=["queue", "window"])
            for name, doc, attr in WINDOW_GAUGES
        }
        waiting = GaugeMetricFamily(
            "callcenter_calls_waiting", "Calls in queue now, not yet answered.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "callcenter_oldest_waiting_seconds",
            "Age of the oldest call now waiting.",
            labels=["queue"],
        )
        sla_families = {
            attr: GaugeMetricFamily(name, doc, labels=["queue"]) for name, doc, attr in SLA_GAUGES
        }
        agents = GaugeMetricFamily(
            "callcenter_agents",
            "Agents serving the queue now, per state (queues with agent facts only).",
            labels=["queue", "state"],
        )
        occupancy = GaugeMetricFamily(
            "callcenter_occupancy_ratio",
            "Busy / (busy + available) time of the queue's agents in the window.",
            labels=["queue", "window"],
        )
        expected_wait = GaugeMetricFamily(
            "callcenter_expected_wait_seconds",
            "Estimated wait of a caller joining the queue now.",
            labels=["queue"],
        )
        required = GaugeMetricFamily(
            "callcenter_agents_required",
            "Erlang C: fewest agents reaching the target service level at the current load.",
            labels=["queue"],
        )
        now = self.stream_now()
        if now is not None:
            for queue in self.owned_queues():
                with self.reading(self._partition_of[queue]):
                    state = queue_now(self.stage, self.sla, queue, now)
                for window, figures in state.windows.items():
                    for attr, family in window_families.items():
                        value = read(figures, attr)
                        if value is not None:
                            family.add_metric([queue, window], value)
                waiting.add_metric([queue], state.calls_waiting)
                if state.oldest_waiting_seconds is not None:
                    oldest.add_metric([queue], state.oldest_waiting_seconds)
                for attr, family in sla_families.items():
                    family.add_metric([queue], float(getattr(state.targets, attr)))
                for count_state, count in (state.agents or {}).items():
                    agents.add_metric([queue, count_state], count)
                for window, ratio in state.occupancy.items():
                    if ratio is not None:
                        occupancy.add_metric([queue, window], ratio)
                if (wait := state.expected_wait_seconds) is not None:
                    expected_wait.add_metric([queue], wait)
                if (needed := state.agents_required) is not None:
                    required.add_metric([queue], needed)
        yield from window_families.values()
        yield waiting
        yield oldest
        yield from sla_families.values()
        yield from (agents, occupancy, expected_wait, required)
