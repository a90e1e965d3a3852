"""The calls stage: one input record in, what to send out. Rejections, re-keying, lateness by
the partition's own stream time, duplicates, retiring calls; then end to end in memory
(events as JSON bytes → CallsStage → QueueStage) against hand-computed interval figures, and
a property: any arrival order, with duplicates, gives the same final figures.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.agent_activity import AgentCall, agent_calls
from stream_app.domain.agents_stage import AgentPending
from stream_app.domain.calls import CallState, Emission
from stream_app.domain.calls_stage import FINISHED_KEPT, CallsStage, Outcome
from stream_app.domain.clock import PARTITION_TIME_KEY, EventClock
from stream_app.domain.events import REJECT_REASONS, format_ts
from stream_app.domain.figures import Figures, interval_key
from stream_app.domain.model import EMPTY, Contribution
from stream_app.domain.queues import SEP, QueueStage, Store, WindowConfig
from stream_app.domain.sla import SlaConfig
from tests.unit.dict_store import DictStore, PartitionedStore
from tests.unit.test_calls import arrivals, call_event_sets

S = 1000
MIN = 60 * S
HOUR = 60 * MIN
T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp() * 1000)
WALL = T0 + 30 * 24 * HOUR  # a replay: the wall clock is far ahead of every event
RETENTION = 48 * HOUR
TTL = 6 * HOUR
MAX_BYTES = 1024


def at(seconds: float) -> int:
    return T0 + round(seconds * S)


def make(store: Store | None = None, clock: EventClock | None = None) -> CallsStage:
    return CallsStage(
        store if store is not None else DictStore(),
        SlaConfig(),
        clock if clock is not None else EventClock(),
        max_event_bytes=MAX_BYTES,
        retention_ms=RETENTION,
        call_ttl_ms=TTL,
    )


def store_of(stage: CallsStage) -> DictStore:
    assert isinstance(stage.store, DictStore)
    return stage.store


_ids = itertools.count()


def record(
    type_: str,
    ts: int | str,
    *,
    call: str = "c1",
    eid: str | None = None,
    **fields: Any,
) -> tuple[bytes, bytes]:
    """(key, value) of one call-events record, keyed by its call_id."""
    value = {
        "event_id": eid if eid is not None else f"e{next(_ids)}",
        "call_id": call,
        "type": type_,
        "ts": ts,
    }
    value.update(fields)
    return call.encode(), orjson.dumps(value)


def process(stage: CallsStage, rec: tuple[bytes, bytes], partition: int = 0) -> Outcome:
    return stage.process(rec[0], rec[1], WALL, partition)


# -- rejections ---------------------------------------------------------------------------------


def _value(**fields: Any) -> bytes:
    base: dict[str, Any] = {"event_id": "e1", "call_id": "c1", "type": "call_started", "ts": T0}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


REJECTS: dict[str, bytes | None] = {
    "oversized": _value(tenant="x" * MAX_BYTES),
    "invalid_json": b'{"event_id": "e1",',
    "not_an_object": b'["e1", "c1"]',
    "missing_field": _value(event_id=None),
    "invalid_field": _value(call_id=42),
    "unknown_type": _value(type="call_transferred"),
    "invalid_timestamp": _value(ts="2026-03-02T10:00:00"),  # no offset
    "future_timestamp": _value(ts=WALL + 5 * MIN + 1),
    "missing_queue": _value(type="queue_entered"),
    "missing_agent": _value(type="call_answered", queue="sales"),
}


def test_the_rejects_cover_every_reason_of_parsing() -> None:
    assert set(REJECTS) == REJECT_REASONS - {"late", "too_many_queues"}


@pytest.mark.parametrize("reason", sorted(REJECTS))
def test_a_record_that_does_not_parse_is_rejected_with_its_reason_and_changes_nothing(
    reason: str,
) -> None:
    clock = EventClock()
    stage = make(clock=clock)
    outcome = stage.process(b"c1", REJECTS[reason], WALL, 0)
    assert outcome.reject == reason
    assert outcome.detail
    assert (outcome.event, outcome.emission, outcome.rekey) == (None, None, None)
    assert not outcome.late and not outcome.duplicate
    assert store_of(stage).snapshot() == {}
    assert stage.stream_time(0) is None
    assert clock.newest is None


def test_a_queue_beyond_the_limit_is_rejected_and_changes_nothing() -> None:
    admitted: set[str] = {"sales"}
    stage = CallsStage(
        DictStore(),
        SlaConfig(),
        EventClock(),
        max_event_bytes=MAX_BYTES,
        retention_ms=RETENTION,
        call_ttl_ms=TTL,
        admit_queue=lambda queue: queue in admitted,
    )
    outcome = process(stage, record("queue_entered", at(0), call="c1", queue="support"))
    assert outcome.reject == "too_many_queues"
    assert outcome.detail and outcome.emission is None
    assert store_of(stage).snapshot() == {}
    for type_, fields in (("call_started", {}), ("queue_entered", {"queue": "sales"})):
        assert process(stage, record(type_, at(1), call="c2", **fields)).reject is None


def test_a_record_without_a_value_is_invalid_json() -> None:
    stage = make()
    assert stage.process(b"c1", None, WALL, 0).reject == "invalid_json"
    assert store_of(stage).snapshot() == {}


def test_the_future_is_measured_from_the_wall_clock() -> None:
    stage = make()
    assert process(stage, record("call_started", WALL + 5 * MIN)).reject is None
    assert process(stage, record("call_started", WALL + 5 * MIN + 1)).reject == ("future_timestamp")


@pytest.mark.parametrize("key", [None, b"c2", b"", b"C1", b"c1 "])
def test_a_record_keyed_other_than_by_its_call_id_is_rekeyed_untouched(key: bytes | None) -> None:
    clock = EventClock()
    stage = make(clock=clock)
    _, value = record("queue_entered", at(10), queue="sales")
    outcome = stage.process(key, value, WALL, 0)
    assert outcome.rekey == "c1"
    assert outcome.event is not None and outcome.event.call_id == "c1"
    assert (outcome.reject, outcome.emission, outcome.duplicate) == (None, None, False)
    assert store_of(stage).snapshot() == {}
    assert stage.stream_time(0) is None
    assert clock.newest is None
    # Under its own key the same record is processed.
    assert stage.process(b"c1", value, WALL, 0).emission is not None


# -- lateness and stream time -------------------------------------------------------------------


def test_an_event_older_than_the_partitions_stream_time_minus_retention_is_late() -> None:
    stage = make()
    newest = at(3600)
    process(stage, record("call_started", newest, call="a"))
    assert stage.stream_time(0) == newest
    edge = process(stage, record("queue_entered", newest - RETENTION, call="b", queue="sales"))
    assert (edge.reject, edge.late) == (None, False)
    assert edge.emission is not None
    before = store_of(stage).snapshot()
    late = process(stage, record("queue_entered", newest - RETENTION - 1, call="c", queue="s"))
    assert (late.reject, late.late) == ("late", True)
    assert late.event is not None and late.event.call_id == "c"
    assert late.emission is None
    assert store_of(stage).snapshot() == before
    assert stage.stream_time(0) == newest  # older events never move it back


def test_lateness_is_judged_per_partition() -> None:
    clock = EventClock()
    stage = make(clock=clock)
    far_ahead = at(10 * 24 * 3600)
    process(stage, record("call_started", far_ahead, call="fast"), partition=0)
    slow = process(stage, record("queue_entered", at(0), call="slow", queue="sales"), partition=1)
    assert slow.reject is None
    assert slow.emission is not None
    assert slow.emission.contributions == {"sales": Contribution(waiting_since=at(0))}
    assert (stage.stream_time(0), stage.stream_time(1)) == (far_ahead, at(0))
    assert clock.newest == far_ahead  # the worker's stream time is still the newest
    # On partition 0 the same old time is late.
    assert process(stage, record("call_started", at(0), call="x"), partition=0).reject == "late"


def test_the_partition_stream_time_survives_a_restart_once_saved() -> None:
    store = DictStore()
    stage = make(store)
    process(stage, record("call_started", at(3600)))
    old = record("call_started", at(3600) - RETENTION - 1, call="old")
    assert make(store).stream_time(0) is None  # not saved yet: a restart forgets it
    assert process(make(store), old).reject is None
    writes = store.writes
    stage.save_stream_time(0)
    stage.save_stream_time(0)  # unchanged: no second write
    assert store.writes == writes + 1
    restarted = make(store)
    assert restarted.stream_time(0) == at(3600)
    assert process(restarted, record("call_started", at(3600) - RETENTION - 1, call="old2")).late
    make(store).save_stream_time(0)  # nothing seen: nothing written
    assert EventClock.from_json(store.get(PARTITION_TIME_KEY)).newest == at(3600)


def test_forgetting_a_revoked_partition_restores_its_saved_stream_time() -> None:
    stage = make()
    process(stage, record("call_started", at(100)))
    stage.save_stream_time(0)
    process(stage, record("call_started", at(200), call="c2"))
    stage.forget_partition(0)
    assert stage.stream_time(0) == at(100)


def test_each_partition_gets_its_own_stream_time_back_after_a_restart() -> None:
    store = PartitionedStore()  # like the Faust table: each partition its own keys
    stage = make(store)
    for partition, ts in ((0, at(10 * 24 * 3600)), (1, at(0))):
        store.current = partition
        assert (
            process(stage, record("call_started", ts, call=f"p{partition}"), partition).reject
            is None
        )
        stage.save_stream_time(partition)
    restarted = make(store)
    store.current = 1
    assert restarted.stream_time(1) == at(0)
    assert (
        process(restarted, record("queue_entered", at(60), call="s", queue="q"), 1).reject is None
    )
    store.current = 0
    assert restarted.stream_time(0) == at(10 * 24 * 3600)


# -- duplicates ---------------------------------------------------------------------------------


def test_a_duplicate_resends_everything_last_sent_and_changes_nothing() -> None:
    stage = make()
    started = record("call_started", at(0))
    first = process(stage, started)
    assert first.emission == Emission({}, None)  # nothing known yet
    assert process(stage, started) == Outcome(
        event=first.event, duplicate=True, emission=Emission({}, None)
    )
    entered = record("queue_entered", at(10), queue="sales")
    answered = record("call_answered", at(25), queue="sales", agent_id="a1")
    ended = record("call_ended", at(100))
    for rec in (entered, answered, ended):
        outcome = process(stage, rec)
        assert outcome.reject is None and not outcome.duplicate
    snapshot = store_of(stage).snapshot()
    writes = store_of(stage).writes
    again = process(stage, entered)  # the oldest event, once more
    assert again.duplicate
    assert again.reject is None
    assert again.emission is not None
    assert again.emission.contributions == {
        "sales": Contribution(answered=(at(25), 15 * S, 15 * S))
    }
    assert again.emission.outcome is not None
    assert again.emission.outcome["outcome"] == "answered"
    assert again.emission.outcome["answer_seconds"] == 15.0
    assert (store_of(stage).snapshot(), store_of(stage).writes) == (snapshot, writes)


def test_a_duplicate_resends_a_withdrawal() -> None:
    stage = make()
    process(stage, record("queue_entered", at(10), queue="sales"))
    transfer = record("queue_entered", at(20), queue="vip")
    outcome = process(stage, transfer)
    expected = Emission({"sales": EMPTY, "vip": Contribution(waiting_since=at(20))}, None)
    assert outcome.emission == expected
    again = process(stage, transfer)
    assert again.duplicate
    assert again.emission == expected


# -- retiring calls -----------------------------------------------------------------------------


class Partition:
    """Moves a partition's stream time on with events of a call that never ends."""

    def __init__(self, stage: CallsStage) -> None:
        self.stage = stage

    def advance_to(self, ts: int) -> None:
        outcome = process(self.stage, record("call_started", ts, call="ticker"))
        assert outcome.reject is None
        assert (self.stage.stream_time(0) or 0) >= ts


