"""The queues stage against contract §3 and §5: hand-computed figures per window, exact
corrections, idempotence under replays and crashes, closing and revisions, retention; then
properties (any order, duplicates, corrections and crashes give the figures of each call's
final contribution applied once; rolling windows and "today" are sums of their buckets).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.figures import Figures, interval_key
from stream_app.domain.model import EMPTY, Contribution
from stream_app.domain.queues import (
    SEP,
    Applied,
    QueueStage,
    Store,
    WindowConfig,
    bucket_key,
    contrib_key,
)
from stream_app.domain.sla import QueueSla, SlaConfig
from stream_app.domain.windows import day_end, day_start
from tests.unit.dict_store import Crash, CrashingStore, DictStore

S = 1000  # ms per second
MIN = 60 * S
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp() * 1000)  # an interval start
INTERVAL = 15 * MIN
GRACE = 2 * MIN
RETENTION = 48 * HOUR
WINDOWS = WindowConfig(interval_ms=INTERVAL, grace_ms=GRACE, retention_ms=RETENTION)
DEFAULT_SLA = SlaConfig()  # 20 s service level, 5 s short abandon
VIP = QueueSla(service_level_seconds=10, short_abandon_seconds=3)
SLA = SlaConfig(queues=MappingProxyType({"vip": VIP}))


def at(seconds: float) -> int:
    return T0 + round(seconds * S)


def make(
    store: Store | None = None, sla: SlaConfig = SLA, windows: WindowConfig = WINDOWS
) -> QueueStage:
    return QueueStage(store if store is not None else DictStore(), windows, sla)


def store_of(stage: QueueStage) -> DictStore:
    assert isinstance(stage.store, DictStore)
    return stage.store


def figs(
    *,
    answered: int = 0,
    within: int = 0,
    answer_s: float = 0,
    wait_s: float = 0,
    abandoned: int = 0,
    short: int = 0,
    flowed: int = 0,
    handled: int = 0,
    handle_s: float = 0,
    longest_s: float | None = None,
) -> Figures:
    """Expected figures, spans in seconds."""
    return Figures(
        answered=answered,
        answered_within_threshold=within,
        answer_ms_sum=round(answer_s * S),
        queue_wait_ms_sum=round(wait_s * S),
        abandoned=abandoned,
        short_abandoned=short,
        flowed_out=flowed,
        handled=handled,
        handle_ms_sum=round(handle_s * S),
        longest_wait_ms=None if longest_s is None else round(longest_s * S),
    )


def answered(ts_s: float, speed_s: float, wait_s: float) -> tuple[int, int, int]:
    return (at(ts_s), round(speed_s * S), round(wait_s * S))


def abandoned(ts_s: float, waited_s: float) -> tuple[int, int]:
    return (at(ts_s), round(waited_s * S))


def handled(ts_s: float, handle_s: float) -> tuple[int, int]:
    return (at(ts_s), round(handle_s * S))


class Feeder:
    """Applies records to a stage with increasing offsets (one queue-updates partition)."""

    def __init__(self, stage: QueueStage) -> None:
        self.stage = stage
        self.offset = 0

    def __call__(self, queue: str, call_id: str, contribution: Contribution) -> Applied:
        self.offset += 1
        return self.stage.apply(queue, call_id, contribution, self.offset)


def nonzero_buckets(store: DictStore) -> dict[str, Figures]:
    """Every bucket that counts something, by key."""
    out: dict[str, Figures] = {}
    for key, value in store.items():
        if key.startswith("b" + SEP):
            figures = Figures.from_json(value[1])
            if not figures.is_zero():
                out[key] = figures
    return out


def without_meta(store: DictStore) -> dict[str, Any]:
    return {k: v for k, v in store.snapshot().items() if not k.startswith("q" + SEP)}


# -- a hand-computed queue: sales, interval 10:00-10:15 and the next one ------------------------

# (call_id, contribution); spans in seconds, ts in seconds after 10:00:00
SALES = [
    ("c1", Contribution(answered=answered(60, 3, 2), handled=handled(300, 200))),
    # answered in this interval, its handle time lands in the next one (10:16:40)
    ("c2", Contribution(answered=answered(120, 25, 20), handled=handled(1000, 300))),
    ("c3", Contribution(abandoned=abandoned(90, 2))),  # a short abandon
    ("c4", Contribution(abandoned=abandoned(200, 48))),
    ("c5", Contribution(flowed_out=(at(150),))),
    ("c6", Contribution(waiting_since=at(800))),  # waiting: no figures
    ("c7", Contribution(answered=answered(960, 10, 5))),  # 10:16:00, next interval
]
FIRST = figs(
    answered=2,
    within=1,
    answer_s=28,
    wait_s=22,
    abandoned=2,
    short=1,
    flowed=1,
    handled=1,
    handle_s=200,
    longest_s=48,
)
SECOND = figs(answered=1, within=1, answer_s=10, wait_s=5, handled=1, handle_s=300, longest_s=10)
FIRST_RECORD: dict[str, object] = {
    "queue": "sales",
    "interval_start": "2026-03-02T10:00:00Z",
    "interval_end": "2026-03-02T10:15:00Z",
    "offered": 3,
    "answered": 2,
    "abandoned": 2,
    "short_abandoned": 1,
    "flowed_out": 1,
    "answered_within_threshold": 1,
    "service_level_seconds": 20,
    "asa_seconds": 14.0,
    "awt_seconds": 11.0,
    "aht_seconds": 200.0,
    "longest_wait_seconds": 48.0,
    "service_level": 1 / 3,
    "abandon_rate": 1 / 3,
    "occupancy": None,  # no agent served the queue
    "agents_staffed_avg": None,
    "revision": 0,
}


def sales_stage() -> tuple[QueueStage, Feeder]:
    stage = make()
    feed = Feeder(stage)
    for call_id, contribution in SALES:
        feed("sales", call_id, contribution)
    return stage, feed


def test_interval_figures_of_several_calls_are_hand_computed() -> None:
    stage, _ = sales_stage()
    first = stage.window("sales", "interval", at(14 * 60 + 59))
    assert first == FIRST
    assert first.offered == 3
    assert first.asa_seconds == 14.0
    assert first.awt_seconds == 11.0
    assert first.aht_seconds == 200.0
    assert first.longest_wait_seconds == 48.0
    assert first.service_level == 1 / 3
    assert first.abandon_rate == 1 / 3
    second = stage.window("sales", "interval", at(15 * 60))
    assert second == SECOND
    assert (second.offered, second.service_level, second.abandon_rate) == (1, 1.0, 0.0)
    assert (second.asa_seconds, second.awt_seconds, second.aht_seconds) == (10.0, 5.0, 300.0)
    assert stage.window("other", "interval", at(60)) == Figures()


def test_the_published_interval_record_is_hand_computed() -> None:
    stage, _ = sales_stage()
    records = stage.close_due("sales", at(17 * 60) + 1)
    assert records == [(interval_key("sales", T0), FIRST_RECORD)]
    assert records[0][0] == "sales|2026-03-02T10:00:00Z"


def test_rolling_windows_and_today_are_hand_computed() -> None:
    stage, _ = sales_stage()
    # At 10:14:30 the rolling windows hold 10:00..10:05, not the facts of 10:16 (their minute
    # is ahead of stream time), while "today" is the whole day's buckets.
    assert stage.window("sales", "today", at(14 * 60 + 30)) == FIRST.merge(SECOND)
    for window in ("15m", "1h"):
        assert stage.window("sales", window, at(14 * 60 + 30)) == FIRST, window
    # At 10:16:30 the 15 minutes are the minutes 10:02..10:16: c2's answer (10:02:00) is in,
    # c1's answer (10:01:00) and c3's abandon (10:01:30) are out; facts later in the current
    # minute (c2's handle time at 10:16:40) count.
    now = at(16 * 60 + 30)
    last_15m = stage.window("sales", "15m", now)
    assert last_15m == figs(
        answered=2,
        within=1,
        answer_s=35,
        wait_s=25,
        abandoned=1,
        flowed=1,
        handled=2,
        handle_s=500,
        longest_s=48,
    )
    assert (last_15m.offered, last_15m.asa_seconds, last_15m.aht_seconds) == (3, 17.5, 250.0)
    everything = FIRST.merge(SECOND)
    assert stage.window("sales", "1h", now) == everything
    assert stage.window("sales", "today", now) == everything
    # An hour later the first minutes have left the hour; the day keeps them.
    later = at(61 * 60 + 30)  # 11:01:30: the hour is 10:02..11:01
    assert stage.window("sales", "1h", later) == last_15m
    assert stage.window("sales", "today", later) == everything
    assert stage.window("sales", "15m", later) == Figures()
    # The next day starts from zero.
    assert stage.window("sales", "today", at(14 * HOUR / S)) == Figures()


def test_means_and_ratios_over_zero_calls_are_none() -> None:
    stage = make()
    feed = Feeder(stage)
    feed("sales", "c1", Contribution(flowed_out=(at(10),)))
    feed("sales", "c2", Contribution(abandoned=abandoned(20, 4)))  # short: not offered
    figures = stage.window("sales", "interval", at(60))
    assert figures == figs(abandoned=1, short=1, flowed=1, longest_s=4)
    assert figures.offered == 0
    assert figures.asa_seconds is None
    assert figures.awt_seconds is None
    assert figures.aht_seconds is None
    assert figures.service_level is None
    assert figures.abandon_rate is None
    [(_, record)] = stage.close_due("sales", at(17 * 60 + 1))
    assert {k: record[k] for k in ("offered", "asa_seconds", "service_level", "abandon_rate")} == {
        "offered": 0,
        "asa_seconds": None,
        "service_level": None,
        "abandon_rate": None,
    }
    assert record["longest_wait_seconds"] == 4.0


def test_thresholds_are_inclusive_for_service_level_and_strict_for_short_abandons() -> None:
    stage = make()
    feed = Feeder(stage)
    feed("sales", "c1", Contribution(answered=answered(1, 20, 0)))  # exactly 20 s: within
    feed("sales", "c2", Contribution(answered=answered(2, 20.001, 0)))
    feed("sales", "c3", Contribution(abandoned=abandoned(3, 5)))  # exactly 5 s: not short
    feed("sales", "c4", Contribution(abandoned=abandoned(4, 4.999)))
    figures = stage.figures("sales", "i", T0)
    assert (figures.answered_within_threshold, figures.short_abandoned) == (1, 1)


def test_per_queue_thresholds_classify_the_same_call_differently() -> None:
    stage = make()
    feed = Feeder(stage)
    for queue in ("sales", "vip"):
        feed(queue, "c1", Contribution(answered=answered(10, 15, 15)))
        feed(queue, "c2", Contribution(abandoned=abandoned(20, 4)))
    # sales: 15 s is within 20 s, 4 s is a short abandon (< 5 s)
    assert stage.figures("sales", "i", T0) == figs(
        answered=1, within=1, answer_s=15, wait_s=15, abandoned=1, short=1, longest_s=15
    )
    # vip: 15 s is not within 10 s, 4 s is not a short abandon (>= 3 s)
    vip = stage.figures("vip", "i", T0)
    assert vip == figs(answered=1, answer_s=15, wait_s=15, abandoned=1, longest_s=15)
    assert (vip.service_level, vip.abandon_rate) == (0.0, 0.5)
    published = dict(stage.close_due("vip", at(18 * 60)))
    assert published[interval_key("vip", T0)]["service_level_seconds"] == 10


def test_negative_spans_count_as_zero() -> None:
    stage = make()
    Feeder(stage)("sales", "c1", Contribution(answered=(at(1), -3 * S, -2 * S)))
    assert stage.figures("sales", "i", T0) == figs(answered=1, within=1, longest_s=0)


# -- corrections and withdrawals ----------------------------------------------------------------


def fresh_stage_with(finals: Iterable[tuple[str, str, Contribution]]) -> QueueStage:
    stage = make()
    feed = Feeder(stage)
    for queue, call_id, contribution in finals:
        feed(queue, call_id, contribution)
    return stage


def test_a_correction_moves_the_figures_exactly() -> None:
    stage, feed = sales_stage()
    # c2 answered faster and later (10:03:10, a different minute), c7 moved back into the
    # first interval (10:14:40).
    c2 = Contribution(answered=answered(190, 15, 12), handled=handled(1000, 300))
    c7 = Contribution(answered=answered(880, 10, 5))
    feed("sales", "c2", c2)
    feed("sales", "c7", c7)
    assert stage.figures("sales", "i", T0) == figs(
        answered=3,
        within=3,
        answer_s=28,
        wait_s=19,
        abandoned=2,
        short=1,
        flowed=1,
        handled=1,
        handle_s=200,
        longest_s=48,
    )
    assert stage.figures("sales", "i", T0 + INTERVAL) == figs(handled=1, handle_s=300)
    assert stage.figures("sales", "m", at(120)) == figs(flowed=1)  # c5 stays
    assert stage.figures("sales", "m", at(180)) == figs(
        answered=1, within=1, answer_s=15, wait_s=12, abandoned=1, longest_s=48
    )
    finals = {call_id: c for call_id, c in SALES} | {"c2": c2, "c7": c7}
    expected = fresh_stage_with(("sales", k, v) for k, v in finals.items())
    assert nonzero_buckets(store_of(stage)) == nonzero_buckets(store_of(expected))


def test_a_correction_moves_a_call_to_another_queue() -> None:
    stage, feed = sales_stage()
    feed("sales", "c4", EMPTY)
    feed("vip", "c4", Contribution(abandoned=abandoned(200, 48)))
    assert stage.figures("sales", "i", T0) == figs(
        answered=2,
        within=1,
        answer_s=28,
        wait_s=22,
        abandoned=1,
        short=1,
        flowed=1,
        handled=1,
        handle_s=200,
        longest_s=25,
    )
    assert stage.figures("vip", "i", T0) == figs(abandoned=1, longest_s=48)


def test_withdrawing_every_call_returns_every_bucket_to_zero() -> None:
    stage, feed = sales_stage()
    for call_id, _ in SALES:
        feed("sales", call_id, EMPTY)
    store = store_of(stage)
    buckets = [(k, v) for k, v in store.items() if k.startswith("b" + SEP)]
    assert buckets  # the buckets are still there, holding nothing
    assert all(Figures.from_json(v[1]) == Figures() for _, v in buckets)
    assert not [k for k, _ in store.items() if k.startswith("c" + SEP)]
    assert stage.waiting("sales") == {}
    for window in ("interval", "15m", "1h", "today"):
        assert stage.window("sales", window, at(16 * 60)) == Figures()


def test_withdrawing_the_longest_wait_recomputes_it_from_the_remaining_calls() -> None:
    stage = make()
    feed = Feeder(stage)
    feed("sales", "c1", Contribution(answered=answered(60, 10, 1)))
    feed("sales", "c2", Contribution(abandoned=abandoned(130, 48)))
    feed("sales", "c3", Contribution(answered=answered(200, 30, 1)))
    feed("sales", "c4", Contribution(answered=answered(140, 7, 1)))  # same minute as c2
    assert stage.figures("sales", "i", T0).longest_wait_ms == 48 * S
    feed("sales", "c2", EMPTY)
    assert stage.figures("sales", "i", T0).longest_wait_ms == 30 * S
    assert stage.figures("sales", "m", at(120)).longest_wait_ms == 7 * S
    # The holder corrected downwards: the max comes from the others or the new value.
    feed("sales", "c3", Contribution(answered=answered(200, 5, 1)))
    assert stage.figures("sales", "i", T0).longest_wait_ms == 10 * S
    assert stage.figures("sales", "m", at(180)).longest_wait_ms == 5 * S
    feed("sales", "c1", Contribution(answered=answered(60, 8, 1)))
    assert stage.figures("sales", "i", T0).longest_wait_ms == 8 * S
    feed("sales", "c1", Contribution(answered=answered(60, 9, 1)))  # still the holder
    assert stage.figures("sales", "i", T0).longest_wait_ms == 9 * S
    feed("sales", "c4", EMPTY)
    assert stage.figures("sales", "m", at(120)) == Figures()
    assert stage.window("sales", "1h", at(300)).longest_wait_ms == 9 * S


def test_a_tie_for_the_longest_wait_survives_withdrawing_one_holder() -> None:
    stage = make()
    feed = Feeder(stage)
    feed("sales", "c1", Contribution(answered=answered(60, 30, 1)))
    feed("sales", "c2", Contribution(abandoned=abandoned(65, 30)))
    feed("sales", "c3", Contribution(answered=answered(70, 3, 1)))
    feed("sales", "c1", EMPTY)
    assert stage.figures("sales", "m", at(60)).longest_wait_ms == 30 * S
    feed("sales", "c2", EMPTY)
    assert stage.figures("sales", "m", at(60)).longest_wait_ms == 3 * S


def test_a_service_level_threshold_change_reclassifies_a_resent_contribution() -> None:
    store = DictStore()
    call = Contribution(answered=answered(10, 15, 0))
    make(store, DEFAULT_SLA).apply("sales", "c1", call, 1)
    assert make(store).figures("sales", "i", T0).answered_within_threshold == 1
    stricter = SlaConfig(default=QueueSla(service_level_seconds=10))
    make(store, stricter).apply("sales", "c1", call, 2)
    assert make(store).figures("sales", "i", T0) == figs(answered=1, answer_s=15, longest_s=15)


def test_a_short_abandon_threshold_change_reclassifies_a_resent_contribution() -> None:
    store = DictStore()
    call = Contribution(abandoned=abandoned(10, 3))
    make(store, DEFAULT_SLA).apply("sales", "c1", call, 1)
    assert make(store).figures("sales", "i", T0).short_abandoned == 1
    shorter = SlaConfig(default=QueueSla(short_abandon_seconds=2))
    make(store, shorter).apply("sales", "c1", call, 2)  # as the service-level case does
    assert make(store).figures("sales", "i", T0) == figs(abandoned=1, longest_s=3)


# -- idempotence --------------------------------------------------------------------------------


def test_the_same_record_applied_twice_changes_nothing() -> None:
    stage, _ = sales_stage()
    store = store_of(stage)
    call = Contribution(answered=answered(400, 12, 3), handled=handled(500, 60))
    first = stage.apply("sales", "c8", call, 100)
    assert first.changed
    assert first.new_answer_speeds_ms == [12 * S]
    before, writes = store.snapshot(), store.writes
    again = stage.apply("sales", "c8", call, 100)
    assert not again.changed
    assert again.new_answer_speeds_ms == []
    assert (store.snapshot(), store.writes) == (before, writes)
    # An older record of the call, re-read, is skipped too.
    older = stage.apply("sales", "c8", Contribution(answered=answered(400, 99, 3)), 99)
    assert (older.changed, store.snapshot()) == (False, before)


def test_a_withdrawal_applied_twice_changes_nothing() -> None:
    stage, _ = sales_stage()
    store = store_of(stage)
    stage.apply("sales", "c4", EMPTY, 100)
    before = store.snapshot()
    assert not stage.apply("sales", "c4", EMPTY, 100).changed
    assert store.snapshot() == before


def test_an_identical_contribution_at_a_new_offset_changes_nothing() -> None:
    stage, _ = sales_stage()
    store = store_of(stage)
    before, writes = store.snapshot(), store.writes
    for offset, (call_id, contribution) in enumerate(SALES, start=100):
        applied = stage.apply("sales", call_id, contribution, offset)
        assert not applied.changed
        assert applied.new_answer_speeds_ms == []
    assert stage.apply("sales", "never-seen", EMPTY, 200).changed is False
    assert (store.snapshot(), store.writes) == (before, writes)


def test_new_answer_speeds_are_reported_once_per_new_answer() -> None:
    stage = make()
    assert (
        stage.apply("sales", "c1", Contribution(waiting_since=at(1)), 1).new_answer_speeds_ms == []
    )
    call = Contribution(answered=answered(30, 29, 29))
    assert stage.apply("sales", "c1", call, 2).new_answer_speeds_ms == [29 * S]
    with_handle = Contribution(answered=answered(30, 29, 29), handled=handled(90, 60))
    assert stage.apply("sales", "c1", with_handle, 3).new_answer_speeds_ms == []
    corrected = Contribution(answered=answered(30, 25, 25), handled=handled(90, 60))
    assert stage.apply("sales", "c1", corrected, 4).new_answer_speeds_ms == [25 * S]


# Each: the records before, then the record that crashes.
CRASH_CASES: dict[str, tuple[list[tuple[str, Contribution]], tuple[str, Contribution]]] = {
    "first contribution": ([], ("c1", Contribution(answered=answered(60, 3, 2)))),
    "waiting, then answered": (
        [("c1", Contribution(waiting_since=at(30)))],
        ("c1", Contribution(answered=answered(60, 30, 30), handled=handled(1000, 90))),
    ),
    "correction across intervals": (
        [("c1", Contribution(answered=answered(60, 3, 2))), ("c2", SALES[3][1])],
        ("c1", Contribution(answered=answered(950, 3, 2), flowed_out=(at(10), at(20)))),
    ),
    "withdrawal of the longest wait": (
        [(call_id, c) for call_id, c in SALES],
        ("c4", EMPTY),
    ),
    "correction of the longest wait": (
        [(call_id, c) for call_id, c in SALES],
        ("c4", Contribution(abandoned=abandoned(200, 1))),
    ),
}


def run_crash_case(name: str, crash_after: int | None) -> DictStore:
    """The case's records, the last one crashing after `crash_after` writes and re-run."""
    before, (call_id, last) = CRASH_CASES[name]
    store = DictStore()
    stage = make(store)
    for offset, (cid, contribution) in enumerate(before, start=1):
        stage.apply("sales", cid, contribution, offset)
    stage.close_due("sales", at(3600))  # the crashing record corrects published intervals
    offset = len(before) + 1
    if crash_after is not None:
        with pytest.raises(Crash):
            make(CrashingStore(store, crash_after)).apply("sales", call_id, last, offset)
    stage.apply("sales", call_id, last, offset)
    return store


