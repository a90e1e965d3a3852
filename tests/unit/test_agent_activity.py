"""Agent activity of contract §6: the precedence rules by hand, then properties (order and
duplicates never change a timeline, time in states adds up, windows combine, pruning keeps the
present), per-queue figures and windows across DST."""

from __future__ import annotations

from collections.abc import Iterable
from random import Random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.domain.agent_activity import (
    STATES,
    AgentActivity,
    AgentCall,
    Span,
    StateTime,
    agent_calls,
    agent_interval_key,
    agent_interval_record,
    agents_by_state,
    queue_state_time,
    staffed_average,
    window_span,
)
from stream_app.domain.calls import CallState
from stream_app.domain.model import AGENT_EVENT_TYPES, EVENT_TYPES, AgentEvent, Event
from stream_app.domain.windows import MINUTE_MS

S = 1000  # one second in ms
T0 = 1_772_445_600_000  # 2026-03-02T10:00:00Z
_ids = iter(range(10**9))


def agent_event(
    type_: str, at: int, queues: Iterable[str] | None = None, reason: str | None = None
) -> AgentEvent:
    """An event of agent a1, `at` seconds after T0."""
    queue_list = tuple(sorted(set(queues))) if queues is not None else None
    return AgentEvent(f"x{next(_ids)}", "a1", type_, T0 + at * S, queue_list, reason)


def call_event(call_id: str, type_: str, at: int, **kw: str) -> Event:
    return Event(
        f"{call_id}-{next(_ids)}", call_id, type_, T0 + at * S, kw.get("queue"), kw.get("agent")
    )


def activity(*facts: AgentEvent | Event, agent: str = "a1") -> AgentActivity:
    """An agent's activity fed as the stages will feed it: agent events as they come, and for
    each call event the call's whole new meaning to the agent."""
    state = AgentActivity(agent)
    calls: dict[str, CallState] = {}
    for fact in facts:
        if isinstance(fact, AgentEvent):
            state.apply(fact._replace(agent_id=agent))
        else:
            call = calls.setdefault(fact.call_id, CallState.new(fact.call_id))
            call.apply(fact)
            state.set_call(fact.call_id, agent_calls(call).get(agent))
    return state


def seconds(state: AgentActivity, start: int, end: int, queue: str | None = None) -> StateTime:
    return state.state_time(T0 + start * S, T0 + end * S, T0 + 10**6 * S, queue)


def in_seconds(time: StateTime) -> dict[str, float]:
    return {state: ms / S for state, ms in time.ms.items() if ms}


def answered_call(
    call_id: str, offer: int, answer: int, end: int, wrapup: int | None, agent: str = "a1"
) -> list[Event]:
    events = [
        call_event(call_id, "queue_entered", offer - 5, queue="sales"),
        call_event(call_id, "agent_offered", offer, agent=agent),
        call_event(call_id, "call_answered", answer, agent=agent),
        call_event(call_id, "call_ended", end),
    ]
    if wrapup is not None:
        events.append(call_event(call_id, "wrapup_ended", wrapup))
    return events


# -- the state the agent sets ---------------------------------------------------------------------


def test_a_shift_with_a_break() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales", "support"]),
        agent_event("agent_not_ready", 60, reason="break"),
        agent_event("agent_ready", 120),
        agent_event("agent_logged_out", 300),
    )
    both = ("sales", "support")
    assert state.timeline() == [
        Span(T0, "available", None, both),
        Span(T0 + 60 * S, "not_ready", "break", both),
        Span(T0 + 120 * S, "available", None, both),
        Span(T0 + 300 * S, "logged_out", None, ()),
    ]
    time = seconds(state, -100, 400)
    assert in_seconds(time) == {"logged_out": 200, "available": 240, "not_ready": 60}
    assert time.not_ready_reasons == {"break": 60 * S}
    assert time.staffed_ms == 300 * S and time.busy_ms == 0 and time.occupancy == 0.0


def test_before_any_event_the_agent_is_logged_out() -> None:
    state = activity(agent_event("agent_logged_in", 10, ["sales"]))
    assert state.at(T0).state == "logged_out"
    assert state.at(T0 + 10 * S).state == "available"
    assert AgentActivity("nobody").at(T0) == Span(T0, "logged_out", None, ())