def tombstoned(stage: CallsStage, call_id: str) -> bool:
    stored = store_of(stage).get(call_id)
    return stored is not None and CallState.from_json(stored).tombstoned


def test_a_finished_call_stays_whole_through_the_retention_then_is_forgotten() -> None:
    stage = make()
    ticker = Partition(stage)
    ended = at(300)
    events = [
        record("call_started", at(0)),
        record("queue_entered", at(10), queue="sales"),
        record("call_answered", at(20), agent_id="a1"),
        record("call_ended", ended),
    ]
    for rec in events:
        process(stage, rec)
    ticker.advance_to(ended + RETENTION - 1000)
    swept = stage.sweep(0)
    assert (swept.evicted, swept.deleted) == (0, 0)
    assert not tombstoned(stage, "c1")
    # A late wrap-up inside the retention still counts: the call is whole.
    late = process(stage, record("wrapup_ended", ended + 1000))
    assert late.reject is None and late.emission is not None
    assert late.emission.outcome is not None and late.emission.outcome["handle_seconds"] == 281.0
    # Past the retention of its newest event, the call goes.
    ticker.advance_to(ended + 1000 + RETENTION + 1)
    assert stage.sweep(0).deleted == 1
    assert store_of(stage).get("c1") is None


def test_a_retry_of_a_late_event_for_an_evicted_call_is_a_duplicate() -> None:
    stage = make()
    process(stage, record("queue_entered", at(0), queue="sales"))
    Partition(stage).advance_to(at(0) + TTL + 1)
    assert stage.sweep(0).evicted == 1
    assert tombstoned(stage, "c1")
    late = record("call_answered", at(120), agent_id="a1")
    outcome = process(stage, late)
    assert (outcome.reject, outcome.late) == ("late", True)
    assert "retired" in outcome.detail
    retry = process(stage, late)
    assert (retry.reject, retry.duplicate) == (None, True)