def writes_of(name: str) -> int:
    before, (call_id, last) = CRASH_CASES[name]
    store = run_crash_case(name, None)
    clean = DictStore()
    stage = make(clean)
    for offset, (cid, contribution) in enumerate(before, start=1):
        stage.apply("sales", cid, contribution, offset)
    stage.close_due("sales", at(3600))
    start = clean.writes
    stage.apply("sales", call_id, last, len(before) + 1)
    assert clean.snapshot() == store.snapshot()
    return clean.writes - start


@pytest.mark.parametrize("name", CRASH_CASES)
def test_a_crash_after_any_write_then_a_replay_gives_the_figures_of_one_clean_apply(
    name: str,
) -> None:
    clean = run_crash_case(name, None)
    writes = writes_of(name)
    assert writes >= 3
    clean_stage = make(clean)
    for k in range(writes):
        store = run_crash_case(name, k)
        assert without_meta(store) == without_meta(clean), k
        assert make(store).waiting("sales") == clean_stage.waiting("sales"), k


@pytest.mark.parametrize("name", CRASH_CASES)
def test_a_crash_after_any_write_then_a_replay_gives_the_store_of_one_clean_apply(
    name: str,
) -> None:
    clean = run_crash_case(name, None)
    for k in range(writes_of(name)):
        assert run_crash_case(name, k).snapshot() == clean.snapshot(), k