def test_a_login_and_a_not_ready_at_one_instant_leave_the_agent_not_ready() -> None:
    for order in (1, -1):
        events = [
            agent_event("agent_logged_in", 0, ["sales"]),
            agent_event("agent_not_ready", 0, reason="training"),
        ]
        state = activity(*events[::order])
        assert state.timeline() == [Span(T0, "not_ready", "training", ("sales",))]


def test_queues_change_without_changing_the_state() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]),
        agent_event("agent_not_ready", 10),
        agent_event("agent_queues", 20, ["billing", "sales"]),
    )
    assert state.at(T0 + 25 * S) == Span(T0 + 20 * S, "not_ready", None, ("billing", "sales"))
    assert seconds(state, 0, 30).not_ready_reasons == {None: 20 * S}


def test_ready_without_a_login_means_present() -> None:
    """A PBX whose members are configured pauses and unpauses them without any login."""
    state = activity(agent_event("agent_queues", 0, ["sales"]), agent_event("agent_ready", 5))
    assert state.at(T0 + 2 * S)[1:] == ("logged_out", None, ())
    assert state.at(T0 + 6 * S) == Span(T0 + 5 * S, "available", None, ("sales",))


# -- calls ------------------------------------------------------------------------------------------


def test_ringing_talking_and_after_call_work() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]), *answered_call("c1", 10, 15, 75, 90)
    )
    assert [(span.start - T0) // S for span in state.timeline()] == [0, 10, 15, 75, 90]
    assert [span.state for span in state.timeline()] == [
        "available",
        "ringing",
        "on_call",
        "after_call_work",
        "available",
    ]
    time = seconds(state, 0, 100)
    assert in_seconds(time) == {
        "available": 20,
        "ringing": 5,
        "on_call": 60,
        "after_call_work": 15,
    }
    assert time.busy_ms == 80 * S and time.occupancy == 0.8
    assert state.answered(T0, T0 + 100 * S) == 1
    assert state.handled(T0, T0 + 100 * S) == (1, 75 * S)
    assert state.handled(T0, T0 + 90 * S) == (0, 0)  # counted when the wrap-up ends


def test_a_call_wins_over_not_ready_and_the_set_state_returns_after_it() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]),
        *answered_call("c1", 10, 15, 75, 90),
        agent_event("agent_not_ready", 30, reason="lunch"),
    )
    assert state.at(T0 + 40 * S).state == "on_call"
    assert state.at(T0 + 74 * S).state == "on_call"
    # The not-ready came during the call, before call_ended: after-call work is not cut by it.
    assert state.at(T0 + 80 * S).state == "after_call_work"
    assert state.at(T0 + 95 * S) == Span(T0 + 90 * S, "not_ready", "lunch", ("sales",))


def test_after_call_work_ends_at_the_agents_next_event() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]),
        *answered_call("c1", 10, 15, 75, None),
        agent_event("agent_not_ready", 100, reason="break"),
    )
    assert state.at(T0 + 99 * S).state == "after_call_work"
    assert state.at(T0 + 100 * S).state == "not_ready"
    assert seconds(state, 0, 200).ms["after_call_work"] == 25 * S


def test_after_call_work_without_an_end_counts_up_to_stream_time() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]), *answered_call("c1", 10, 15, 75, None)
    )
    now = T0 + 80 * S
    time = state.state_time(T0, T0 + 900 * S, now)
    assert time.ms["after_call_work"] == 5 * S
    assert sum(time.ms.values()) == 80 * S


def test_after_call_work_ends_at_the_next_call_naming_the_agent() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]),
        *answered_call("c1", 10, 15, 75, None),
        *answered_call("c2", 120, 121, 200, 200),
    )
    assert state.at(T0 + 119 * S).state == "after_call_work"
    assert state.at(T0 + 120 * S).state == "ringing"
    assert state.at(T0 + 200 * S).state == "available"  # wrap-up at the call's end: none


def test_a_wrapup_at_the_call_end_means_no_after_call_work() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]), *answered_call("c1", 10, 15, 75, 75)
    )
    assert "after_call_work" not in in_seconds(seconds(state, 0, 100))