def test_a_silent_unfinished_call_is_evicted_after_the_ttl_withdrawing_its_waiting() -> None:
    stage = make()
    queues = QueueStage(DictStore(), WindowConfig(), SlaConfig())
    offsets = itertools.count(1)

    def send(call_id: str, emission: Emission | None) -> None:
        assert emission is not None
        for queue, contribution in emission.contributions.items():
            queues.apply(queue, call_id, contribution, next(offsets))

    send("w", process(stage, record("queue_entered", at(0), call="w", queue="sales")).emission)
    send("x", process(stage, record("queue_entered", at(5), call="x", queue="sales")).emission)
    send("x", process(stage, record("call_answered", at(9), call="x", agent_id="a")).emission)
    assert queues.waiting("sales") == {"w": at(0)}
    ticker = Partition(stage)
    ticker.advance_to(at(0) + TTL)
    assert stage.sweep(0).evicted == 0
    ticker.advance_to(at(9) + TTL + 1)
    swept = stage.sweep(0)
    assert (swept.evicted, swept.deleted) == (2, 0)
    assert dict(swept.emissions) == {
        "w": Emission({"sales": EMPTY}, None),
        "x": Emission({}, None),  # answered, not waiting: its figures stay
    }
    for call_id, emission in swept.emissions:
        send(call_id, emission)
    assert queues.waiting("sales") == {}
    assert queues.figures("sales", "i", T0).answered == 1
    assert tombstoned(stage, "w") and tombstoned(stage, "x")
    late = process(stage, record("call_abandoned", at(60), call="w"))
    assert (late.reject, late.late) == ("late", True)
    assert stage.sweep(0).evicted == 0


