"""The per-queue collector reads each queue's state on the queue's partition only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from stream_app.domain.model import Contribution
from stream_app.domain.queues import QueueStage, WindowConfig
from stream_app.domain.sla import SlaConfig
from stream_app.exporter import QueueCollector
from tests.unit.dict_store import DictStore

T0 = 1_772_445_600_000  # 2026-03-02T10:00:00Z


class ScopedStore(DictStore):
    """Remembers the partition each read was scoped to."""

    def __init__(self) -> None:
        super().__init__()
        self.scope: int | None = None
        self.read_on: set[int | None] = set()

    def get(self, key: str) -> Any | None:
        self.read_on.add(self.scope)
        return super().get(key)

    @contextlib.contextmanager
    def reading(self, partition: int) -> Iterator[None]:
        self.scope = partition
        try:
            yield
        finally:
            self.scope = None


def test_a_scrape_reads_each_queue_on_its_partition() -> None:
    store = ScopedStore()
    stage = QueueStage(store, WindowConfig(), SlaConfig())
    stage.apply("sales", "c1", Contribution(answered=(T0 + 1000, 2000, 2000)), 1)
    stage.apply("vip", "c2", Contribution(answered=(T0 + 1000, 2000, 2000)), 2)
    app = SimpleNamespace(
        assignor=SimpleNamespace(
            assigned_actives=lambda: {TP("queue-updates", 2), TP("queue-updates", 5)}
        )
    )
    collector = QueueCollector(
        app,  # type: ignore[arg-type]
        stage,
        lambda: T0 + 60_000,
        SlaConfig(),
        "queue-updates",
        reading=store.reading,
    )
    collector.owns("sales", 2)
    collector.owns("vip", 5)
    store.read_on.clear()
    families = {family.name: family for family in collector.collect()}
    assert store.read_on == {2, 5}
    answered = families["callcenter_calls_answered"].samples
    assert {(s.labels["queue"], s.value) for s in answered if s.labels["window"] == "1h"} == {
        ("sales", 1.0),
        ("vip", 1.0),
    }