def test_an_agent_known_only_through_calls_is_staffed_only_while_busy() -> None:
    state = activity(*answered_call("c1", 10, 15, 75, 90))
    assert state.timeline()[0] == Span(T0 + 10 * S, "ringing", None, ("sales",))
    assert state.at(T0 + 95 * S) == Span(T0 + 90 * S, "logged_out", None, ())
    time = seconds(state, 0, 100)
    assert in_seconds(time) == {
        "logged_out": 20,
        "ringing": 5,
        "on_call": 60,
        "after_call_work": 15,
    }
    assert time.staffed_ms == time.busy_ms == 80 * S and time.occupancy == 1.0


def test_an_agent_counts_in_the_queue_of_their_call_too() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["support"]), *answered_call("c1", 10, 15, 75, 90)
    )
    assert state.at(T0 + 20 * S).queues == ("sales", "support")
    assert state.at(T0 + 95 * S).queues == ("support",)
    assert in_seconds(seconds(state, 0, 100, "sales")) == {
        "ringing": 5,
        "on_call": 60,
        "after_call_work": 15,
    }
    assert seconds(state, 0, 100, "support").staffed_ms == 100 * S


@pytest.mark.parametrize(
    ("ender", "fields"),
    [
        ("call_abandoned", {}),
        ("call_ended", {}),
        ("queue_left", {"queue": "sales"}),
        ("queue_entered", {"queue": "sales"}),
        ("agent_offered", {"agent": "a2"}),
        ("call_answered", {"agent": "a2"}),
    ],
)
def test_ringing_ends_when_the_call_leaves_the_agent(ender: str, fields: dict[str, str]) -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]),
        call_event("c1", "queue_entered", 5, queue="sales"),
        call_event("c1", "agent_offered", 10, agent="a1"),
        call_event("c1", ender, 18, **fields),
    )
    assert in_seconds(seconds(state, 0, 30)) == {"available": 22, "ringing": 8}


def test_a_call_ringing_at_nobody_else_rings_until_stream_time() -> None:
    state = activity(call_event("c1", "agent_offered", 10, agent="a1"))
    assert state.state_time(T0, T0 + 900 * S, T0 + 40 * S).ms["ringing"] == 30 * S


def test_a_transferred_call_ends_the_first_agents_talk_without_wrap_up() -> None:
    events = [
        call_event("c1", "queue_entered", 0, queue="sales"),
        call_event("c1", "call_answered", 10, agent="a1"),
        call_event("c1", "call_answered", 40, agent="a2"),
        call_event("c1", "call_ended", 100),
        call_event("c1", "wrapup_ended", 130),
    ]
    first, second = activity(*events), activity(*events, agent="a2")
    assert in_seconds(seconds(first, 0, 200)) == {"logged_out": 170, "on_call": 30}
    assert in_seconds(seconds(second, 0, 200)) == {
        "logged_out": 110,
        "on_call": 60,
        "after_call_work": 30,
    }
    assert first.answered(T0, T0 + 200 * S) == second.answered(T0, T0 + 200 * S) == 1
    assert first.handled(T0, T0 + 200 * S) == (0, 0)
    assert second.handled(T0, T0 + 200 * S) == (1, 90 * S)


def test_spans_that_come_out_negative_count_as_zero() -> None:
    # The PBX's clock puts call_ended before call_answered: the talk lasts 0, not forever.
    state = activity(
        call_event("c1", "call_answered", 50, agent="a1"),
        call_event("c1", "call_ended", 40),
        call_event("c1", "wrapup_ended", 30),
    )
    assert state.timeline() == []
    assert state.handled(T0, T0 + 100 * S) == (1, 0)


def test_a_withdrawn_call_leaves_no_trace() -> None:
    state = activity(*answered_call("c1", 10, 15, 75, 90))
    assert state.set_call("c1", None) and not state.set_call("c1", None)
    assert state.timeline() == [] and state.calls == {}


def test_a_duplicate_agent_event_is_refused() -> None:
    state = AgentActivity("a1")
    login = agent_event("agent_logged_in", 0, ["sales"])
    assert state.apply(login) and not state.apply(login)
    with pytest.raises(ValueError):
        state.apply(login._replace(agent_id="a2", event_id="other"))