def test_a_sweep_before_any_event_does_nothing_and_skips_the_saved_stream_time() -> None:
    stage = make()
    swept = stage.sweep(0)
    assert (swept.evicted, swept.deleted, swept.emissions) == (0, 0, [])
    process(stage, record("call_started", at(0)))
    stage.save_stream_time(0)
    process(stage, record("call_started", at(0) + TTL + 1, call="c2"))
    assert stage.sweep(0).evicted == 1
    assert EventClock.from_json(store_of(stage).get(PARTITION_TIME_KEY)).newest == at(0)


@pytest.mark.parametrize("saved_first", [True, False])
def test_a_call_id_equal_to_the_partition_time_key_does_not_break_the_partition(
    saved_first: bool,
) -> None:
    store = DictStore()
    stage = make(store)
    process(stage, record("call_started", at(0)))
    if saved_first:
        stage.save_stream_time(0)
    poison = record("queue_entered", at(10), call=PARTITION_TIME_KEY, queue="sales")
    process(stage, poison)  # rejected or processed, but no exception
    restarted = make(store)
    assert restarted.stream_time(0) in (None, at(0), at(10))
    assert process(restarted, record("call_ended", at(20))).reject is None
    restarted.sweep(0)


# -- end to end in memory -----------------------------------------------------------------------


def t(minute: int, second: int = 0) -> str:
    """An RFC 3339 ts at 10:mm:ss UTC, as a producer sends it."""
    return format_ts(T0 + minute * MIN + second * S)