def test_an_interval_written_before_a_crash_is_still_published() -> None:
    call = Contribution(answered=answered(60, 3, 2))
    clean = make()
    clean.apply("sales", "c1", call, 1)
    writes = store_of(clean).writes
    expected = clean.close_due("sales", at(17 * 60 + 1))
    assert [key for key, _ in expected] == [interval_key("sales", T0)]
    lost = []
    for k in range(writes):
        store = DictStore()
        with pytest.raises(Crash):
            make(CrashingStore(store, k)).apply("sales", "c1", call, 1)
        stage = make(store)
        stage.apply("sales", "c1", call, 1)  # the replay after the restart
        if stage.close_due("sales", at(17 * 60 + 1)) != expected:
            lost.append(k)
    assert lost == []


# -- waiting ------------------------------------------------------------------------------------


def test_waiting_calls_and_their_since_times() -> None:
    stage = make()
    feed = Feeder(stage)
    assert stage.waiting("sales") == {}
    feed("sales", "c1", Contribution(waiting_since=at(10)))
    feed("sales", "c2", Contribution(waiting_since=at(20)))
    feed("sales", "c3", Contribution(waiting_since=at(30)))
    feed("sales", "c4", Contribution(waiting_since=at(40)))
    feed("vip", "c5", Contribution(waiting_since=at(50)))
    assert stage.waiting("sales") == {"c1": at(10), "c2": at(20), "c3": at(30), "c4": at(40)}
    assert stage.waiting("vip") == {"c5": at(50)}
    feed("sales", "c1", Contribution(answered=answered(70, 60, 60)))
    feed("sales", "c2", Contribution(abandoned=abandoned(80, 60)))
    feed("sales", "c3", EMPTY)
    # c4 flowed out and came back to the same queue: waiting again, since its new entry
    feed("sales", "c4", Contribution(flowed_out=(at(60),), waiting_since=at(65)))
    assert stage.waiting("sales") == {"c4": at(65)}
    feed("sales", "c4", Contribution(flowed_out=(at(60),)))  # then left for another queue
    feed("vip", "c4", Contribution(waiting_since=at(66)))
    assert stage.waiting("sales") == {}
    assert stage.waiting("vip") == {"c5": at(50), "c4": at(66)}
    assert sorted(stage.queues()) == ["sales", "vip"]


