"""The per-call state machine against contract §2: hand-computed scenarios, then properties
(arrival order, duplicates, storage round-trips and emissions never change the figures).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.calls import (
    CallState,
    Emission,
    evict,
    plan_emission,
    resend_all,
    stored_age,
)
from stream_app.domain.events import MAX_TS, MIN_TS, format_ts
from stream_app.domain.model import EMPTY, EVENT_TYPES, Contribution, Event

T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp() * 1000)
_ids = itertools.count()


def sa5(queue: str | None) -> int:
    """The default short-abandon threshold: 5 s for every queue."""
    return 5000


def at(seconds: float) -> int:
    return T0 + round(seconds * 1000)


def ev(
    type_: str,
    seconds: float,
    *,
    queue: str | None = None,
    agent: str | None = None,
    reason: str | None = None,
    eid: str | None = None,
    call_id: str = "c1",
) -> Event:
    event_id = eid if eid is not None else f"e{next(_ids)}"
    return Event(event_id, call_id, type_, at(seconds), queue, agent, None, reason)


def build(*events: Event) -> CallState:
    state = CallState.new("c1")
    for event in events:
        assert state.apply(event)
    return state


def roundtrip(state: CallState) -> CallState:
    return CallState.from_json(orjson.loads(orjson.dumps(state.to_json())))


def outcome_of(*events: Event) -> dict[str, object]:
    record = build(*events).outcome(sa5)
    assert record is not None
    return record


# -- formatting ----------------------------------------------------------------------------


def test_format_ts_whole_seconds_and_milliseconds() -> None:
    assert format_ts(T0) == "2026-03-02T10:00:00Z"
    assert format_ts(at(30.25)) == "2026-03-02T10:00:30.250Z"
    assert format_ts(0) == "1970-01-01T00:00:00Z"
    assert format_ts(1) == "1970-01-01T00:00:00.001Z"


# -- answered calls ------------------------------------------------------------------------


def full_answered_call() -> list[Event]:
    return [
        ev("call_started", 0, queue="main"),
        ev("ivr_ended", 30),
        ev("queue_entered", 31, queue="sales"),
        ev("agent_offered", 45, agent="a1"),
        ev("call_answered", 50, queue="sales", agent="a1"),
        ev("call_ended", 200),
        ev("wrapup_ended", 230),
    ]


def test_ivr_is_excluded_from_answer_speed_and_queue_wait_runs_to_the_offer() -> None:
    state = build(*full_answered_call())
    assert state.contributions() == {
        "sales": Contribution(answered=(at(50), 20000, 14000), handled=(at(230), 180000))
    }
    record = state.outcome(sa5)
    assert record == {
        "call_id": "c1",
        "queue": "sales",
        "outcome": "answered",
        "agent_id": "a1",
        "started_at": "2026-03-02T10:00:00Z",
        "answered_at": "2026-03-02T10:00:50Z",
        "ended_at": "2026-03-02T10:03:20Z",
        "ivr_seconds": 30.0,
        "answer_seconds": 20.0,
        "queue_wait_seconds": 14.0,
        "abandon_seconds": None,
        "handle_seconds": 180.0,
    }
    assert record is not None and list(record) == [
        "call_id",
        "queue",
        "outcome",
        "agent_id",
        "started_at",
        "answered_at",
        "ended_at",
        "ivr_seconds",
        "answer_seconds",
        "queue_wait_seconds",
        "abandon_seconds",
        "handle_seconds",
    ]


def test_no_ivr_source_waits_from_the_first_queue_entered() -> None:
    state = build(
        ev("call_started", 0, queue="main"),
        ev("queue_entered", 5, queue="sales"),
        ev("call_answered", 20.5, agent="a1"),
    )
    assert state.contributions() == {"sales": Contribution(answered=(at(20.5), 15500, 15500))}
    record = state.outcome(sa5)
    assert record is not None
    assert record["ivr_seconds"] is None
    assert record["answer_seconds"] == 15.5
    assert record["answered_at"] == "2026-03-02T10:00:20.500Z"
    assert record["ended_at"] is None


def test_no_ivr_and_no_queue_waits_from_call_started() -> None:
    state = build(ev("call_started", 0, queue="main"), ev("call_answered", 8, agent="a1"))
    assert state.contributions() == {"main": Contribution(answered=(at(8), 8000, 0))}


def test_answer_alone_has_zero_answer_speed() -> None:
    state = build(ev("call_answered", 8, queue="sales", agent="a1"))
    assert state.contributions() == {"sales": Contribution(answered=(at(8), 0, 0))}


def test_answered_without_queueing_uses_call_answered_queue_then_call_started() -> None:
    events = [ev("call_started", 0, queue="main"), ev("ivr_ended", 10)]
    direct = build(*events, ev("call_answered", 14, queue="vip", agent="a1"))
    assert direct.contributions() == {"vip": Contribution(answered=(at(14), 4000, 0))}
    record = direct.outcome(sa5)
    assert record is not None
    assert (record["queue"], record["queue_wait_seconds"]) == ("vip", 0.0)

    fallback = build(*events, ev("call_answered", 14, agent="a1"))
    assert fallback.contributions() == {"main": Contribution(answered=(at(14), 4000, 0))}


def test_answered_with_no_queue_known_contributes_nowhere_but_has_an_outcome() -> None:
    state = build(ev("call_started", 0), ev("call_answered", 14, agent="a1"))
    assert state.contributions() == {}
    record = state.outcome(sa5)
    assert record is not None
    assert (record["outcome"], record["queue"], record["answer_seconds"]) == (
        "answered",
        None,
        14.0,
    )


def test_transfer_between_queues_then_answered_belongs_to_the_last_queue() -> None:
    state = build(
        ev("call_started", 0),
        ev("ivr_ended", 10),
        ev("queue_entered", 10, queue="sales"),
        ev("agent_offered", 20, agent="a1"),
        ev("queue_entered", 40, queue="support"),
        ev("agent_offered", 50, agent="a2"),
        ev("call_answered", 55, queue="sales", agent="a2"),  # queue_entered wins over this
    )
    assert state.contributions() == {"support": Contribution(answered=(at(55), 45000, 10000))}


def test_rona_the_offer_that_led_to_the_answer_is_the_answering_agents() -> None:
    base = [
        ev("ivr_ended", 0),
        ev("agent_offered", 5, agent="x"),  # before the queue_entered: not this visit's
        ev("queue_entered", 10, queue="sales"),
        ev("agent_offered", 20, agent="a1"),  # rang, not answered (RONA)
        ev("agent_offered", 35, agent="a2"),
        ev("agent_offered", 41, agent="a2"),  # after the answer: ignored
    ]
    by_a2 = build(*base, ev("call_answered", 40, agent="a2"))
    assert by_a2.contributions()["sales"].answered == (at(40), 40000, 25000)
    by_a1 = build(*base, ev("call_answered", 40, agent="a1"))
    assert by_a1.contributions()["sales"].answered == (at(40), 40000, 10000)
    unknown_agent = build(*base, ev("call_answered", 40))
    assert unknown_agent.contributions()["sales"].answered == (at(40), 40000, 25000)
    other_agent = build(*base, ev("call_answered", 40, agent="a3"))
    assert other_agent.contributions()["sales"].answered == (at(40), 40000, 25000)


def test_offer_at_the_queue_entry_and_answer_instants_counts() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("agent_offered", 10, agent="a1"),
        ev("call_answered", 12, agent="a1"),
    )
    assert state.contributions()["sales"].answered == (at(12), 2000, 0)
    late_offer = build(
        ev("queue_entered", 10, queue="sales"),
        ev("agent_offered", 12, agent="a1"),
        ev("call_answered", 12, agent="a1"),
    )
    assert late_offer.contributions()["sales"].answered == (at(12), 2000, 2000)


def test_queue_wait_runs_from_the_last_queue_entered_before_the_answer() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("queue_entered", 30, queue="sales"),
        ev("call_answered", 45, agent="a1"),
    )
    assert state.contributions()["sales"].answered == (at(45), 35000, 15000)


def test_queue_visits_after_the_answer_are_ignored() -> None:
    state = build(
        ev("ivr_ended", 0),
        ev("queue_entered", 5, queue="sales"),
        ev("call_answered", 20, agent="a1"),
        ev("queue_left", 20, queue="sales"),  # same instant, ranked after the answer
        ev("queue_entered", 30, queue="support"),  # consult transfer after the answer
        ev("queue_left", 40, queue="support"),
        ev("call_ended", 60),
    )
    assert state.contributions() == {"sales": Contribution(answered=(at(20), 20000, 15000))}


def test_queue_entered_at_the_answer_instant_counts() -> None:
    state = build(
        ev("ivr_ended", 0),
        ev("queue_entered", 5, queue="sales"),
        ev("queue_entered", 20, queue="support"),
        ev("call_answered", 20, agent="a1"),
    )
    assert state.contributions() == {"support": Contribution(answered=(at(20), 20000, 0))}


def test_earliest_answer_wins() -> None:
    state = build(
        ev("queue_entered", 0, queue="sales"),
        ev("call_answered", 30, agent="a2"),
        ev("call_answered", 20, agent="a1"),
    )
    assert state.contributions()["sales"].answered == (at(20), 20000, 20000)
    record = state.outcome(sa5)
    assert record is not None and record["agent_id"] == "a1"


def test_single_valued_types_keep_their_earliest_instance() -> None:
    state = build(
        ev("call_started", 10, queue="late"),
        ev("call_started", 0, queue="main"),
        ev("ivr_ended", 20),
        ev("ivr_ended", 15),
        ev("call_answered", 25, agent="a1"),
        ev("call_ended", 90),
        ev("call_ended", 80),
        ev("wrapup_ended", 120),
        ev("wrapup_ended", 100),
    )
    assert state.contributions() == {
        "main": Contribution(answered=(at(25), 10000, 0), handled=(at(100), 75000))
    }
    record = state.outcome(sa5)
    assert record is not None
    assert record["started_at"] == "2026-03-02T10:00:00Z"
    assert record["ended_at"] == "2026-03-02T10:01:20Z"
    assert record["ivr_seconds"] == 15.0


def test_handle_time_counts_in_the_answered_queue_at_wrapup() -> None:
    state = build(
        ev("queue_entered", 0, queue="sales"),
        ev("call_answered", 10, agent="a1"),
        ev("wrapup_ended", 310.5),
    )
    assert state.contributions()["sales"].handled == (at(310.5), 300500)
    assert state.outcome(sa5) is not None
    # without an answer there is no handle time
    lone = build(ev("queue_entered", 0, queue="sales"), ev("wrapup_ended", 10))
    assert lone.contributions() == {"sales": Contribution(waiting_since=at(0))}


def test_negative_spans_count_as_zero() -> None:
    state = build(
        ev("call_started", 10),
        ev("ivr_ended", 5),  # before call_started
        ev("queue_entered", 30, queue="sales"),
        ev("agent_offered", 20, agent="a1"),  # before the queue_entered: not an offer of it
        ev("call_answered", 4, agent="a1"),  # before everything: no queue_entered before it
        ev("wrapup_ended", 2),  # before the answer
    )
    # answered before the queue_entered: queue from call_started (none) → no queue
    assert state.contributions() == {}
    record = state.outcome(sa5)
    assert record is not None
    assert record["ivr_seconds"] == 0.0
    assert record["answer_seconds"] == 0.0
    assert record["queue_wait_seconds"] == 0.0
    assert record["handle_seconds"] == 0.0

    skewed = build(
        ev("queue_entered", 10, queue="sales"),
        ev("ivr_ended", 12),  # IVR clock ahead of the ACD's
        ev("call_answered", 11, agent="a1"),
    )
    assert skewed.contributions()["sales"].answered == (at(11), 0, 1000)


# -- abandoned, flowed out, IVR-only --------------------------------------------------------


def test_abandoned_by_call_abandoned() -> None:
    state = build(
        ev("call_started", 0),
        ev("ivr_ended", 8),
        ev("queue_entered", 10, queue="sales"),
        ev("agent_offered", 20, agent="a1"),
        ev("call_abandoned", 40),
    )
    assert state.contributions() == {"sales": Contribution(abandoned=(at(40), 30000))}
    assert state.is_finished()
    assert state.outcome(sa5) == {
        "call_id": "c1",
        "queue": "sales",
        "outcome": "abandoned",
        "agent_id": None,
        "started_at": "2026-03-02T10:00:00Z",
        "answered_at": None,
        "ended_at": "2026-03-02T10:00:40Z",
        "ivr_seconds": 8.0,
        "answer_seconds": None,
        "queue_wait_seconds": None,
        "abandon_seconds": 30.0,
        "handle_seconds": None,
    }


def test_abandoned_by_call_ended_without_answer() -> None:
    state = build(ev("queue_entered", 10, queue="sales"), ev("call_ended", 40))
    assert state.contributions() == {"sales": Contribution(abandoned=(at(40), 30000))}
    record = state.outcome(sa5)
    assert record is not None
    assert (record["outcome"], record["abandon_seconds"]) == ("abandoned", 30.0)


def test_call_abandoned_is_the_hang_up_and_call_ended_the_ended_at() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("call_abandoned", 40),
        ev("call_ended", 41),
    )
    assert state.contributions() == {"sales": Contribution(abandoned=(at(40), 30000))}
    record = state.outcome(sa5)
    assert record is not None
    assert record["ended_at"] == "2026-03-02T10:00:41Z"


def test_abandon_belongs_to_the_last_queue_entered_before_the_hang_up() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("queue_entered", 20, queue="support"),
        ev("queue_entered", 50, queue="late"),  # after the hang-up (clock skew)
        ev("call_abandoned", 40, queue="sales"),
    )
    assert state.contributions() == {"support": Contribution(abandoned=(at(40), 20000))}


def test_abandon_without_queue_entered_uses_call_abandoned_queue_and_line_wait() -> None:
    state = build(
        ev("call_started", 0, queue="main"),
        ev("ivr_ended", 10),
        ev("call_abandoned", 40, queue="sales"),
    )
    assert state.contributions() == {"sales": Contribution(abandoned=(at(40), 30000))}
    no_queue = build(ev("call_started", 0, queue="main"), ev("call_abandoned", 40))
    assert no_queue.contributions() == {"main": Contribution(abandoned=(at(40), 40000))}
    nothing = build(ev("call_abandoned", 40))
    assert nothing.contributions() == {}
    record = nothing.outcome(sa5)
    assert record is not None
    assert (record["outcome"], record["queue"], record["abandon_seconds"]) == (
        "short_abandoned",
        None,
        0.0,
    )


def test_short_abandon_is_strictly_under_the_threshold() -> None:
    short = outcome_of(ev("queue_entered", 10, queue="sales"), ev("call_abandoned", 14.999))
    assert (short["outcome"], short["abandon_seconds"]) == ("short_abandoned", 4.999)
    edge = outcome_of(ev("queue_entered", 10, queue="sales"), ev("call_abandoned", 15))
    assert edge["outcome"] == "abandoned"
    # the threshold is per queue; contributions stay raw facts either way
    state = build(ev("queue_entered", 10, queue="vip"), ev("call_ended", 18))
    per_queue = state.outcome(lambda q: 10000 if q == "vip" else 5000)
    assert per_queue is not None and per_queue["outcome"] == "short_abandoned"
    assert state.contributions() == {"vip": Contribution(abandoned=(at(18), 8000))}


def test_flowed_out_then_hung_up_is_not_an_abandon() -> None:
    state = build(
        ev("call_started", 0),
        ev("queue_entered", 10, queue="sales"),
        ev("queue_left", 40, queue="sales", reason="voicemail"),
        ev("call_ended", 100),
    )
    assert state.contributions() == {"sales": Contribution(flowed_out=(at(40),))}
    record = state.outcome(sa5)
    assert record is not None
    assert (record["outcome"], record["queue"], record["abandon_seconds"]) == (
        "flowed_out",
        "sales",
        None,
    )


def test_queue_left_without_queue_leaves_the_queue_last_entered() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("queue_left", 40, reason="timeout"),
        ev("call_ended", 100),
    )
    assert state.contributions() == {"sales": Contribution(flowed_out=(at(40),))}
    record = state.outcome(sa5)
    assert record is not None and (record["outcome"], record["queue"]) == ("flowed_out", "sales")


def test_queue_left_with_no_queue_known_counts_nowhere() -> None:
    state = build(ev("queue_left", 40), ev("call_ended", 100))
    assert state.contributions() == {}
    record = state.outcome(sa5)
    assert record is not None and (record["outcome"], record["queue"]) == ("flowed_out", None)


def test_flowed_out_then_answered_elsewhere_counts_in_both_queues() -> None:
    state = build(
        ev("ivr_ended", 0),
        ev("queue_entered", 10, queue="sales"),
        ev("queue_left", 30, queue="sales", reason="overflow"),
        ev("queue_entered", 30, queue="support"),
        ev("call_answered", 55, agent="a2"),
    )
    assert state.contributions() == {
        "sales": Contribution(flowed_out=(at(30),)),
        "support": Contribution(answered=(at(55), 55000, 25000)),
    }


def test_flowed_out_then_abandoned_elsewhere() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("queue_left", 30, queue="sales"),
        ev("queue_entered", 31, queue="support"),
        ev("call_ended", 34),
    )
    assert state.contributions() == {
        "sales": Contribution(flowed_out=(at(30),)),
        "support": Contribution(abandoned=(at(34), 3000)),
    }
    record = state.outcome(sa5)
    assert record is not None
    assert (record["outcome"], record["queue"], record["abandon_seconds"]) == (
        "short_abandoned",
        "support",
        3.0,
    )


def test_queue_left_of_another_queue_does_not_prevent_the_abandon() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("queue_left", 20, queue="support"),
        ev("call_ended", 40),
    )
    assert state.contributions() == {
        "sales": Contribution(abandoned=(at(40), 30000)),
        "support": Contribution(flowed_out=(at(20),)),
    }


def test_queue_left_at_the_entry_or_hang_up_instant_prevents_the_abandon() -> None:
    for left_at in (10, 40):
        state = build(
            ev("queue_entered", 10, queue="sales"),
            ev("queue_left", left_at, queue="sales"),
            ev("call_ended", 40),
        )
        assert state.contributions() == {"sales": Contribution(flowed_out=(at(left_at),))}


def test_queue_left_after_the_hang_up_does_not_prevent_the_abandon() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("queue_left", 41, queue="sales"),
        ev("call_ended", 40),
    )
    assert state.contributions() == {
        "sales": Contribution(abandoned=(at(40), 30000), flowed_out=(at(41),))
    }


def test_call_abandoned_counts_even_after_a_queue_left() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("queue_left", 20, queue="sales"),
        ev("call_abandoned", 40),
    )
    assert state.contributions() == {
        "sales": Contribution(abandoned=(at(40), 30000), flowed_out=(at(20),))
    }


def test_answered_call_is_never_abandoned() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("call_answered", 20, agent="a1"),
        ev("call_abandoned", 30),
    )
    assert state.contributions() == {"sales": Contribution(answered=(at(20), 10000, 10000))}
    record = state.outcome(sa5)
    assert record is not None
    assert (record["outcome"], record["abandon_seconds"]) == ("answered", None)


def test_ivr_only_is_in_no_queue() -> None:
    state = build(
        ev("call_started", 0, queue="main"),
        ev("ivr_ended", 42),
        ev("call_ended", 43),
    )
    assert state.contributions() == {}
    assert state.outcome(sa5) == {
        "call_id": "c1",
        "queue": "main",
        "outcome": "ivr_only",
        "agent_id": None,
        "started_at": "2026-03-02T10:00:00Z",
        "answered_at": None,
        "ended_at": "2026-03-02T10:00:43Z",
        "ivr_seconds": 42.0,
        "answer_seconds": None,
        "queue_wait_seconds": None,
        "abandon_seconds": None,
        "handle_seconds": None,
    }
    bare = outcome_of(ev("call_ended", 43))
    assert (bare["outcome"], bare["queue"], bare["started_at"]) == ("ivr_only", None, None)


def test_queue_entered_only_after_the_hang_up_is_not_an_abandon() -> None:
    state = build(ev("call_ended", 40), ev("queue_entered", 50, queue="sales"))
    assert state.contributions() == {}
    record = state.outcome(sa5)
    assert record is not None and (record["outcome"], record["queue"]) == ("flowed_out", "sales")


def test_outcome_is_unknown_until_answered_or_hung_up() -> None:
    state = build(
        ev("call_started", 0),
        ev("ivr_ended", 10),
        ev("queue_entered", 10, queue="sales"),
        ev("queue_left", 20, queue="sales"),
        ev("wrapup_ended", 30),
    )
    assert state.outcome(sa5) is None
    assert not state.is_finished()


# -- waiting now ---------------------------------------------------------------------------


def test_waiting_follows_the_last_queue_entered() -> None:
    state = build(ev("call_started", 0), ev("queue_entered", 10, queue="sales"))
    assert state.contributions() == {"sales": Contribution(waiting_since=at(10))}
    state.apply(ev("queue_left", 20, queue="sales"))
    assert state.contributions() == {"sales": Contribution(flowed_out=(at(20),))}
    state.apply(ev("queue_entered", 25, queue="support"))
    assert state.contributions() == {
        "sales": Contribution(flowed_out=(at(20),)),
        "support": Contribution(waiting_since=at(25)),
    }
    state.apply(ev("call_answered", 30, agent="a1"))
    assert state.contributions()["support"].waiting_since is None


def test_not_waiting_after_a_queue_left_at_the_same_instant_or_a_hang_up() -> None:
    left = build(ev("queue_entered", 10, queue="sales"), ev("queue_left", 10))
    assert left.contributions() == {"sales": Contribution(flowed_out=(at(10),))}
    # a queue_left of another queue does not end the wait
    other = build(ev("queue_entered", 10, queue="sales"), ev("queue_left", 12, queue="x"))
    assert other.contributions()["sales"] == Contribution(waiting_since=at(10))
    # any hang-up ends the wait, even one stamped before the queue_entered
    hung = build(ev("queue_entered", 10, queue="sales"), ev("call_ended", 5))
    assert hung.contributions() == {}
    # and any answer does too
    answered = build(ev("queue_entered", 10, queue="sales"), ev("call_answered", 5))
    assert all(c.waiting_since is None for c in answered.contributions().values())


def test_waiting_again_in_the_same_queue_after_flowing_out() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("queue_left", 20, queue="sales"),
        ev("queue_entered", 30, queue="sales"),
    )
    assert state.contributions() == {
        "sales": Contribution(flowed_out=(at(20),), waiting_since=at(30))
    }


# -- apply, dedupe, state lifecycle ---------------------------------------------------------


def test_duplicate_returns_false_and_changes_nothing() -> None:
    first = ev("queue_entered", 10, queue="sales", eid="x1")
    state = build(first)
    before = state.to_json()
    assert not state.apply(first)
    # the event_id is the dedupe key, even if a retry differs in content
    assert not state.apply(ev("queue_entered", 99, queue="other", eid="x1"))
    assert state.to_json() == before


def test_apply_rejects_another_calls_event() -> None:
    with pytest.raises(ValueError):
        CallState.new("c1").apply(ev("call_started", 0, call_id="c2"))


def test_last_ts_and_is_finished() -> None:
    state = CallState.new("c1")
    assert state.last_ts == 0
    state.apply(ev("queue_entered", 30, queue="sales"))
    state.apply(ev("call_started", 0))
    assert state.last_ts == at(30)
    assert not state.is_finished()
    state.apply(ev("call_ended", 90))
    assert state.last_ts == at(90)
    assert state.is_finished()
    assert build(ev("call_abandoned", 5)).is_finished()


def test_to_json_is_compact_and_round_trips() -> None:
    state = build(*full_answered_call(), ev("call_started", 1, eid="dup-start"))
    plan_emission(state, sa5)
    data = state.to_json()
    # each event id is stored once: the dropped duplicate start only in the id list
    assert data["i"] == ["dup-start"]
    encoded = orjson.dumps(data)
    assert len(encoded) < 700
    again = CallState.from_json(orjson.loads(encoded))
    assert again == state
    assert again.to_json() == data
    assert again.contributions() == state.contributions()
    assert again.outcome(sa5) == state.outcome(sa5)


def test_tombstone_keeps_ids_and_last_ts_and_ignores_late_events() -> None:
    events = full_answered_call()
    state = build(*events)
    plan_emission(state, sa5)
    state.to_tombstone()
    assert state.tombstoned and state.is_finished()
    assert state.to_json() == {
        "c": "c1",
        "i": sorted(e.event_id for e in events),
        "t": at(230),
        "z": 1,
    }
    assert roundtrip(state) == state
    assert not state.apply(events[0])
    assert state.apply(ev("wrapup_ended", 500))
    assert state.last_ts == at(500)
    assert state.contributions() == {}
    assert state.outcome(sa5) is None
    assert plan_emission(state, sa5) == Emission({}, None)
    assert resend_all(state) == Emission({}, None)
    assert evict(state) == Emission({}, None)


# -- emissions -----------------------------------------------------------------------------


def test_plan_emission_sends_changes_and_outcome_once_plus_handle_time() -> None:
    state = CallState.new("c1")
    steps = full_answered_call()

    state.apply(steps[0])  # call_started
    assert plan_emission(state, sa5) == Emission({}, None)
    state.apply(steps[1])  # ivr_ended
    state.apply(steps[2])  # queue_entered sales
    assert plan_emission(state, sa5) == Emission(
        {"sales": Contribution(waiting_since=at(31))}, None
    )
    state.apply(steps[3])  # agent_offered: nothing changes yet
    assert plan_emission(state, sa5) == Emission({}, None)
    state.apply(steps[4])  # call_answered
    answered = plan_emission(state, sa5)
    assert answered.contributions == {"sales": Contribution(answered=(at(50), 20000, 14000))}
    assert answered.outcome is not None and answered.outcome["outcome"] == "answered"
    assert answered.outcome["ended_at"] is None
    state.apply(steps[5])  # call_ended: only ended_at changes, no new record
    assert plan_emission(state, sa5) == Emission({}, None)
    assert state.sent_outcome == answered.outcome
    state.apply(steps[6])  # wrapup_ended: handle time, with the newest ended_at
    handled = plan_emission(state, sa5)
    assert handled.contributions == {
        "sales": Contribution(answered=(at(50), 20000, 14000), handled=(at(230), 180000))
    }
    assert handled.outcome == state.outcome(sa5)
    assert handled.outcome is not None
    assert handled.outcome["ended_at"] == "2026-03-02T10:03:20Z"
    assert plan_emission(state, sa5) == Emission({}, None)


def test_plan_emission_withdraws_a_queue_the_call_no_longer_contributes_to() -> None:
    state = build(ev("queue_entered", 10, queue="sales"))
    plan_emission(state, sa5)
    state.apply(ev("queue_entered", 20, queue="support"))
    moved = plan_emission(state, sa5)
    assert moved == Emission({"sales": EMPTY, "support": Contribution(waiting_since=at(20))}, None)
    assert resend_all(state) == moved
    # a withdrawn queue is not withdrawn again
    state.apply(ev("agent_offered", 25, agent="a1"))
    assert plan_emission(state, sa5) == Emission({}, None)


def test_late_event_corrects_the_outcome() -> None:
    state = build(
        ev("call_started", 0),
        ev("queue_entered", 10, queue="sales"),
        ev("call_answered", 30, agent="a1"),
    )
    first = plan_emission(state, sa5)
    assert first.outcome is not None and first.outcome["answer_seconds"] == 20.0
    state.apply(ev("ivr_ended", 5))  # late: the line wait starts earlier
    corrected = plan_emission(state, sa5)
    assert corrected.contributions == {"sales": Contribution(answered=(at(30), 25000, 20000))}
    assert corrected.outcome is not None
    assert (corrected.outcome["answer_seconds"], corrected.outcome["ivr_seconds"]) == (25.0, 5.0)


def test_late_call_started_alone_does_not_resend_the_outcome() -> None:
    state = build(ev("queue_entered", 10, queue="sales"), ev("call_abandoned", 40))
    assert plan_emission(state, sa5).outcome is not None
    state.apply(ev("call_started", 2))
    assert plan_emission(state, sa5) == Emission({}, None)
    assert state.outcome(sa5) is not None


def test_resend_all_repeats_everything_last_sent_without_changing_state() -> None:
    state = build(*full_answered_call())
    assert resend_all(state) == Emission({}, None)
    sent = plan_emission(state, sa5)
    before = state.to_json()
    assert resend_all(state) == sent
    assert resend_all(state) == sent
    assert state.to_json() == before


def test_evict_withdraws_only_the_wait() -> None:
    state = build(
        ev("queue_entered", 10, queue="sales"),
        ev("queue_left", 20, queue="sales"),
        ev("queue_entered", 25, queue="support"),
    )
    plan_emission(state, sa5)
    assert evict(state) == Emission({"support": EMPTY}, None)
    assert state.sent_contributions == {
        "sales": Contribution(flowed_out=(at(20),)),
        "support": EMPTY,
    }
    assert evict(state) == Emission({}, None)

    again = build(
        ev("queue_entered", 10, queue="sales"),
        ev("queue_left", 20, queue="sales"),
        ev("queue_entered", 25, queue="sales"),
    )
    plan_emission(again, sa5)
    assert evict(again) == Emission({"sales": Contribution(flowed_out=(at(20),))}, None)


def test_evict_before_anything_was_sent_sends_nothing() -> None:
    state = build(ev("queue_entered", 10, queue="sales"))
    assert evict(state) == Emission({}, None)
    assert state.sent_contributions == {}


def test_evict_of_a_finished_call_sends_nothing() -> None:
    state = build(*full_answered_call())
    plan_emission(state, sa5)
    assert evict(state) == Emission({}, None)


# -- properties ----------------------------------------------------------------------------

QUEUES = ("sales", "support")
AGENTS = ("a1", "a2")


@st.composite
def call_event_sets(draw: st.DrawFn) -> list[Event]:
    """A set of distinct events of one call: any types, few distinct ts (ties are common)."""
    count = draw(st.integers(0, 10))
    events: list[Event] = []
    for index in range(count):
        type_ = draw(st.sampled_from(EVENT_TYPES))
        ts = at(draw(st.integers(0, 12)))
        if type_ == "queue_entered":
            queue: str | None = draw(st.sampled_from(QUEUES))
        else:
            queue = draw(st.none() | st.sampled_from(QUEUES))
        if type_ == "call_answered":
            agent: str | None = draw(st.sampled_from(AGENTS))
        else:
            agent = draw(st.none() | st.sampled_from(AGENTS))
        events.append(Event(f"e{index}", "c1", type_, ts, queue, agent))
    return events


@st.composite
def arrivals(draw: st.DrawFn, events: list[Event]) -> list[Event]:
    """Any arrival order of `events`, with some of them retried anywhere in the stream."""
    order: list[Event] = list(draw(st.permutations(events)))
    if events:
        for dup in draw(st.lists(st.sampled_from(events), max_size=4)):
            order.insert(draw(st.integers(0, len(order))), dup)
    return order


def short_by_queue(queue: str | None) -> int:
    return 3000 if queue == "sales" else 5000


def applied(events: Iterable[Event]) -> CallState:
    state = CallState.new("c1")
    for event in events:
        state.apply(event)
    return state


def quiet(record: dict[str, object] | None) -> dict[str, object] | None:
    if record is None:
        return None
    return {k: v for k, v in record.items() if k not in ("started_at", "ended_at")}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_arrival_order_and_duplication_gives_the_same_state(data: st.DataObject) -> None:
    events = data.draw(call_event_sets())
    reference = applied(events)
    order = data.draw(arrivals(events))
    state = applied(order)
    assert state == reference
    assert state.contributions() == reference.contributions()
    assert state.outcome(short_by_queue) == reference.outcome(short_by_queue)
    assert state.to_json() == reference.to_json()


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_figures_are_sane(data: st.DataObject) -> None:
    state = applied(data.draw(call_event_sets()))
    contributions = state.contributions()
    for contribution in contributions.values():
        assert not contribution.is_empty()
        spans = [
            *(contribution.answered[1:] if contribution.answered else ()),
            *(contribution.abandoned[1:] if contribution.abandoned else ()),
            *(contribution.handled[1:] if contribution.handled else ()),
        ]
        assert all(span >= 0 for span in spans)
        assert list(contribution.flowed_out) == sorted(contribution.flowed_out)
    assert sum(c.answered is not None for c in contributions.values()) <= 1
    assert sum(c.abandoned is not None for c in contributions.values()) <= 1
    assert sum(c.waiting_since is not None for c in contributions.values()) <= 1
    record = state.outcome(short_by_queue)
    known = bool(state.answered) or state.is_finished()
    assert (record is not None) == known
    if record is not None:
        seconds = [v for k, v in record.items() if k.endswith("_seconds") and v is not None]
        assert all(isinstance(v, float) and v >= 0 for v in seconds)
        if any(c.waiting_since is not None for c in contributions.values()):
            pytest.fail("a call with a known outcome is not waiting")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_duplicates_return_false_and_change_nothing(data: st.DataObject) -> None:
    events = data.draw(call_event_sets())
    state = applied(events)
    plan_emission(state, short_by_queue)
    before = state.to_json()
    for event in data.draw(st.lists(st.sampled_from(events), max_size=5)) if events else []:
        assert state.apply(event) is False
    assert state.to_json() == before


def emitted_then_applied(data: st.DataObject) -> CallState:
    """A call's state with some events emitted for and the rest applied since (not emitted)."""
    events = data.draw(call_event_sets())
    cut = data.draw(st.integers(0, len(events)))
    state = applied(events[:cut])
    plan_emission(state, short_by_queue)
    for event in events[cut:]:
        state.apply(event)
    return state


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_json_round_trip(data: st.DataObject) -> None:
    state = emitted_then_applied(data)
    assert roundtrip(state) == state
    assert roundtrip(state).to_json() == state.to_json()
    if data.draw(st.booleans()):
        state.to_tombstone()
        assert roundtrip(state) == state


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_emissions_converge_to_the_full_sets_figures(data: st.DataObject) -> None:
    events = data.draw(call_event_sets())
    reference = applied(events)
    state = CallState.new("c1")
    last: dict[str, Contribution] = {}
    last_outcome: dict[str, object] | None = None
    for event in data.draw(arrivals(events)):
        # a duplicate re-sends everything (a crash may have lost the last send)
        fresh = state.apply(event)
        emission = plan_emission(state, short_by_queue) if fresh else resend_all(state)
        last.update(emission.contributions)
        if emission.outcome is not None:
            last_outcome = emission.outcome
        state = roundtrip(state)  # the table stores JSON between events
    full = reference.contributions()
    assert {q: c for q, c in last.items() if not c.is_empty()} == full
    assert resend_all(state) == Emission(last, last_outcome)
    assert quiet(last_outcome) == quiet(reference.outcome(short_by_queue))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_resend_all_is_idempotent_and_evict_keeps_facts(data: st.DataObject) -> None:
    events = data.draw(call_event_sets())
    state = applied(data.draw(arrivals(events)))
    plan_emission(state, short_by_queue)
    before = state.to_json()
    first = resend_all(state)
    assert resend_all(state) == first
    assert state.to_json() == before

    evict(state)
    expected = {
        q: Contribution(c.answered, c.abandoned, c.flowed_out, c.handled, None)
        for q, c in state.contributions().items()
    }
    assert {q: c for q, c in state.sent_contributions.items() if not c.is_empty()} == {
        q: c for q, c in expected.items() if not c.is_empty()
    }
    assert evict(state) == Emission({}, None)