# A morning's calls, in the order they happened. Spans by contract §2.
CALLS: list[tuple[bytes, bytes]] = [
    # A: IVR 30 s, queued 10:00:31, offered 10:00:40, answered 10:00:45 → answer speed 15 s
    # (from ivr_ended), queue wait 9 s (entry to offer); handle 10:00:45..10:06:00 = 315 s.
    record("call_started", t(0, 0), call="A", eid="A1"),
    record("ivr_ended", t(0, 30), call="A", eid="A2"),
    record("queue_entered", t(0, 31), call="A", eid="A3", queue="sales"),
    record("agent_offered", t(0, 40), call="A", eid="A4", agent_id="a1"),
    record("call_answered", t(0, 45), call="A", eid="A5", agent_id="a1"),
    record("call_ended", t(5, 0), call="A", eid="A6"),
    record("wrapup_ended", t(6, 0), call="A", eid="A7"),
    # B: hangs up 3 s after queueing: a short abandon.
    record("call_started", t(1, 0), call="B", eid="B1"),
    record("ivr_ended", t(1, 20), call="B", eid="B2"),
    record("queue_entered", t(1, 20), call="B", eid="B3", queue="sales"),
    record("call_abandoned", t(1, 23), call="B", eid="B4", queue="sales"),
    record("call_ended", t(1, 23), call="B", eid="B5"),
    # C: no IVR; ends unanswered 60 s after queueing: abandoned by call_ended.
    record("call_started", t(2, 0), call="C", eid="C1"),
    record("queue_entered", t(2, 10), call="C", eid="C2", queue="sales"),
    record("call_ended", t(3, 10), call="C", eid="C3"),
    # D: flows out of sales (10:04:00) into support; answered there 10:04:31: answer speed
    # 81 s (from ivr_ended 10:03:10), queue wait 24 s (support entry to offer), handle 389 s.
    record("call_started", t(3, 0), call="D", eid="D1"),
    record("ivr_ended", t(3, 10), call="D", eid="D2"),
    record("queue_entered", t(3, 12), call="D", eid="D3", queue="sales"),
    record("queue_left", t(4, 0), call="D", eid="D4", queue="sales", reason="overflow"),
    record("queue_entered", t(4, 1), call="D", eid="D5", queue="support"),
    record("agent_offered", t(4, 25), call="D", eid="D6", agent_id="a2"),
    record("call_answered", t(4, 31), call="D", eid="D7", agent_id="a2"),
    record("call_ended", t(10, 0), call="D", eid="D8"),
    record("wrapup_ended", t(11, 0), call="D", eid="D9"),
    # E: self-service in the IVR: in no queue's figures.
    record("call_started", t(5, 0), call="E", eid="E1"),
    record("call_ended", t(6, 0), call="E", eid="E2"),
    # H: answered without queueing, in the queue named on call_started: speed 5 s, wait 0,
    # handle 115 s.
    record("call_started", T0 + 7 * MIN, call="H", eid="H1", queue="support"),
    record("call_answered", T0 + 7 * MIN + 5 * S, call="H", eid="H2", agent_id="a4"),
    record("call_ended", T0 + 8 * MIN, call="H", eid="H3"),
    record("wrapup_ended", T0 + 9 * MIN, call="H", eid="H4"),
    # F: waits 240 s, answered 10:16:10 (the next interval), handle 290 s ending 10:21.
    record("call_started", t(12, 0), call="F", eid="F1"),
    record("ivr_ended", t(12, 10), call="F", eid="F2"),
    record("queue_entered", t(12, 10), call="F", eid="F3", queue="sales"),
    record("call_answered", t(16, 10), call="F", eid="F4", agent_id="a3"),
    record("call_ended", t(20, 0), call="F", eid="F5"),
    record("wrapup_ended", t(21, 0), call="F", eid="F6"),
    # G: still waiting in sales since 10:13:30.
    record("call_started", t(13, 0), call="G", eid="G1"),
    record("queue_entered", t(13, 30), call="G", eid="G2", queue="sales"),
]


SALES_10_00 = Figures(
    answered=1,
    answered_within_threshold=1,
    answer_ms_sum=15 * S,
    queue_wait_ms_sum=9 * S,
    abandoned=2,
    short_abandoned=1,
    flowed_out=1,
    handled=1,
    handle_ms_sum=315 * S,
    longest_wait_ms=60 * S,
)
SUPPORT_10_00 = Figures(
    answered=2,
    answered_within_threshold=1,
    answer_ms_sum=86 * S,
    queue_wait_ms_sum=24 * S,
    handled=2,
    handle_ms_sum=504 * S,
    longest_wait_ms=81 * S,
)
SALES_10_15 = Figures(
    answered=1,
    answer_ms_sum=240 * S,
    queue_wait_ms_sum=240 * S,
    handled=1,
    handle_ms_sum=290 * S,
    longest_wait_ms=240 * S,
)