def test_a_waiting_only_change_does_not_republish_an_interval() -> None:
    stage = make()
    feed = Feeder(stage)
    feed("sales", "c1", Contribution(answered=answered(60, 3, 2)))
    assert len(stage.close_due("sales", at(17 * 60 + 1))) == 1
    feed("sales", "c2", Contribution(waiting_since=at(100)))
    feed("sales", "c2", Contribution(waiting_since=at(110)))
    assert stage.close_due("sales", at(18 * 60)) == []


# -- closing ------------------------------------------------------------------------------------


def test_close_due_publishes_only_after_end_plus_grace() -> None:
    stage, _ = sales_stage()
    end_plus_grace = T0 + INTERVAL + GRACE
    assert stage.close_due("sales", at(14 * 60)) == []
    assert stage.close_due("sales", end_plus_grace) == []  # "past" it, not at it
    assert stage.close_due("sales", end_plus_grace + 1) == [
        (interval_key("sales", T0), FIRST_RECORD)
    ]
    assert stage.close_due("sales", end_plus_grace + 1) == []
    assert stage.close_due("sales", end_plus_grace + INTERVAL) == []  # the second, not yet
    [(key, record)] = stage.close_due("sales", end_plus_grace + INTERVAL + 1)
    assert key == interval_key("sales", T0 + INTERVAL)
    assert record["revision"] == 0
    assert record["interval_end"] == "2026-03-02T10:30:00Z"
    assert (record["answered"], record["aht_seconds"]) == (1, 300.0)
    assert stage.close_due("unknown", end_plus_grace + 1) == []