def test_a_tombstoned_call_names_no_agent() -> None:
    call = CallState.new("c1")
    for event in answered_call("c1", 10, 15, 75, 90):
        call.apply(event)
    assert set(agent_calls(call)) == {"a1"}
    call.to_tombstone()
    assert agent_calls(call) == {}


def test_storage_round_trip() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]),
        agent_event("agent_not_ready", 5, reason="break"),
        *answered_call("c1", 10, 15, 75, None),
    )
    again = AgentActivity.from_json(state.to_json())
    assert again.timeline() == state.timeline() and again.calls == state.calls
    assert again.event_ids == state.event_ids
    assert AgentCall.from_json(state.calls["c1"].to_json()) == state.calls["c1"]


# -- properties ---------------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> list[AgentEvent | Event]:
    """Agent events of a1 and call events of up to three calls naming a1 or a2, on a coarse
    grid of seconds so that ties happen."""
    seconds_ = st.integers(0, 40).map(lambda n: n * 5)
    facts: list[AgentEvent | Event] = []
    for _ in range(draw(st.integers(0, 6))):
        type_ = draw(st.sampled_from(AGENT_EVENT_TYPES))
        queues = draw(st.lists(st.sampled_from(["sales", "support"]), max_size=2))
        reason = draw(st.sampled_from(["break", "lunch", ""]))
        facts.append(agent_event(type_, draw(seconds_), queues, reason=reason or None))
    for call in range(draw(st.integers(0, 3))):
        for _ in range(draw(st.integers(1, 7))):
            type_ = draw(st.sampled_from(EVENT_TYPES))
            agent = draw(st.sampled_from(["a1", "a1", "a2"]))
            queue = draw(st.sampled_from(["sales", "support"]))
            facts.append(call_event(f"c{call}", type_, draw(seconds_), queue=queue, agent=agent))
    return facts


@settings(max_examples=300, deadline=None)
@given(histories(), st.data())
def test_order_and_duplicates_never_change_the_timeline(
    facts: list[AgentEvent | Event], data: st.DataObject
) -> None:
    expected = activity(*facts)
    replayed = facts + (data.draw(st.lists(st.sampled_from(facts), max_size=5)) if facts else [])
    data.draw(st.randoms(use_true_random=False)).shuffle(replayed)
    again = activity(*replayed)
    assert again.timeline() == expected.timeline()
    assert again.to_json() == expected.to_json()


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(-20, 220), st.integers(0, 250), st.integers(0, 250))
def test_time_in_states_adds_up(
    facts: list[AgentEvent | Event], start: int, length: int, until: int
) -> None:
    state = activity(*facts)
    begin, end, now = T0 + start * S, T0 + (start + length) * S, T0 + until * S
    time = state.state_time(begin, end, now)
    assert sum(time.ms.values()) == max(0, min(end, now) - begin)
    assert time.busy_ms + time.ms["available"] + time.ms["not_ready"] == time.staffed_ms
    assert sum(time.not_ready_reasons.values()) == time.ms["not_ready"]
    for queue in ("sales", "support"):
        served = state.state_time(begin, end, now, queue)
        assert served.ms["logged_out"] == 0
        assert all(served.ms[s] <= time.ms[s] for s in STATES)