class Pipeline:
    """CallsStage → queue-updates (one partition, offsets counting up) → QueueStage."""

    def __init__(self) -> None:
        self.calls = make()
        self.queues = QueueStage(DictStore(), WindowConfig(), SlaConfig())
        self.offset = 0
        self.outcomes: dict[str, dict[str, object]] = {}

    def feed(self, rec: tuple[bytes, bytes]) -> Outcome:
        outcome = self.calls.process(rec[0], rec[1], WALL, 0)
        assert outcome.reject is None and outcome.rekey is None
        assert outcome.event is not None and outcome.emission is not None
        for queue, contribution in outcome.emission.contributions.items():
            self.offset += 1
            self.queues.apply(queue, outcome.event.call_id, contribution, self.offset)
        if outcome.emission.outcome is not None:
            self.outcomes[outcome.event.call_id] = outcome.emission.outcome
        return outcome

    def buckets(self) -> dict[str, Figures]:
        store = self.queues.store
        assert isinstance(store, DictStore)
        out = {}
        for key, value in store.items():
            if key.startswith("b" + SEP) and not Figures.from_json(value[1]).is_zero():
                out[key] = Figures.from_json(value[1])
        return out


def test_a_morning_of_calls_end_to_end_gives_the_hand_computed_intervals() -> None:
    pipe = Pipeline()
    for rec in CALLS:
        pipe.feed(rec)
    queues = pipe.queues
    assert queues.figures("sales", "i", T0) == SALES_10_00
    assert queues.figures("support", "i", T0) == SUPPORT_10_00
    assert queues.figures("sales", "i", T0 + 15 * MIN) == SALES_10_15
    assert queues.figures("support", "i", T0 + 15 * MIN) == Figures()
    assert queues.waiting("sales") == {"G": at(13 * 60 + 30)}
    assert queues.waiting("support") == {}
    assert sorted(queues.queues()) == ["sales", "support"]
    now = pipe.calls.stream_time(0)
    assert now == at(21 * 60)
    published = dict(queues.close_due("sales", now)) | dict(queues.close_due("support", now))
    assert published == {
        interval_key("sales", T0): {
            "queue": "sales",
            "interval_start": "2026-03-02T10:00:00Z",
            "interval_end": "2026-03-02T10:15:00Z",
            "offered": 2,
            "answered": 1,
            "abandoned": 2,
            "short_abandoned": 1,
            "flowed_out": 1,
            "answered_within_threshold": 1,
            "service_level_seconds": 20,
            "asa_seconds": 15.0,
            "awt_seconds": 9.0,
            "aht_seconds": 315.0,
            "longest_wait_seconds": 60.0,
            "service_level": 0.5,
            "abandon_rate": 0.5,
            "occupancy": None,  # this pipeline has no agents stage
            "agents_staffed_avg": None,
            "revision": 0,
        },
        interval_key("support", T0): {
            "queue": "support",
            "interval_start": "2026-03-02T10:00:00Z",
            "interval_end": "2026-03-02T10:15:00Z",
            "offered": 2,
            "answered": 2,
            "abandoned": 0,
            "short_abandoned": 0,
            "flowed_out": 0,
            "answered_within_threshold": 1,
            "service_level_seconds": 20,
            "asa_seconds": 43.0,
            "awt_seconds": 12.0,
            "aht_seconds": 252.0,
            "longest_wait_seconds": 81.0,
            "service_level": 0.5,
            "abandon_rate": 0.0,
            "occupancy": None,  # this pipeline has no agents stage
            "agents_staffed_avg": None,
            "revision": 0,
        },
    }
    outcomes = {call: o["outcome"] for call, o in pipe.outcomes.items()}
    assert outcomes == {
        "A": "answered",
        "B": "short_abandoned",
        "C": "abandoned",
        "D": "answered",
        "E": "ivr_only",
        "F": "answered",
        "H": "answered",
    }
    assert pipe.outcomes["D"]["queue"] == "support"
    assert pipe.outcomes["A"]["handle_seconds"] == 315.0


def test_a_late_event_after_publication_revises_the_interval() -> None:
    pipe = Pipeline()
    for rec in CALLS:
        if rec[1] != CALLS[1][1]:  # A's ivr_ended arrives last
            pipe.feed(rec)
    now = pipe.calls.stream_time(0)
    assert now is not None
    [(_, first)] = pipe.queues.close_due("sales", now)
    # Without ivr_ended, A's line wait starts at its queue entry: 14 s instead of 15 s.
    assert (first["asa_seconds"], first["revision"]) == (14.0, 0)
    pipe.feed(CALLS[1])
    [(_, revised)] = pipe.queues.close_due("sales", now)
    assert (revised["asa_seconds"], revised["revision"]) == (15.0, 1)
    assert pipe.queues.figures("sales", "i", T0) == SALES_10_00