def test_a_change_to_a_published_interval_is_published_again_with_the_next_revision() -> None:
    stage, feed = sales_stage()
    late = at(60 * 60)  # 11:00: both intervals closed
    first, second = (record for _, record in stage.close_due("sales", late))
    assert (first["revision"], second["revision"]) == (0, 0)
    feed("sales", "c4", EMPTY)  # a correction in the first interval only
    [(key, revised)] = stage.close_due("sales", late)
    assert key == interval_key("sales", T0)
    assert revised == FIRST_RECORD | {
        "offered": 2,
        "abandoned": 1,
        "longest_wait_seconds": 25.0,
        "service_level": 0.5,
        "abandon_rate": 0.0,
        "revision": 1,
    }
    assert stage.close_due("sales", late + MIN) == []  # untouched since
    feed("sales", "c4", Contribution(abandoned=abandoned(200, 48)))
    feed("sales", "c9", Contribution(answered=answered(1700, 1, 1)))  # 10:28:20
    revisions = {k: r["revision"] for k, r in stage.close_due("sales", late + MIN)}
    assert revisions == {interval_key("sales", T0): 2, interval_key("sales", T0 + INTERVAL): 1}


def test_an_identical_resend_does_not_republish() -> None:
    stage, feed = sales_stage()
    stage.close_due("sales", at(3600))
    for call_id, contribution in SALES:
        feed("sales", call_id, contribution)
    assert stage.close_due("sales", at(3600)) == []


def test_withdrawing_every_call_republishes_an_empty_interval() -> None:
    stage, feed = sales_stage()
    stage.close_due("sales", at(3600))
    for call_id, _ in SALES:
        feed("sales", call_id, EMPTY)
    records = dict(stage.close_due("sales", at(3600)))
    record = records[interval_key("sales", T0)]
    assert record["revision"] == 1
    assert (record["offered"], record["answered"], record["asa_seconds"]) == (0, 0, None)
    assert (record["longest_wait_seconds"], record["service_level"]) == (None, None)


def test_published_returns_every_published_interval_as_last_published() -> None:
    stage, feed = sales_stage()
    feed("vip", "c1", Contribution(answered=answered(100, 1, 1)))
    feed("vip", "c2", Contribution(answered=answered(3 * 3600, 1, 1)))  # 13:00, open
    assert stage.published() == []
    sent: dict[str, dict[str, object]] = {}
    for queue in ("sales", "vip"):
        sent.update(stage.close_due(queue, at(3600)))
    feed("sales", "c4", EMPTY)
    sent.update(stage.close_due("sales", at(3600)))
    assert len(sent) == 3
    assert sent[interval_key("sales", T0)]["revision"] == 1
    published = stage.published()
    assert len(published) == 3
    assert dict(published) == sent
    assert dict(make(store_of(stage)).published()) == sent  # after a restart


def test_published_is_as_last_published_while_a_change_is_pending() -> None:
    stage, feed = sales_stage()
    sent = dict(stage.close_due("sales", at(3600)))
    feed("sales", "c4", EMPTY)  # changes the first interval; published at the next close
    assert dict(stage.published()) == sent


def test_sweep_deletes_only_what_ended_before_the_low_watermark_minus_retention() -> None:
    stage = make()
    feed = Feeder(stage)
    horizon = T0 + INTERVAL  # the low watermark minus the retention, below
    feed("sales", "old", Contribution(answered=(horizon - 1, 2 * S, S)))
    feed("sales", "edge", Contribution(answered=(horizon, 3 * S, S)))
    feed("sales", "long", Contribution(answered=(T0, 4 * S, S), handled=(horizon, 60 * S)))
    feed("sales", "waits", Contribution(waiting_since=T0 - HOUR))
    store = store_of(stage)
    newer = {
        key: stage.figures("sales", kind, start)
        for kind, start in (("i", horizon), ("m", horizon))
        for key in [bucket_key("sales", kind, start)]
    }
    stage.close_due("sales", horizon + RETENTION + DAY)  # only published intervals may go
    before = store.snapshot()
    # One ms earlier: nothing goes, not even the minute that ended a minute before the
    # horizon (a minute goes with its interval).
    assert stage.sweep(horizon - 1 + RETENTION) == 0
    deleted = stage.sweep(horizon + RETENTION)
    assert set(before) - set(store.snapshot()) == {
        bucket_key("sales", "m", T0),
        bucket_key("sales", "i", T0),  # ends exactly at the horizon
        bucket_key("sales", "m", T0 + 14 * MIN),
        contrib_key("sales", "old"),  # its last fact is 1 ms before the horizon
    }
    assert deleted == 4
    for key, figures in newer.items():
        assert stage.figures("sales", key.split(SEP)[2], int(key.split(SEP)[3])) == figures
    assert newer[bucket_key("sales", "i", horizon)] == figs(
        answered=1, within=1, answer_s=3, wait_s=1, handled=1, handle_s=60, longest_s=3
    )
    assert store.get(contrib_key("sales", "edge")) is not None  # a fact at the horizon
    assert store.get(contrib_key("sales", "long")) is not None  # its newest fact is at it
    assert store.get(contrib_key("sales", "waits")) is not None  # still waiting
    assert stage.waiting("sales") == {"waits": T0 - HOUR}
    assert stage.queues() == ["sales"]
    assert stage.sweep(horizon + RETENTION) == 0