# -- the stored form (a changelog written by an earlier version must still be read) ------------


def stored_form_v1(state: CallState) -> dict[str, object]:
    """The stored form as the first version of `CallState.to_json` wrote it, restated here so a
    faster encoder can be checked against it, byte for byte."""
    data: dict[str, object] = {"c": state.call_id}
    singles = {
        "s": state.started,
        "v": state.ivr_ended,
        "x": state.abandoned,
        "e": state.ended,
        "w": state.wrapup,
    }
    lists: dict[str, list[Any]] = {
        "q": state.queue_entered,
        "o": state.offered,
        "a": state.answered,
        "l": state.queue_left,
    }
    referenced = {single[1] for single in singles.values() if single is not None}
    referenced.update(item[1] for items in lists.values() for item in items)
    extra = sorted(state.event_ids - referenced)
    if extra:
        data["i"] = extra
    if state.newest_ts is not None:
        data["t"] = state.newest_ts
    if state.tombstoned:
        data["z"] = 1
    for key, single in singles.items():
        if single is not None:
            data[key] = list(single)
    for key, items in lists.items():
        if items:
            data[key] = [list(item) for item in items]
    if state.sent_contributions:
        data["sc"] = {
            q: [
                list(c.answered) if c.answered else None,
                list(c.abandoned) if c.abandoned else None,
                list(c.flowed_out),
                list(c.handled) if c.handled else None,
                c.waiting_since,
            ]
            for q, c in sorted(state.sent_contributions.items())
        }
    if state.sent_outcome is not None:
        data["so"] = dict(state.sent_outcome)
    return data


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_stored_form_is_the_first_versions_byte_for_byte(data: st.DataObject) -> None:
    state = emitted_then_applied(data)
    if data.draw(st.booleans()):
        plan_emission(state, short_by_queue)
    if data.draw(st.integers(0, 4)) == 0:
        state.to_tombstone()
    old = orjson.dumps(stored_form_v1(state))
    assert orjson.dumps(state.to_json()) == old
    assert CallState.from_json(orjson.loads(old)) == state
    assert stored_age(orjson.loads(old)) == (state.last_ts, state.is_finished())


