"""Sweeps by stream time as well as by the wall clock: a replay far faster than real time keeps
no more state than the retention plus a stream period, through the real stage classes."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from stream_app.domain.calls_stage import CallsStage
from stream_app.domain.clock import EventClock
from stream_app.domain.queues import QueueStage, WindowConfig
from stream_app.domain.sla import SlaConfig
from stream_app.domain.sweeps import SweepSchedule, stream_period_ms
from tests.unit.dict_store import DictStore
from tests.unit.test_calls_stage import HOUR, MIN, T0, WALL, record

DAY = 24 * HOUR
RETENTION = 6 * HOUR  # short, so the test replays few calls; the stages take any
TTL = 2 * HOUR


def test_due_first_then_after_either_period() -> None:
    schedule = SweepSchedule(wall_every_ms=MIN, stream_every_ms=HOUR)
    assert schedule.due(0, stream_ms=T0, wall_ms=WALL)
    assert not schedule.due(0, stream_ms=T0 + HOUR - 1, wall_ms=WALL + MIN - 1)
    assert schedule.due(1, stream_ms=T0, wall_ms=WALL)  # per partition
    # A replay: the wall clock hardly moves, stream time does.
    assert schedule.due(0, stream_ms=T0 + HOUR, wall_ms=WALL + 1)
    # A live feed gone quiet: stream time stands, the wall clock moves on.
    assert not schedule.due(0, stream_ms=T0 + HOUR, wall_ms=WALL + MIN)
    assert schedule.due(0, stream_ms=T0 + HOUR, wall_ms=WALL + 1 + MIN)
    schedule.forget(0)
    assert schedule.due(0, stream_ms=T0 + HOUR, wall_ms=WALL + 1 + MIN)


def test_periods_must_be_positive_and_the_stream_period_follows_the_retention() -> None:
    with pytest.raises(ValueError):
        SweepSchedule(wall_every_ms=0, stream_every_ms=HOUR)
    assert stream_period_ms(48 * HOUR) == 6 * HOUR
    assert stream_period_ms(1000) == MIN


def replay(hours: int, schedule: SweepSchedule) -> list[tuple[int, int, int]]:
    """A call every 10 minutes for `hours` of event time, through both stages, with the wall
    clock standing still (as fast as it goes); ticks after every call close intervals and sweep
    when `schedule` says so. Returns (stream hour, calls keys, queues keys) every half hour."""
    calls_store, queues_store = DictStore(), DictStore()
    calls = CallsStage(
        calls_store,
        SlaConfig(),
        EventClock(),
        max_event_bytes=4096,
        retention_ms=RETENTION,
        call_ttl_ms=TTL,
    )
    windows = WindowConfig(retention_ms=RETENTION + 15 * MIN)
    queues = QueueStage(queues_store, windows, SlaConfig())
    offsets = itertools.count()
    sizes: list[tuple[int, int, int]] = []

    def send(call_id: str, emission: object) -> None:
        contributions = getattr(emission, "contributions", {})
        for queue, contribution in contributions.items():
            queues.apply(queue, call_id, contribution, next(offsets))

    for n in range(hours * 6):
        start, call = T0 + n * 10 * MIN, f"c{n}"
        for type_, offset, fields in (
            ("call_started", 0, {}),
            ("queue_entered", 5_000, {"queue": "sales"}),
            ("call_answered", 20_000, {"agent_id": "a1"}),
            ("call_ended", 120_000, {}),
        ):
            key, value = record(type_, start + offset, call=call, **fields)
            outcome = calls.process(key, value, WALL, 0)
            assert outcome.reject is None
            send(call, outcome.emission)
        now = calls.stream_time(0)
        assert now is not None
        queues.close_due("sales", now)
        if schedule.due(("calls", 0), now, WALL):
            for call_id, emission in calls.sweep(0).emissions:
                send(call_id, emission)
        if schedule.due(("queues", 0), now, WALL):
            queues.sweep(now)
        if n % 3 == 0:
            sizes.append(((now - T0) // HOUR, len(calls_store.data), len(queues_store.data)))
    return sizes


def peak(
    sizes: list[tuple[int, int, int]], since: int, until: int, pick: Callable[..., int]
) -> int:
    return max(pick(s) for s in sizes if since <= s[0] < until)


def test_a_fast_replay_keeps_the_state_of_the_retention_plus_a_stream_period() -> None:
    period = stream_period_ms(RETENTION)
    assert period == 45 * MIN
    bounded = replay(48, SweepSchedule(wall_every_ms=MIN, stream_every_ms=period))
    for pick in (lambda s: s[1], lambda s: s[2]):
        reached = peak(bounded, 12, 30, pick)  # the retention and more are behind
        assert peak(bounded, 30, 48, pick) <= reached
    # 6 calls an hour, each kept for the retention (6 h) after its end, plus a period.
    assert peak(bounded, 12, 48, lambda s: s[1]) <= 6 * 7 + 1
    # The wall clock alone never sweeps again in this replay: the state grows with it.
    wall_only = replay(48, SweepSchedule(wall_every_ms=MIN, stream_every_ms=365 * DAY))
    assert wall_only[-1][1] > 2 * bounded[-1][1]
    assert wall_only[-1][2] > 2 * bounded[-1][2]
