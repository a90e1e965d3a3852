"""The recovery watch without a broker: a changelog partition whose recovery stalled after the
client read past its end is sought back to the record after the last one applied, and only
that one (stream_app.recovery_watch)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from stream_app.recovery_watch import STALLED_AFTER_S, RecoveryWatch

LOST = TP("queues-changelog", 1)  # read to its end by the client, nothing of it applied
SLOW = TP("queues-changelog", 5)  # still being read: the client is not past its end
DONE = TP("calls-changelog", 1)  # recovered


class Consumer:
    def __init__(self, positions: dict[TP, int]) -> None:
        self.positions = positions
        self.seeks: list[dict[TP, int]] = []

    async def position(self, tp: TP) -> int | None:
        return self.positions.get(tp)

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.seeks.append(dict(partitions))


def world() -> tuple[RecoveryWatch, Any, Consumer, list[float]]:
    recovery = SimpleNamespace(
        in_recovery=True,
        active_highwaters={LOST: 1, SLOW: 900, DONE: 40},  # the last offset of each
        active_offsets={LOST: -1, SLOW: 120, DONE: 40},  # the last offset applied
    )
    consumer = Consumer({LOST: 2, SLOW: 300, DONE: 41})
    app = SimpleNamespace(tables=SimpleNamespace(recovery=recovery), consumer=consumer)
    now = [100.0]
    return RecoveryWatch(app, clock=lambda: now[0]), recovery, consumer, now


def check(watch: RecoveryWatch) -> dict[TP, int]:
    return asyncio.run(watch.check())


def test_a_partition_read_past_its_end_and_not_applied_is_fetched_again_once_stalled() -> None:
    watch, recovery, consumer, now = world()
    assert check(watch) == {}  # first seen: it gets its time
    now[0] += STALLED_AFTER_S - 1
    assert check(watch) == {}
    now[0] += 1
    assert check(watch) == {LOST: 0}  # SLOW is stalled too, but its records are still to come
    assert consumer.seeks == [{LOST: 0}]
    now[0] += 1
    assert check(watch) == {}  # sought: it gets its time again
    recovery.active_offsets[LOST] = 0  # one record came, the next not
    now[0] += STALLED_AFTER_S
    assert check(watch) == {}  # it moved: a new stall starts now
    now[0] += STALLED_AFTER_S
    assert check(watch) == {LOST: 1}


def test_a_recovery_that_progresses_or_ended_is_left_alone() -> None:
    watch, recovery, consumer, now = world()
    consumer.positions[LOST] = 6  # the client read all of it: only the progress tells
    check(watch)
    for step in range(1, 4):
        now[0] += STALLED_AFTER_S
        recovery.active_offsets[LOST] = step - 1  # applied, one record at a time
        recovery.active_highwaters[LOST] = 5
        assert check(watch) == {}
    recovery.in_recovery = False
    now[0] += 10 * STALLED_AFTER_S
    assert check(watch) == {} and watch.seen == {}
    assert consumer.seeks == []