_baseline: dict[str, Any] = {}


def baseline() -> tuple[dict[str, Figures], dict[str, dict[str, int]]]:
    if not _baseline:
        pipe = Pipeline()
        for rec in CALLS:
            pipe.feed(rec)
        _baseline["buckets"] = pipe.buckets()
        _baseline["waiting"] = {q: pipe.queues.waiting(q) for q in ("sales", "support")}
    return _baseline["buckets"], _baseline["waiting"]


@settings(max_examples=60, deadline=None)
@given(
    st.permutations(range(len(CALLS))),
    st.lists(st.tuples(st.integers(0, len(CALLS) - 1), st.integers(0, len(CALLS))), max_size=12),
)
def test_any_arrival_order_with_duplicates_gives_the_same_final_figures(
    order: list[int], duplicates: list[tuple[int, int]]
) -> None:
    arrivals = [CALLS[i] for i in order]
    for index, position in duplicates:
        arrivals.insert(position, CALLS[index])
    pipe = Pipeline()
    for rec in arrivals:
        pipe.feed(rec)
    buckets, waiting = baseline()
    assert pipe.buckets() == buckets
    assert {q: pipe.queues.waiting(q) for q in ("sales", "support")} == waiting
    assert pipe.queues.figures("sales", "i", T0) == SALES_10_00


