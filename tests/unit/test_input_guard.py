"""The input guard's watch over a partition, without a broker: records the broker holds but
the consumer stopped delivering are fetched again, neither too early nor over and over."""

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree  # type: ignore[import-untyped]

from stream_app.input_guard import QUEUED_STALL_AFTER_S, STALL_AFTER_S, InputGuard

TOPIC = "call-events"


class FakeConsumer:
    def __init__(self, highwater: int | None) -> None:
        self.highwaters = {0: highwater}
        self.seeks: list[dict[TP, int]] = []
        self._read_offset: dict[TP, int] = {}  # what Faust's fetch loop handed to the streams
        self._committed_offset: dict[TP, int] = {}

    async def maybe_wait_for_commit_to_finish(self) -> bool:
        return False

    async def _commit_offsets(self, offsets: dict[TP, int]) -> bool:
        self._committed_offset.update(offsets)
        return True

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp.partition]

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.seeks.append(dict(partitions))


class CommittingConsumer(FakeConsumer):
    """What Faust's consumer commits after acks, by Faust's own code: past offsets acked one
    after another (an ack below the committed offset is ignored, as Faust's `ack` does)."""

    def __init__(self, highwater: int | None, committed: int) -> None:
        super().__init__(highwater)
        self._gap: defaultdict[TP, IntervalTree] = defaultdict(IntervalTree)
        self._acked: defaultdict[TP, list[int]] = defaultdict(list)
        self._acked_index: defaultdict[TP, set[int]] = defaultdict(set)
        self._committed_offset[TP(TOPIC, 0)] = committed

    def ack(self, offset: int) -> None:
        tp = TP(TOPIC, 0)
        if offset >= self._committed_offset[tp]:
            self._acked[tp].append(offset)
            self._acked_index[tp].add(offset)

    def commit(self) -> int:
        tp = TP(TOPIC, 0)
        offset = Consumer._new_offset(self, tp)  # type: ignore[arg-type]
        if offset is not None and offset > self._committed_offset[tp]:
            self._committed_offset[tp] = offset
        return self._committed_offset[tp]


class FakeStore:
    def __init__(self, position: int | None) -> None:
        self.position = position

    def get(self, key: str, partition: int | None = None) -> Any:
        return self.position


def guard_at(
    highwater: int | None, stored: int | None, consumer_type: type[FakeConsumer] = FakeConsumer
) -> tuple[InputGuard, FakeConsumer, list[float]]:
    now = [100.0]
    consumer = consumer_type(highwater)
    app = SimpleNamespace(consumer=consumer)
    guard = InputGuard(app, FakeStore(stored), TOPIC, probe=None, clock=lambda: now[0])  # type: ignore[arg-type]
    guard.forget(0)  # assigned now
    asyncio.run(guard.watch(0))  # and its first tick
    return guard, consumer, now


def assigned_guard(consumer: FakeConsumer, stored: int) -> InputGuard:
    """A guard over `consumer` whose table stores `stored`, its partition just assigned."""
    guard = InputGuard(
        SimpleNamespace(consumer=consumer),
        FakeStore(stored),  # type: ignore[arg-type]
        TOPIC,
        probe=None,  # type: ignore[arg-type]
        clock=lambda: 100.0,
    )
    guard.forget(0)
    return guard


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


def test_a_record_applied_before_and_lost_on_its_way_again_holds_no_commit_back() -> None:
    """A restarted worker: Faust committed up to 4632, the table says 4792 (the killed worker
    applied the rest). Faust delivers 4632.. again, the guard skips them, but one is lost on
    the way (a stream buffer cleared at the end of a recovery): Faust commits past what the
    table vouches for all the same, or the group's lag stays at 160 for good."""
    consumer = CommittingConsumer(highwater=4792, committed=4632)
    guard = assigned_guard(consumer, stored=4792)
    for offset in [*range(4632, 4700), *range(4701, 4792)]:  # 4700 never comes
        asyncio.run(guard.admit(message(offset)))
        consumer.ack(offset)
    assert consumer.commit() == 4792
    asyncio.run(guard.admit(message(4792)))  # a new record: applied, committed past as ever
    consumer.ack(4792)
    assert consumer.commit() == 4793


def test_a_partition_is_read_to_its_end_when_its_next_record_is_the_end() -> None:
    assert guard_at(highwater=7, stored=7)[0].read_to_end(0)
    assert not guard_at(highwater=18, stored=7)[0].read_to_end(0)
    assert not guard_at(highwater=None, stored=None)[0].read_to_end(0)  # its end not known


class RebalancingConsumer(FakeConsumer):
    """Its commit waits out a rebalance, during which the partition is revoked and assigned
    again (the worker's handlers forget it) and its table is still being recovered."""

    def __init__(self, highwater: int, on_commit: Any) -> None:
        super().__init__(highwater)
        self.on_commit = on_commit

    async def _commit_offsets(self, offsets: dict[TP, int]) -> bool:
        await asyncio.sleep(0)
        self.on_commit()
        return await super()._commit_offsets(offsets)


def test_a_record_whose_partition_moved_while_it_waited_is_not_applied() -> None:
    """The first record after an assignment commits the stored position; that commit can wait
    out the next rebalance. The record must not then be applied to the partition's state: the
    table may be half recovered (its buckets in, the contributions that vouch for them not)."""
    guard: InputGuard
    consumer = RebalancingConsumer(highwater=20, on_commit=lambda: guard.forget(0))
    guard = assigned_guard(consumer, stored=12)
    applied: list[int] = []

    async def apply(message: Any) -> None:
        applied.append(message.offset)

    assert not asyncio.run(guard.process(message(12), apply))
    assert applied == []  # delivered again, it is applied then
    consumer.on_commit = lambda: None
    assert asyncio.run(guard.process(message(12), apply))
    assert applied == [12]


def test_a_partition_that_moved_while_its_record_waited_is_not_sought() -> None:
    """Records missing before the one in hand send the consumer back for them, unless the
    partition was revoked meanwhile: aiokafka refuses to seek a partition it does not hold,
    and a stage that raised would stop the worker."""
    guard: InputGuard
    consumer = RebalancingConsumer(highwater=20, on_commit=lambda: guard.forget(0))
    guard = assigned_guard(consumer, stored=12)

    async def apply(message: Any) -> None:
        raise AssertionError("not applied")

    assert not asyncio.run(guard.process(message(15), apply))
    assert consumer.seeks == []


class RevokingConsumer(FakeConsumer):
    """The partition is revoked on the consumer's thread while a seek is on its way there."""

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        raise IllegalStateError(f"No current assignment for partition {next(iter(partitions))}")


def test_a_partition_revoked_while_it_is_sought_again_leaves_the_stage_running() -> None:
    guard, _, now = guard_at(highwater=18, stored=7, consumer_type=RevokingConsumer)
    now[0] += STALL_AFTER_S + 1
    asyncio.run(guard.watch(0))  # its records never came: sought again, and it is gone
    assert guard.sought_at[0] == now[0]


def test_a_partitions_position_is_read_from_its_own_table() -> None:
    """Whatever record is in hand (Faust's current event names the partition a plain read
    goes to), a partition's position comes from that partition's table."""

    class TwoPartitions:
        def get(self, key: str, partition: int | None = None) -> Any:
            return {0: 5, 1: 9}.get(partition if partition is not None else 0)

    guard = InputGuard(SimpleNamespace(consumer=None), TwoPartitions(), TOPIC, probe=None)  # type: ignore[arg-type]
    assert (guard.next_offset(1), guard.next_offset(0)) == (9, 5)