@settings(max_examples=300, deadline=None)
@given(histories(), st.lists(st.integers(-20, 250), min_size=3, max_size=3, unique=True))
def test_windows_combine_by_their_times(facts: list[AgentEvent | Event], cuts: list[int]) -> None:
    """Occupancy over [a, c) is the time-weighted combination of [a, b) and [b, c)."""
    a, b, c = (T0 + x * S for x in sorted(cuts))
    state = activity(*facts)
    now = T0 + 10**6 * S
    for queue in (None, "sales"):
        whole = state.state_time(a, c, now, queue)
        parts = state.state_time(a, b, now, queue)
        parts.add(state.state_time(b, c, now, queue))
        assert whole == parts
        assert whole.occupancy == parts.occupancy
    assert state.answered(a, c) == state.answered(a, b) + state.answered(b, c)
    first, second = state.handled(a, b), state.handled(b, c)
    assert state.handled(a, c) == (first[0] + second[0], first[1] + second[1])


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(-10, 210), st.integers(0, 300))
def test_pruning_keeps_the_present(facts: list[AgentEvent | Event], cut: int, length: int) -> None:
    state = activity(*facts)
    before = T0 + cut * S
    expected = [
        (state.at(t).state, state.at(t).reason, state.at(t).queues)
        for t in range(before, before + 300 * S, S)
    ]
    window = (before, before + length * S, T0 + 10**6 * S)
    expected_time = state.state_time(*window)
    counts = state.answered(*window[:2]), state.handled(*window[:2])
    state.prune(before)
    assert [
        (state.at(t).state, state.at(t).reason, state.at(t).queues)
        for t in range(before, before + 300 * S, S)
    ] == expected
    fresh = AgentActivity.from_json(state.to_json())  # what a restart derives: the same
    assert [fresh.at(t)[1:] for t in range(before, before + 300 * S, S)] == expected
    assert state.state_time(*window) == expected_time
    assert (state.answered(*window[:2]), state.handled(*window[:2])) == counts


def learn(state: AgentActivity, calls: dict[str, CallState], fact: AgentEvent | Event) -> None:
    """One fact as the agents stage learns it: an agent event, or a call's whole meaning now."""
    if isinstance(fact, AgentEvent):
        state.apply(fact._replace(agent_id="a1"))
    else:
        call = calls.setdefault(fact.call_id, CallState.new(fact.call_id))
        call.apply(fact)
        state.set_call(fact.call_id, agent_calls(call).get("a1"))


@settings(max_examples=500, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_a_timeline_derived_again_from_a_change_equals_one_derived_whole(
    facts: list[AgentEvent | Event], rng: Random
) -> None:
    """After a change the timeline is derived again from the change's earliest instant only,
    the spans before it kept: read after every fact, in any order, it is the timeline derived
    whole from the same facts."""
    rng.shuffle(facts)
    state = AgentActivity("a1")
    calls: dict[str, CallState] = {}
    for fact in facts:
        learn(state, calls, fact)
        state.timeline()
        whole = AgentActivity.from_json(state.to_json())
        assert state.timeline() == whole.timeline()
        assert [state.at(t) for t in range(T0 - S, T0 + 210 * S, 5 * S)] == [
            whole.at(t) for t in range(T0 - S, T0 + 210 * S, 5 * S)
        ]


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(1, 40), st.integers(-10, 210))
def test_pruning_after_changes_not_derived_yet_keeps_the_timeline_before_the_cut(
    facts: list[AgentEvent | Event], derived: int, cut: int
) -> None:
    """The timeline is derived lazily: facts applied since it was last read may lie before
    the cut. Pruning then keeps the spans before the cut as every fact makes them (the span
    in force at the cut is what a projection from there tells), not as the kept facts alone
    would (test_crash lost a morning of an agent's calls to the queues stage this way). A
    timeline never read is derived from the kept facts: exact from the cut on only."""
    state = AgentActivity("a1")
    calls: dict[str, CallState] = {}
    for index, fact in enumerate(facts):
        learn(state, calls, fact)
        if index < derived:
            state.timeline()  # read now and then: the rest of the facts are not derived yet
    before = T0 + cut * S
    whole = AgentActivity.from_json(state.to_json())
    state.prune(before)
    assert [state.at(t) for t in range(T0 - S, before + S, 5 * S)] == [
        whole.at(t) for t in range(T0 - S, before + S, 5 * S)
    ]


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(-10, 210))
def test_pruning_forgets_nothing_when_every_fact_is_since_the_cut(
    facts: list[AgentEvent | Event], cut: int
) -> None:
    """`all_since` lets the sweep skip `prune`: true only when pruning keeps every fact; and
    pruning only ever forgets facts (the sweep tells a change by their counts)."""
    state = activity(*facts)
    before = T0 + cut * S
    was = state.to_json()
    counts = len(state.events), len(state.calls)
    skip = state.all_since(before)
    state.prune(before)
    if skip:
        assert state.to_json() == was
    after = len(state.events), len(state.calls)
    assert after[0] <= counts[0] and after[1] <= counts[1]
    assert (after == counts) == (state.to_json() == was)


