"""The input guard's watch over a partition, without a broker: records the broker holds but
the consumer stopped delivering are fetched again, neither too early nor over and over."""

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from stream_app.input_guard import QUEUED_STALL_AFTER_S, STALL_AFTER_S, InputGuard

TOPIC = "call-events"


class FakeConsumer:
    def __init__(self, highwater: int | None) -> None:
        self.highwaters = {0: highwater}
        self.seeks: list[dict[TP, int]] = []
        self._read_offset: dict[TP, int] = {}  # what Faust's fetch loop handed to the streams

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp.partition]

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.seeks.append(dict(partitions))


class FakeStore:
    def __init__(self, position: int | None) -> None:
        self.position = position

    def get(self, key: str) -> Any:
        return self.position


def guard_at(
    highwater: int | None, stored: int | None
) -> tuple[InputGuard, FakeConsumer, list[float]]:
    now = [100.0]
    consumer = FakeConsumer(highwater)
    app = SimpleNamespace(consumer=consumer)
    guard = InputGuard(app, FakeStore(stored), TOPIC, probe=None, clock=lambda: now[0])  # type: ignore[arg-type]
    guard.forget(0)  # assigned now
    asyncio.run(guard.watch(0))  # and its first tick
    return guard, consumer, now


def message(offset: int) -> Any:
    return SimpleNamespace(partition=0, offset=offset)


def test_records_on_the_broker_that_never_came_are_fetched_again_from_the_next_to_apply() -> None:
    guard, consumer, now = guard_at(highwater=18, stored=None)
    asyncio.run(guard.watch(0))
    assert consumer.seeks == []  # a fresh assignment gets its time
    now[0] += STALL_AFTER_S
    asyncio.run(guard.watch(0))
    assert consumer.seeks == [{TP(TOPIC, 0): 0}]


def test_a_partition_stored_further_is_fetched_again_from_its_stored_position() -> None:
    guard, consumer, now = guard_at(highwater=18, stored=7)
    now[0] += STALL_AFTER_S
    asyncio.run(guard.watch(0))
    assert consumer.seeks == [{TP(TOPIC, 0): 7}]


def test_a_partition_whose_records_keep_coming_is_left_alone() -> None:
    guard, consumer, now = guard_at(highwater=18, stored=None)
    for offset in range(3):
        now[0] += STALL_AFTER_S - 1
        asyncio.run(guard.admit(message(offset)))
        guard.positions[0].applied(offset)
        asyncio.run(guard.watch(0))
    assert consumer.seeks == []


def test_a_partition_read_to_its_end_or_never_fetched_is_left_alone() -> None:
    for highwater, stored in ((7, 7), (None, None), (0, None)):
        guard, consumer, now = guard_at(highwater=highwater, stored=stored)
        now[0] += 10 * STALL_AFTER_S
        asyncio.run(guard.watch(0))
        assert consumer.seeks == [], (highwater, stored)


def test_a_stall_is_sought_again_only_after_the_stall_time() -> None:
    guard, consumer, now = guard_at(highwater=18, stored=None)
    now[0] += STALL_AFTER_S
    asyncio.run(guard.watch(0))
    now[0] += STALL_AFTER_S - 1
    asyncio.run(guard.watch(0))
    assert len(consumer.seeks) == 1
    now[0] += 1
    asyncio.run(guard.watch(0))
    assert len(consumer.seeks) == 2


def test_records_handed_to_the_streams_are_waited_for_far_longer() -> None:
    """In a backlog the records of a partition can wait in Faust's stream buffers behind the
    others: a seek would only fetch them twice."""
    guard, consumer, now = guard_at(highwater=90_000, stored=9_000)
    consumer._read_offset[TP(TOPIC, 0)] = 12_000  # fetched and queued up to here
    now[0] += STALL_AFTER_S * 10
    asyncio.run(guard.watch(0))
    assert consumer.seeks == []
    now[0] += QUEUED_STALL_AFTER_S
    asyncio.run(guard.watch(0))
    assert consumer.seeks == [{TP(TOPIC, 0): 9_000}]


def test_records_handed_before_the_position_do_not_count_as_waiting() -> None:
    guard, consumer, now = guard_at(highwater=18, stored=7)
    for handed in (6, 7):  # a committed offset Faust fell back to; a seek's target
        consumer._read_offset[TP(TOPIC, 0)] = handed
        now[0] += STALL_AFTER_S
        asyncio.run(guard.watch(0))
    assert consumer.seeks == [{TP(TOPIC, 0): 7}] * 2


def test_a_record_that_just_reached_a_quiet_partition_gets_its_time_too() -> None:
    """A partition that hears once a minute: the tick that first sees the new record on the
    broker is not a reason to fetch it again."""
    guard, consumer, now = guard_at(highwater=7, stored=7)
    now[0] += 60
    asyncio.run(guard.watch(0))
    consumer.highwaters[0] = 8  # produced a moment ago
    asyncio.run(guard.watch(0))
    now[0] += STALL_AFTER_S - 1
    asyncio.run(guard.watch(0))
    assert consumer.seeks == []
    now[0] += 1
    asyncio.run(guard.watch(0))
    assert consumer.seeks == [{TP(TOPIC, 0): 7}]  # it never came