def test_sweeps_after_the_first_judge_each_call_by_its_latest_write() -> None:
    """The first sweep reads the partition's calls from the table, later ones from what each
    write left: a call extended after that sweep lives on from its newest event."""
    stage = make()
    ticker = Partition(stage)
    for call in ("long", "short"):
        process(stage, record("call_started", at(0), call=call))
        process(stage, record("call_ended", at(10), call=call))
    assert stage.sweep(0).deleted == 0  # the table read once here
    process(stage, record("wrapup_ended", at(10) + RETENTION // 2, call="long"))
    process(stage, record("call_started", at(20), call="silent"))
    ticker.advance_to(at(10) + RETENTION + 1)
    swept = stage.sweep(0)
    assert (swept.deleted, swept.evicted) == (1, 1)
    assert store_of(stage).get("short") is None and not tombstoned(stage, "long")
    assert tombstoned(stage, "silent")
    ticker.advance_to(at(10) + RETENTION // 2 + RETENTION + 1)
    assert stage.sweep(0).deleted == 2  # "long" past its newest event's retention, the tombstone
    assert store_of(stage).get("long") is None and store_of(stage).get("silent") is None


def meaning(outcome: Outcome) -> dict[str, AgentCall] | None:
    """What the call means to its agents as the record left it."""
    return None if outcome.for_agents is None else agent_calls(outcome.for_agents)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_calls_in_progress_kept_decoded_behave_as_read_from_the_table(data: st.DataObject) -> None:
    """A stage keeps the calls it has not seen finish decoded between their events; a stage
    made afresh on the same table before every record (a restart each time) reads them back:
    both give the same outcomes and write the same table, whatever the events' order, their
    retries, and the sweeps (evictions too) between them."""
    kept, fresh = make(), DictStore()

    def restarted() -> CallsStage:
        stage = make(fresh)
        clock = kept.clock_of(0)
        stage.clocks = {0: EventClock(clock.newest, clock.seen_at)}
        return stage

    def both(rec: tuple[bytes, bytes]) -> None:
        want, got = process(restarted(), rec), process(kept, rec)
        assert (got.emission, meaning(got), got.duplicate, got.late, got.reject) == (
            want.emission,
            meaning(want),
            want.duplicate,
            want.late,
            want.reject,
        )

    for event in data.draw(arrivals(data.draw(call_event_sets()))):
        fields = {"queue": event.queue, "agent_id": event.agent_id}
        given_fields = {k: v for k, v in fields.items() if v is not None}
        ts = format_ts(event.ts)
        both(record(event.type, ts, call=event.call_id, eid=event.event_id, **given_fields))
        if data.draw(st.booleans()):  # stream time moves on (past the TTL or not), a sweep
            both(record("call_started", event.ts + data.draw(st.sampled_from([0, TTL + 1]))))
            assert kept.sweep(0) == restarted().sweep(0)
        assert store_of(kept).data == fresh.data


def test_a_restarted_stage_sweeps_the_calls_its_table_holds() -> None:
    store = DictStore()
    stage = make(store)
    process(stage, record("call_started", at(0), call="silent"))
    stage.save_stream_time(0)
    assert stage.sweep(0).evicted == 0
    restarted = make(store)
    Partition(restarted).advance_to(at(0) + TTL + 1)
    assert restarted.sweep(0).evicted == 1 and tombstoned(restarted, "silent")


class CountingStore(DictStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def get(self, key: str) -> Any | None:
        self.reads.append(key)
        return super().get(key)


def test_once_swept_a_new_call_costs_no_read_and_a_stored_call_is_still_found() -> None:
    store = CountingStore()
    before = make(store)
    for rec in (
        record("call_started", at(0), call="c1"),
        record("queue_entered", at(10), call="c1", queue="sales"),
        record("call_answered", at(20), call="c1", agent_id="a1"),
        record("call_ended", at(300), call="c1"),
    ):
        process(before, rec)
    stage = make(store)  # a restarted worker: c1 is in the table only
    process(stage, record("call_started", at(400), call="c0"))
    stage.sweep(0)  # the first sweep reads the partition's calls whole
    store.reads.clear()
    process(stage, record("call_started", at(401), call="c2"))
    assert "c2" not in store.reads
    # c1, finished and never decoded here, is read: its late wrap-up completes it.
    late = process(stage, record("wrapup_ended", at(500), call="c1"))
    assert "c1" in store.reads
    assert late.emission is not None and late.emission.outcome is not None
    assert late.emission.outcome["handle_seconds"] == 480.0
    # c2 finishes: its next event still finds it (among the calls finished last).
    ended = record("call_ended", at(402), call="c2")
    process(stage, ended)
    assert process(stage, ended).duplicate


def test_finished_calls_are_kept_decoded_up_to_a_bound_and_never_past_their_deletion() -> None:
    store = CountingStore()
    stage = make(store)
    ends = []
    for n in range(FINISHED_KEPT + 1):
        call = f"c{n}"
        process(stage, record("queue_entered", at(n), call=call, queue="sales"))
        ends.append(record("call_abandoned", at(n + 1), call=call))
        process(stage, ends[-1])
    store.reads.clear()
    assert process(stage, ends[-1]).duplicate and store.reads == []  # kept: no read
    assert process(stage, ends[0]).duplicate and store.reads == ["c0"]  # the oldest went
    # Past the retention the sweep deletes a finished call: an event of it then starts anew.
    Partition(stage).advance_to(at(FINISHED_KEPT + 1) + RETENTION + 1)
    assert stage.sweep(0).deleted == FINISHED_KEPT + 1
    again = process(
        stage, record("queue_entered", at(FINISHED_KEPT + 1) + RETENTION, call="c1", queue="sales")
    )
    assert again.reject is None and not again.duplicate
    assert again.emission is not None and again.emission.contributions["sales"].abandoned is None


def test_what_a_call_means_to_agents_is_told_as_its_latest_state_or_as_before_its_retirement() -> (
    None
):
    """The calls processor hands the agents stage a call's state, derived when the checkpoint
    sends it: the latest of its events counts. A call retired before that (evicted: a tombstone
    means nothing to agents) is told as it was just before."""
    stage = make()
    pending = AgentPending()
    offered = process(stage, record("agent_offered", at(0), call="c1", agent_id="a1", queue="q"))
    assert offered.for_agents is not None
    pending.add_call(0, "c1", offered.for_agents)
    answered = process(stage, record("call_answered", at(5), call="c1", agent_id="a1", queue="q"))
    assert answered.for_agents is offered.for_agents  # the same state, kept up to date
    latest = agent_calls(answered.for_agents)["a1"]
    assert latest.talk is not None
    assert pending.take(0, lambda _: 0) == [(0, [("a1", [("c1", latest)])])]
    pending.add_call(0, "c1", answered.for_agents)
    Partition(stage).advance_to(at(5) + TTL + 1)
    swept = stage.sweep(0)
    assert swept.evicted == 1 and swept.agents == [("c1", {"a1": latest})]
    for call_id, agents in swept.agents:
        pending.settle(0, call_id, agents)
    assert agent_calls(answered.for_agents) == {}  # retired
    assert pending.take(0, lambda _: 0) == [(0, [("a1", [("c1", latest)])])]
    pending.settle(0, "c1", {"a1": latest})  # nothing of it is pending now: nothing to tell
    assert pending.take(0, lambda _: 0) == []