def test_pruning_forgets_what_is_past() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]),
        agent_event("agent_not_ready", 5, reason="break"),
        agent_event("agent_ready", 8),
        *answered_call("c1", 10, 15, 75, 90),
        agent_event("agent_queues", 95, ["sales", "support"]),
        agent_event("agent_not_ready", 100, reason="lunch"),
        *answered_call("c2", 200, 205, 300, None),
    )
    state.prune(T0 + 150 * S)
    assert set(state.calls) == {"c2"}
    assert [event[1] for event in state.events] == [1, 3]  # the queues and the not-ready
    assert state.at(T0 + 150 * S) == Span(T0 + 100 * S, "not_ready", "lunch", ("sales", "support"))


def test_pruning_keeps_the_call_that_cut_a_kept_calls_wrap_up() -> None:
    """c1's wrap-up ends late (200 s), but c2 rang at 30 s and cut it: pruning at 100 s keeps
    c2, or c1 would be back in after-call work until 200 s."""
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]),
        *answered_call("c1", 5, 10, 20, 200),
        *answered_call("c2", 30, 35, 50, 50),
    )
    assert state.at(T0 + 150 * S).state == "available"
    state.prune(T0 + 100 * S)
    assert set(state.calls) == {"c1", "c2"}
    assert state.at(T0 + 150 * S).state == "available"


# -- per queue ------------------------------------------------------------------------------------


def team() -> list[AgentActivity]:
    """Three agents of `sales` over [0, 100 s): one available throughout, one on a call for
    60 s (ringing 5 s, wrap-up 15 s), one not ready for 50 s then logged out."""
    one = activity(agent_event("agent_logged_in", 0, ["sales"]), agent="a1")
    two = activity(
        agent_event("agent_logged_in", 0, ["sales", "support"]),
        *answered_call("c1", 10, 15, 75, 90, agent="a2"),
        agent="a2",
    )
    three = activity(
        agent_event("agent_logged_in", 0, ["sales"]),
        agent_event("agent_not_ready", 0, reason="break"),
        agent_event("agent_logged_out", 50),
        agent="a3",
    )
    return [one, two, three]


def test_agents_by_state_now() -> None:
    agents = team()
    assert agents_by_state(agents, "sales", T0 + 20 * S) == {
        "available": 1,
        "ringing": 0,
        "on_call": 1,
        "after_call_work": 0,
        "not_ready": 1,
    }
    assert agents_by_state(agents, "sales", T0 + 80 * S)["after_call_work"] == 1
    assert agents_by_state(agents, "support", T0 + 95 * S) == {
        "available": 1,
        "ringing": 0,
        "on_call": 0,
        "after_call_work": 0,
        "not_ready": 0,
    }
    assert sum(agents_by_state(agents, "billing", T0 + 20 * S).values()) == 0


def test_occupancy_and_staffed_average_of_a_queue() -> None:
    """Busy 80 s (a2), available 100 + 20 s: occupancy 80/200; staffed 100 + 100 + 50 s over
    100 s: 2.5 agents on average."""
    start, end, now = T0, T0 + 100 * S, T0 + 10**6 * S
    time = queue_state_time(team(), "sales", start, end, now)
    assert time.busy_ms == 80 * S and time.ms["available"] == 120 * S
    assert time.occupancy == pytest.approx(0.4)
    assert staffed_average(time, start, end, now) == pytest.approx(2.5)
    assert time.not_ready_reasons == {"break": 50 * S}


def test_occupancy_is_absent_without_busy_or_available_time() -> None:
    time = queue_state_time(team(), "sales", T0 - 100 * S, T0, T0 + 10**6 * S)
    assert time.occupancy is None
    assert staffed_average(time, T0, T0, T0) is None


def test_an_open_window_counts_up_to_stream_time() -> None:
    now = T0 + 40 * S
    time = queue_state_time(team(), "sales", T0, T0 + 900 * S, now)
    assert time.staffed_ms == 3 * 40 * S
    assert staffed_average(time, T0, T0 + 900 * S, now) == pytest.approx(3.0)