def test_sweep_keeps_an_interval_not_yet_published_whatever_its_age() -> None:
    stage = make()
    feed = Feeder(stage)
    feed("sales", "c1", Contribution(answered=(T0 + MIN, 2 * S, S)))
    assert stage.sweep(T0 + 10 * RETENTION) == 1  # the call's contribution goes ...
    assert stage.figures("sales", "i", T0).answered == 1  # ... its unpublished interval stays
    published = stage.close_due("sales", T0 + 10 * RETENTION)
    assert [record["answered"] for _, record in published] == [1]
    assert stage.sweep(T0 + 10 * RETENTION) == 2  # then its interval and minute go


def test_a_call_sent_again_after_the_sweep_forgot_it_counts_once() -> None:
    """A calls partition's new owner redoes the records since its last checkpoint and sends
    their calls again, while its clock, as announced before, let the sweep forget them: the
    interval still waiting to be published counts each call once (test_crash: a worker joining
    mid-stream found PS 02-03 14:00 with 22 calls offered instead of 18), its answer speed is
    not observed again, and once published and swept it is not revived with the one call in
    it."""
    stage = make()
    feed = Feeder(stage)
    answered = Contribution(answered=(T0 + MIN, 2 * S, S))
    feed("sales", "c1", answered)
    feed("sales", "c2", Contribution(answered=(T0 + 2 * MIN, 30 * S, S)))
    assert stage.sweep(T0 + 10 * RETENTION) == 2  # both contributions go, the interval stays
    assert feed("sales", "c1", answered).new_answer_speeds_ms == []  # redone: observed before
    assert stage.figures("sales", "i", T0) == figs(
        answered=2, within=1, answer_s=32, wait_s=2, longest_s=30
    )
    published = stage.close_due("sales", T0 + 10 * RETENTION)
    assert [record["answered"] for _, record in published] == [2]
    assert stage.sweep(T0 + 10 * RETENTION) == 4  # the interval and minutes, c1's contribution
    feed("sales", "c2", Contribution(answered=(T0 + 2 * MIN, 30 * S, S)))
    assert nonzero_buckets(store_of(stage)) == {}
    assert stage.close_due("sales", T0 + 11 * RETENTION) == []


def test_an_interval_the_sweep_keeps_keeps_all_its_minutes() -> None:
    """An interval across the sweep's horizon, published: when the fact holding its longest
    wait is withdrawn, the longest wait is read again from its minutes, the early ones too."""
    stage = make()
    feed = Feeder(stage)
    start = T0 + INTERVAL
    feed("sales", "early", Contribution(abandoned=(start + 30 * S, 40 * S)))
    feed("sales", "late", Contribution(answered=(start + 5 * MIN, 90 * S, S)))
    assert stage.figures("sales", "i", start).longest_wait_ms == 90 * S
    assert len(stage.close_due("sales", start + INTERVAL + GRACE + MIN)) == 1
    stage.sweep(start + 2 * MIN + RETENTION)  # the horizon two minutes into the interval
    feed("sales", "late", EMPTY)  # a correction withdraws the answer
    assert stage.figures("sales", "i", start).longest_wait_ms == 40 * S
    [(_, record)] = stage.close_due("sales", start + INTERVAL + GRACE + MIN)
    assert record["longest_wait_seconds"] == 40


def test_a_forgotten_call_with_a_fact_after_the_horizon_adds_only_that_fact() -> None:
    """A call whose answer is before the sweep's horizon, and whose wrap-up ends after it (a
    handle time of days): the interval of its answer keeps counting it once."""
    stage = make()
    feed = Feeder(stage)
    feed("sales", "long", Contribution(answered=(T0 + MIN, 2 * S, S)))
    horizon = T0 + 3 * DAY
    stage.sweep(horizon + RETENTION)
    feed("sales", "long", Contribution(answered=(T0 + MIN, 2 * S, S), handled=(horizon, 60 * S)))
    assert stage.figures("sales", "i", T0) == figs(
        answered=1, within=1, answer_s=2, wait_s=1, longest_s=2
    )
    assert stage.figures("sales", "i", horizon) == figs(handled=1, handle_s=60)


# -- properties ---------------------------------------------------------------------------------

QUEUES = ("sales", "vip")
_ts = st.integers(T0 - 20 * MIN, T0 + 70 * MIN)
_span = st.one_of(
    st.sampled_from([0, 3 * S, 5 * S, 10 * S, 20 * S, 48 * S]), st.integers(-2 * S, 400 * S)
)
contributions: st.SearchStrategy[Contribution] = st.one_of(
    st.just(EMPTY),
    st.builds(
        Contribution,
        answered=st.none() | st.tuples(_ts, _span, _span),
        abandoned=st.none() | st.tuples(_ts, _span),
        flowed_out=st.lists(_ts, max_size=2).map(lambda x: tuple(sorted(x))),
        handled=st.none() | st.tuples(_ts, _span),
        waiting_since=st.none() | _ts,
    ),
)


def expected_facts(c: Contribution, sla: QueueSla) -> list[tuple[int, Figures]]:
    """Contract §3 per call, restated independently of figures.contribution_facts."""
    out: list[tuple[int, Figures]] = []
    if c.answered is not None:
        ts, speed, wait = c.answered[0], max(0, c.answered[1]), max(0, c.answered[2])
        within = int(speed <= sla.service_level_seconds * 1000)
        out.append((ts, Figures(1, within, speed, wait, longest_wait_ms=speed)))
    if c.abandoned is not None:
        ts, waited = c.abandoned[0], max(0, c.abandoned[1])
        short = int(waited < sla.short_abandon_seconds * 1000)
        out.append((ts, Figures(abandoned=1, short_abandoned=short, longest_wait_ms=waited)))
    out.extend((ts, Figures(flowed_out=1)) for ts in c.flowed_out)
    if c.handled is not None:
        out.append((c.handled[0], Figures(handled=1, handle_ms_sum=max(0, c.handled[1]))))
    return out


