"""The queues stage's processor without a broker: combined records applied entry by entry,
closing by the previous tick's stream time, re-sending what a partition published when it is
assigned again, and a revocation (stream_app.queues_processor)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import orjson

from stream_app.domain.clock import EventClock
from stream_app.domain.hop import update_record
from stream_app.domain.model import Contribution
from stream_app.domain.queues import QueueStage, WindowConfig
from stream_app.domain.sla import SlaConfig
from stream_app.domain.sweeps import SweepSchedule
from stream_app.metrics import Metrics
from stream_app.queues_processor import QueuesProcessor
from tests.unit.test_calls_processor import Event, Guard, State, World
from tests.unit.test_queues import GRACE, INTERVAL, MIN, T0, answered

WALL = T0 + 30 * 24 * 60 * MIN  # a replay: the wall clock far ahead, never live


class Owners:
    def __init__(self) -> None:
        self.by_partition: dict[int, set[str]] = {}

    def owns(self, queue: str, partition: int) -> None:
        self.by_partition.setdefault(partition, set()).add(queue)

    def queues_on(self, partition: int) -> list[str]:
        return sorted(self.by_partition.get(partition, ()))

    def disown(self, partition: int) -> None:
        self.by_partition.pop(partition, None)


def processor(world: World, owners: Owners | None = None) -> QueuesProcessor:
    windows = WindowConfig(interval_ms=INTERVAL, grace_ms=GRACE)
    return QueuesProcessor(
        QueueStage(world.store, windows, SlaConfig()),
        State(world),
        world,
        Guard(world),
        owners or Owners(),
        Metrics.create([20.0]),
        EventClock(),
        metrics_topic="queue-metrics",
        calls_partitions=1,
        sweeps=SweepSchedule(wall_every_ms=2**62, stream_every_ms=2**62),
        wall=lambda: WALL,
        flush_every=100,
    )


def update(world: World, offset: int, value: Mapping[str, object], partition: int = 0) -> Event:
    return Event(world, "queue-updates", partition, offset, b"", orjson.dumps(value))


def run(proc: QueuesProcessor, *events: tuple[Event, bool]) -> None:
    async def go() -> None:
        for event, tick in events:
            await proc.on_record(event, tick=tick)

    asyncio.run(go())


C1 = Contribution(answered=answered(60, 3, 2))
C2 = Contribution(answered=answered(90, 30, 25))


def published(world: World) -> list[dict[str, object]]:
    return [orjson.loads(v or b"") for t, _, v, _, _ in world.sent if t == "queue-metrics"]


def test_a_combined_record_applies_every_call_and_a_tick_closes_by_the_previous_ticks_time() -> (
    None
):
    world = World()
    proc = processor(world)
    records = update_record("sales", [("c1", C1), ("c2", C2)], 0, T0 + 100_000, None, False)
    watermark = {"sp": 0, "st": T0 + INTERVAL + GRACE + 1, "sa": None, "b": False}
    tick = Event(world, "queue-ticks", 0, 0)
    run(proc, (update(world, 0, records), False), (update(world, 1, watermark), False))
    figures = proc.queues.figures("sales", "i", T0)
    assert (figures.answered, figures.answered_within_threshold) == (2, 1)
    assert proc.metrics.answer_speed.labels(queue="sales")._sum.get() == 33.0
    run(proc, (tick, True))
    assert published(world) == []  # the first tick only settles its stream time
    run(proc, (tick, True))
    [record] = published(world)
    assert record["queue"] == "sales" and record["answered"] == 2 and record["revision"] == 0
    assert proc.stream_time_s() == (T0 + INTERVAL + GRACE + 1) / 1000


def test_a_record_seen_again_after_a_crash_changes_nothing() -> None:
    world = World()
    proc = processor(world)
    value = update_record("sales", [("c1", C1), ("c2", C2)], 0, T0 + 100_000, None, False)
    run(proc, (update(world, 5, value), False), (update(world, 5, value), False))
    assert proc.queues.figures("sales", "i", T0).answered == 2
    minute = proc.queues.figures("sales", "m", T0 + MIN)
    assert (minute.answered, minute.answer_ms_sum, minute.longest_wait_ms) == (2, 33_000, 30_000)


def test_an_assigned_partition_re_sends_what_it_published_and_learns_its_queues() -> None:
    world = World()
    owners = Owners()
    first = processor(world, owners)
    value = update_record("sales", [("c1", C1)], 0, T0 + INTERVAL + GRACE + 1, None, False)
    tick = Event(world, "queue-ticks", 0, 0)
    run(first, (update(world, 0, value), False), (tick, True), (tick, True))
    assert len(published(world)) == 1
    world.sent.clear()
    owners.disown(0)
    again = processor(world, owners)  # a restart: the same store, a new processor
    run(again, (tick, True))
    assert len(published(world)) == 1  # the published interval, re-sent as it went out
    assert owners.queues_on(0) == ["sales"]


def test_a_revoked_partition_is_no_longer_exported_nor_acked() -> None:
    world = World()
    owners = Owners()
    proc = processor(world, owners)
    value = update_record("sales", [("c1", C1)], 0, T0 + 100_000, None, False)
    run(proc, (update(world, 0, value), False))
    assert proc.metrics.answer_speed.labels(queue="sales")._sum.get() == 3.0
    proc.revoked(0)
    assert owners.queues_on(0) == [] and proc.source_times == {}
    samples = {
        s.labels.get("queue") for m in proc.metrics.answer_speed.collect() for s in m.samples
    }
    assert "sales" not in samples
    assert not any(step.startswith("ack") for step in world.log)
    assert proc.checkpoint.held.get(0) is None


def test_an_agents_partition_in_a_replay_holds_closing_until_its_facts_are_in() -> None:
    """The interval closes only once the agents partition says its projections are sent up
    to past the interval's end and grace: not first with the calls' figures alone."""
    world = World()
    proc = dataclasses.replace(processor(world), agents_partitions=1)
    late = T0 + INTERVAL + GRACE + 1
    value = update_record("sales", [("c1", C1)], 0, late, None, True)
    tick = Event(world, "queue-ticks", 0, 0)
    gate = {"ap": 0, "st": T0 + 100_000, "b": True}
    run(proc, (update(world, 0, value), False), (tick, True), (tick, True))
    assert published(world) == []  # the agents partition not heard yet
    run(proc, (update(world, 1, gate), False), (tick, True))
    assert published(world) == []  # its facts are in up to 100 s only
    run(proc, (update(world, 2, {**gate, "st": late}), False), (tick, True))
    assert [r["answered"] for r in published(world)] == [1]
    assert proc.stream_time_s() == late / 1000  # the gate never moves the low watermark


def test_a_record_whose_partition_moved_while_it_was_processed_leaves_nothing_behind() -> None:
    """The group rebalanced while the record waited (its partition revoked, then assigned here
    again and its table being recovered): what it wrote is forgotten with the partition's
    buffered state, not flushed, and the record is not acked (it comes again)."""
    world = World()
    proc = processor(world)

    class MovingGuard(Guard):
        async def process(self, message: object, apply: Any) -> bool:
            proc.revoked(0)
            proc.assigned(0)
            return await super().process(message, apply)

    proc.guard = MovingGuard(world)
    value = update_record("sales", [("c1", C1)], 0, T0 + 100_000, None, False)
    run(proc, (update(world, 3, value), False))
    assert world.log == ["drop state 0"] * 3  # revoked, assigned, and after the record
    assert proc.checkpoint.held.get(0) is None and 0 not in proc.seen