def test_window_spans() -> None:
    utc = ZoneInfo("UTC")
    now = T0 + 17 * MINUTE_MS + 30 * S  # 10:17:30
    assert window_span("interval", now, 15 * MINUTE_MS, utc) == (
        T0 + 15 * MINUTE_MS,
        T0 + 30 * MINUTE_MS,
    )
    assert window_span("15m", now, 15 * MINUTE_MS, utc) == (
        T0 + 3 * MINUTE_MS,
        T0 + 18 * MINUTE_MS,
    )
    assert window_span("1h", now, 15 * MINUTE_MS, utc)[0] == T0 - 42 * MINUTE_MS
    assert window_span("today", now, 15 * MINUTE_MS, utc) == (
        T0 - 10 * 60 * MINUTE_MS,
        T0 + 14 * 60 * MINUTE_MS,
    )


@pytest.mark.parametrize(
    ("day_start_utc", "hours"),
    [
        (1_774_738_800_000, 23),  # Europe/Berlin 2026-03-29: midnight is 23:00Z the day before
        (1_792_879_200_000, 25),  # Europe/Berlin 2026-10-25: midnight is 22:00Z the day before
    ],
)
def test_today_on_dst_days_counts_the_local_day(day_start_utc: int, hours: int) -> None:
    """An agent available all day long: on a 23- or 25-hour local day the staffed time of
    `today` is the length of that day, one agent on average."""
    berlin = ZoneInfo("Europe/Berlin")
    noon = day_start_utc + 12 * 3_600_000
    start, end = window_span("today", noon, 15 * MINUTE_MS, berlin)
    assert (start, end - start) == (day_start_utc, hours * 3_600_000)
    agent = AgentActivity("a1")
    agent.apply(AgentEvent("e1", "a1", "agent_logged_in", day_start_utc - 3_600_000, ("sales",)))
    late = end + 3_600_000
    time = queue_state_time([agent], "sales", start, end, late)
    assert time.ms["available"] == hours * 3_600_000
    assert staffed_average(time, start, end, late) == 1.0


# -- agent-metrics --------------------------------------------------------------------------------


def test_an_agent_metrics_record() -> None:
    state = activity(
        agent_event("agent_logged_in", 0, ["sales"]),
        *answered_call("c1", 10, 15, 75, 90),
        agent_event("agent_not_ready", 100, reason="break"),
        agent_event("agent_not_ready", 200),
        agent_event("agent_logged_out", 250),
    )
    start, end = T0, T0 + 15 * MINUTE_MS
    assert agent_interval_key("a1", start) == "a1|2026-03-02T10:00:00Z"
    assert agent_interval_record(state, start, end, end + 1, 2) == {
        "agent_id": "a1",
        "interval_start": "2026-03-02T10:00:00Z",
        "interval_end": "2026-03-02T10:15:00Z",
        "answered": 1,
        "handle_seconds_sum": 75.0,
        "aht_seconds": 75.0,
        "available": 20.0,
        "ringing": 5.0,
        "on_call": 60.0,
        "after_call_work": 15.0,
        "not_ready": 150.0,
        "not_ready_reasons": {"break": 100.0, "unspecified": 50.0},
        "occupancy": 0.8,
        "revision": 2,
    }


def test_a_call_that_cuts_earlier_after_call_work_is_derived_again_past_its_own_end() -> None:
    """A call answered during another call's after-call work cuts it: the timeline after the
    new call's own end changes too (the earlier wrap-up no longer lasts), and is derived again
    up to where that after-call work would have ended, not only over the new call."""
    state = AgentActivity("a1")
    state.set_call(
        "A", AgentCall("sales", talk=(T0, T0 + 10 * S), wrap=(T0 + 10 * S, T0 + 100 * S))
    )
    assert state.at(T0 + 70 * S).state == "after_call_work"
    state.set_call(
        "B", AgentCall("support", talk=(T0 + 50 * S, T0 + 60 * S), wrap=(T0 + 60 * S, T0 + 65 * S))
    )
    whole = AgentActivity.from_json(state.to_json())
    assert state.timeline() == whole.timeline()
    assert state.at(T0 + 70 * S).state == "logged_out"  # known through calls only: no set state