def expected_buckets(
    finals: dict[tuple[str, str], Contribution], sla: SlaConfig, interval: int = INTERVAL
) -> dict[str, Figures]:
    out: dict[str, Figures] = {}
    for (queue, _), contribution in finals.items():
        for ts, figures in expected_facts(contribution, sla.for_queue(queue)):
            for kind, size in (("i", interval), ("m", MIN)):
                key = bucket_key(queue, kind, ts - ts % size)
                out.setdefault(key, Figures()).add(figures)
    return {k: v for k, v in out.items() if not v.is_zero()}


def total_in(facts: Iterable[tuple[int, Figures]], lo: int, hi: int) -> Figures:
    """The facts with lo <= ts < hi, added up."""
    out = Figures()
    for ts, figures in facts:
        if lo <= ts < hi:
            out.add(figures)
    return out


Record = tuple[str, str, Contribution, int]
R = TypeVar("R")


@st.composite
def histories(draw: st.DrawFn) -> dict[tuple[str, str], list[Contribution]]:
    """Per (queue, call): the contributions the calls stage sent, in order; the last is final."""
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(QUEUES), st.sampled_from(["c1", "c2", "c3", "c4", "c5"])),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    return {pair: draw(st.lists(contributions, min_size=1, max_size=4)) for pair in pairs}


def schedule(
    history: dict[tuple[str, str], list[Contribution]], data: st.DataObject
) -> list[Record | int]:
    """An arrival order: each pair's contributions in order, interleaved with identical resends
    (new offsets) and replays (an int: re-apply every record from that index on)."""
    remaining = {pair: list(versions) for pair, versions in history.items()}
    last: dict[tuple[str, str], Contribution] = {}
    steps: list[Record | int] = []
    records = 0
    offset = 0
    while remaining:
        action = data.draw(st.sampled_from(["next", "next", "next", "resend", "replay"]))
        if action == "replay" and records:
            steps.append(data.draw(st.integers(0, records - 1)))
            continue
        if action == "resend" and last:
            pair = data.draw(st.sampled_from(sorted(last)))
            contribution = last[pair]
        else:
            pair = data.draw(st.sampled_from(sorted(remaining)))
            contribution = remaining[pair].pop(0)
            if not remaining[pair]:
                del remaining[pair]
            last[pair] = contribution
        offset += data.draw(st.integers(1, 3))
        steps.append((pair[0], pair[1], contribution, offset))
        records += 1
    return steps


def run(stage: QueueStage, steps: Sequence[Record | int]) -> None:
    done: list[Record] = []
    for step in steps:
        if isinstance(step, int):
            for record in done[step:]:
                stage.apply(*record)
        else:
            stage.apply(*step)
            done.append(step)


def check_final(stage: QueueStage, history: dict[tuple[str, str], list[Contribution]]) -> None:
    finals = {pair: versions[-1] for pair, versions in history.items()}
    store = store_of(stage)
    assert nonzero_buckets(store) == expected_buckets(finals, SLA)
    for queue in QUEUES:
        assert stage.waiting(queue) == {
            call_id: c.waiting_since
            for (q, call_id), c in finals.items()
            if q == queue and c.waiting_since is not None
        }
    stored = {k for k, _ in store.items() if k.startswith("c" + SEP)}
    assert stored == {contrib_key(q, c) for (q, c), x in finals.items() if not x.is_empty()}


@settings(max_examples=150, deadline=None)
@given(histories(), st.data())
def test_any_order_with_duplicates_and_corrections_gives_the_final_contributions_figures(
    history: dict[tuple[str, str], list[Contribution]], data: st.DataObject
) -> None:
    stage = make()
    run(stage, schedule(history, data))
    check_final(stage, history)


def check_crashes_and_replays(
    history: dict[tuple[str, str], list[Contribution]],
    records: Sequence[R],
    apply: Callable[[QueueStage, R], object],
    data: st.DataObject,
    max_writes: int,
) -> None:
    """Apply `records` with up to three crashes (a record cut after any of its writes, then a
    restart from an earlier committed record): the figures and the store of a clean run."""
    clean = make()
    for record in records:
        apply(clean, record)
    store = DictStore()
    stage = make(store)
    position = 0
    for _ in range(data.draw(st.integers(0, 3))):  # each crash: die, restart from a commit
        crash_at = data.draw(st.integers(position, len(records) - 1))
        for record in records[position:crash_at]:
            apply(stage, record)
        with contextlib.suppress(Crash):
            crashing = make(CrashingStore(store, data.draw(st.integers(0, max_writes))))
            apply(crashing, records[crash_at])
        stage = make(store)  # the restarted worker: nothing of the dead one's memory
        position = data.draw(st.integers(0, crash_at))  # the committed offset
    for record in records[position:]:
        apply(stage, record)
    check_final(stage, history)
    assert without_meta(store) == without_meta(store_of(clean))
    for queue in QUEUES:
        assert stage.waiting(queue) == clean.waiting(queue)


@settings(max_examples=100, deadline=None)
@given(histories(), st.data())
def test_crashes_mid_record_and_replays_from_an_earlier_offset_give_the_same_figures(
    history: dict[tuple[str, str], list[Contribution]], data: st.DataObject
) -> None:
    records = [s for s in schedule(history, data) if not isinstance(s, int)]
    check_crashes_and_replays(history, records, lambda stage, r: stage.apply(*r), data, 12)