def test_a_state_stored_by_the_first_version_reads_back_the_same() -> None:
    """A value as it sits in a changelog (a call of the real month, answered and wrapped up)."""
    stored = (
        b'{"c":"AA0104-22337-990201","t":917855242000,'
        b'"s":[917854846000,"AA0104-22337-990201:call_started","PS"],'
        b'"v":[917854852000,"AA0104-22337-990201:ivr_ended"],'
        b'"e":[917855242000,"AA0104-22337-990201:call_ended"],'
        b'"w":[917855242000,"AA0104-22337-990201:wrapup_ended"],'
        b'"q":[[917854852000,"AA0104-22337-990201:queue_entered","PS"]],'
        b'"a":[[917854859000,"AA0104-22337-990201:call_answered","PS","MICHAL"]],'
        b'"sc":{"PS":[[917854859000,7000,7000],null,[],[917855242000,383000],null]},'
        b'"so":{"call_id":"AA0104-22337-990201","queue":"PS","outcome":"answered",'
        b'"agent_id":"MICHAL","started_at":"1999-02-01T07:40:46Z",'
        b'"answered_at":"1999-02-01T07:40:59Z","ended_at":"1999-02-01T07:47:22Z",'
        b'"ivr_seconds":6.0,"answer_seconds":7.0,"queue_wait_seconds":7.0,'
        b'"abandon_seconds":null,"handle_seconds":383.0}}'
    )
    state = CallState.from_json(orjson.loads(stored))
    assert orjson.dumps(state.to_json()) == stored
    assert len(state.event_ids) == 6 and state.last_ts == 917855242000
    assert state.sent_contributions == {
        "PS": Contribution(answered=(917854859000, 7000, 7000), handled=(917855242000, 383000))
    }
    assert stored_age(orjson.loads(stored)) == (917855242000, True)
    assert plan_emission(state, lambda _: 5000) == Emission({}, None)  # nothing new to send


def format_ts_v1(ms: int) -> str:
    """`format_ts` as first written (datetime arithmetic): the reference for the faster one."""
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    text = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )
    frac = ms % 1000
    return f"{text}.{frac:03d}Z" if frac else f"{text}Z"


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.integers(MIN_TS, MAX_TS - 1),
        st.integers(T0 - 10**10, T0 + 10**10),
        st.sampled_from([MIN_TS, MAX_TS - 1, 951_782_400_000, 951_868_799_999]),  # 2000-02-29
    )
)
def test_format_ts_is_the_first_versions(ms: int) -> None:
    assert format_ts(ms) == format_ts_v1(ms)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.booleans())
def test_a_states_age_is_that_of_its_stored_form(data: st.DataObject, tombstone: bool) -> None:
    """The calls stage keeps each call's age from the state it writes (no stored form is made
    at a write any more); the sweep's first scan reads it from the stored form."""
    state = applied(data.draw(call_event_sets()))
    if tombstone:
        state.to_tombstone()
    assert state.age() == stored_age(state.to_json())