@settings(max_examples=150, deadline=None)
@given(histories(), st.data())
def test_records_redone_after_a_sweep_change_nothing(
    history: dict[tuple[str, str], list[Contribution]], data: st.DataObject
) -> None:
    """A calls partition's new owner redoes its records from its last checkpoint, and sends
    their contributions again (new records: new offsets), after the sweeps went by the clock
    it had announced: every bucket stays as the sweep left it, none comes back."""
    records = [s for s in schedule(history, data) if not isinstance(s, int)]
    stage = make()
    for record in records:
        stage.apply(*record)
    if data.draw(st.booleans()):
        stage.close_due("sales", T0 + 10 * DAY)
        stage.close_due("vip", T0 + 10 * DAY)
    horizon = data.draw(
        st.integers(T0 - 20 * MIN, T0 + 70 * MIN) | _ts.map(lambda t: t // MIN * MIN)
    )
    stage.sweep(horizon + RETENTION)
    swept = nonzero_buckets(store_of(stage))
    offset = records[-1][3]
    for queue, call_id, contribution, _ in records[data.draw(st.integers(0, len(records) - 1)) :]:
        offset += 1
        stage.apply(queue, call_id, contribution, offset)
    assert nonzero_buckets(store_of(stage)) == swept


ZONE_DAYS: list[tuple[str, str, int]] = [
    ("UTC", "2026-03-02", INTERVAL),
    ("Asia/Kolkata", "2026-03-02", INTERVAL),  # midnight at 18:30 UTC
    ("Asia/Kolkata", "2026-03-02", HOUR),  # intervals straddle local midnight
    ("Europe/Paris", "2026-03-29", INTERVAL),  # 23 hours
    ("Europe/Paris", "2026-10-25", INTERVAL),  # 25 hours
    ("America/St_Johns", "2026-11-01", 30 * MIN),  # -02:30 falls back to -03:30: 25 hours
]


@st.composite
def day_scenarios(draw: st.DrawFn) -> tuple[WindowConfig, list[list[Contribution]], int]:
    zone_name, day, interval = draw(st.sampled_from(ZONE_DAYS))
    zone = ZoneInfo(zone_name)
    noon = int(datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=zone).timestamp() * 1000)
    first, last = day_start(noon, zone), day_end(noon, zone)
    near = st.sampled_from([first, last]).flatmap(
        lambda edge: st.integers(edge - 3 * MIN, edge + 3 * MIN)
    )
    ts = st.one_of(st.integers(first - 2 * HOUR, last + 2 * HOUR), near)
    call = st.builds(
        Contribution,
        answered=st.none() | st.tuples(ts, _span, _span),
        abandoned=st.none() | st.tuples(ts, _span),
        flowed_out=st.lists(ts, max_size=2).map(lambda x: tuple(sorted(x))),
        handled=st.none() | st.tuples(ts, _span),
        waiting_since=st.none(),  # a named tuple: builds() would fill it in otherwise
    )
    calls = draw(st.lists(st.lists(call, min_size=1, max_size=3), max_size=8))
    now = draw(st.one_of(ts, near))
    windows = WindowConfig(interval_ms=interval, grace_ms=GRACE, retention_ms=RETENTION, zone=zone)
    return windows, calls, now


@settings(max_examples=150, deadline=None)
@given(day_scenarios())
def test_rolling_windows_and_today_are_sums_of_their_buckets(
    scenario: tuple[WindowConfig, list[list[Contribution]], int],
) -> None:
    windows, calls, now = scenario
    stage = make(windows=windows)
    feed = Feeder(stage)
    for n, versions in enumerate(calls):
        for contribution in versions:
            feed("vip", f"c{n}", contribution)
    facts = [fact for versions in calls for fact in expected_facts(versions[-1], VIP)]
    minute = now - now % MIN
    for name, size in (("15m", 15 * MIN), ("1h", HOUR)):
        got = stage.window("vip", name, now)
        assert got == total_in(facts, minute + MIN - size, minute + MIN)
        minutes = Figures()
        for start in range(minute + MIN - size, minute + MIN, MIN):
            minutes.add(stage.figures("vip", "m", start))
        assert got == minutes
    first, last = day_start(now, windows.zone), day_end(now, windows.zone)
    today = stage.window("vip", "today", now)
    assert today == total_in(facts, first, last)
    if first % windows.interval_ms == 0 and last % windows.interval_ms == 0:
        intervals = Figures()
        for start in range(first, last, windows.interval_ms):
            intervals.add(stage.figures("vip", "i", start))
        assert today == intervals
    start = now - now % windows.interval_ms
    assert stage.window("vip", "interval", now) == total_in(
        facts, start, start + windows.interval_ms
    )


def test_today_in_kolkata_starts_at_local_midnight() -> None:
    zone = ZoneInfo("Asia/Kolkata")
    midnight = int(datetime(2026, 3, 3, tzinfo=zone).timestamp() * 1000)  # 2026-03-02 18:30Z
    for interval in (INTERVAL, HOUR):
        stage = make(windows=WindowConfig(interval_ms=interval, zone=zone))
        feed = Feeder(stage)
        feed("sales", "before", Contribution(answered=(midnight - 1, S, S)))
        feed("sales", "after", Contribution(answered=(midnight, 2 * S, S)))
        feed("sales", "later", Contribution(abandoned=(midnight + 29 * MIN, 9 * S)))
        assert stage.window("sales", "today", midnight - 1) == figs(
            answered=1, within=1, answer_s=1, wait_s=1, longest_s=1
        )
        assert stage.window("sales", "today", midnight + HOUR) == figs(
            answered=1, within=1, answer_s=2, wait_s=1, abandoned=1, longest_s=9
        )


def test_today_on_the_paris_spring_forward_day_lasts_23_hours() -> None:
    zone = ZoneInfo("Europe/Paris")
    first = int(datetime(2026, 3, 28, 23, 0, tzinfo=UTC).timestamp() * 1000)
    last = first + 23 * HOUR
    stage = make(windows=WindowConfig(zone=zone))
    feed = Feeder(stage)
    for n, ts in enumerate((first - 1, first, last - 1, last)):
        feed("sales", f"c{n}", Contribution(flowed_out=(ts,)))
    assert stage.window("sales", "today", first + 12 * HOUR).flowed_out == 2
    assert stage.window("sales", "today", last).flowed_out == 1


class RefusingStore(DictStore):
    """Refuses one write (the `refuse_at`-th from now, from 0), as a full buffer or a closed
    database would, then takes every later one."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse_at: int | None = None

    def _check(self) -> None:
        if self.refuse_at is not None:
            self.refuse_at -= 1
            if self.refuse_at < 0:
                self.refuse_at = None
                raise Crash

    def set(self, key: str, value: Any) -> None:
        self._check()
        super().set(key, value)

    def delete(self, key: str) -> None:
        self._check()
        super().delete(key)


@settings(max_examples=100, deadline=None)
@given(histories(), st.data())
def test_a_write_refused_mid_record_then_the_record_retried_by_the_same_stage_gives_the_same_figures(
    history: dict[tuple[str, str], list[Contribution]], data: st.DataObject
) -> None:
    """The stage keeps each queue's meta decoded: a record cut by a refused write must not leave
    it ahead of the table (the retry would then take the record as applied)."""
    records = [s for s in schedule(history, data) if not isinstance(s, int)]
    clean = make()
    for record in records:
        clean.apply(*record)
    store = RefusingStore()
    stage = make(store)
    for record in records:
        store.refuse_at = data.draw(st.integers(0, 12))
        with contextlib.suppress(Crash):
            stage.apply(*record)
        store.refuse_at = None
        stage.apply(*record)
    check_final(stage, history)
    assert store.snapshot() == store_of(clean).snapshot()
    for queue in QUEUES:
        assert stage.waiting(queue) == clean.waiting(queue)
